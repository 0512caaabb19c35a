"""GLUE metrics (Wang et al. 2019, "GLUE", table 1), computed with scikit-learn and SciPy.

All values are fractions in [0, 1] (correlations in [-1, 1]); the UI and reports show them x 100.

**Undefined is not zero.** Where a statistic is undefined on the scored examples, its value is
``None`` (JSON ``null``) and ``metrics["undefined"][name]`` says why:

- Pearson and Spearman correlations with constant predictions or constant gold scores
  ("constant predictions", "constant gold scores");
- F1 of the positive class with no positive example among the gold labels (recall is 0/0):
  "no positive example in the gold labels".

Where GLUE's official scorer has a convention for such a case, KASP follows it, keeps the number and
says so in ``metrics["convention"][name]``: Matthews correlation of a constant predictor (or of
constant gold labels) is 0 in GLUE and in scikit-learn's ``matthews_corrcoef``, so ``mcc`` is 0.0
with ``convention = {"mcc": "constant predictions: GLUE's convention"}``. Use :func:`metric_note`
and :func:`format_metric_value` to show a value with its note; :func:`metric_items` lists the
numbers only (without ``n``, ``undefined`` and ``convention``).
"""

from __future__ import annotations

import math
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from kasp.ground.finite import is_finite_number

METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1 (positive class)",
    "mcc": "Matthews correlation",
    "pearson": "Pearson correlation",
    "spearman": "Spearman correlation",
}

#: keys of a metrics dict that are not metric values
NOTE_KEYS = ("n", "undefined", "convention")
MCC_CONVENTION = "GLUE's convention"


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def glue_metrics(kind: str, predictions: Sequence[float], labels: Sequence[float]) -> dict[str, Any]:
    """GLUE metrics for one task.

    Args:
        kind: "accuracy" (SST-2, QNLI, RTE, WNLI, MNLI), "f1_accuracy" (MRPC, QQP), "mcc" (CoLA) or
            "correlation" (STS-B).
        predictions: class ids (classification) or scores (regression), length N.
        labels: gold class ids or scores, length N.

    Returns:
        dict of metric name -> value (a fraction, or None where undefined), for example
        {"accuracy": 0.91}; plus ``undefined`` {name: reason} when a value is None, and
        ``convention`` {name: note} when a value is GLUE's convention for a degenerate case
        (module docstring).

    Raises:
        ValueError: on empty input, length mismatch, non-finite predictions or labels, or an
            unknown kind.
    """
    # imported here: scipy and scikit-learn take about 2 s to import, and the app's pages that only format
    # metrics (kasp.ui.engine) must not pay it on their first load
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if preds.shape != gold.shape or preds.ndim != 1:
        raise ValueError(f"predictions {preds.shape} and labels {gold.shape} must be 1-D of equal length")
    if len(preds) == 0:
        raise ValueError("no examples to score")
    for what, arr in (("predictions", preds), ("gold labels", gold)):
        if np.issubdtype(arr.dtype, np.number) and not np.all(np.isfinite(arr)):
            bad = int((~np.isfinite(arr.astype(float))).sum())
            raise ValueError(f"{bad} of {len(arr)} {what} are not finite (NaN or inf): no score is computed")
    out: dict[str, Any] = {}
    undefined: dict[str, str] = {}
    convention: dict[str, str] = {}
    if kind == "accuracy":
        out["accuracy"] = float(accuracy_score(gold, preds))
    elif kind == "f1_accuracy":
        if not np.any(gold == 1):
            out["f1"] = None
            undefined["f1"] = "no positive example in the gold labels"
        else:
            out["f1"] = float(f1_score(gold, preds, zero_division=0.0))  # defined: 2TP/(2TP+FP+FN), FN+TP > 0
        out["accuracy"] = float(accuracy_score(gold, preds))
    elif kind == "mcc":
        out["mcc"] = float(matthews_corrcoef(gold, preds))
        why = [w for w, c in (("constant predictions", _constant(preds)), ("constant gold labels", _constant(gold))) if c]
        if why:
            convention["mcc"] = f"{' and '.join(why)}: {MCC_CONVENTION}"
    elif kind == "correlation":
        why = [w for w, c in (("constant predictions", _constant(preds)), ("constant gold scores", _constant(gold))) if c]
        if why:
            out["pearson"] = out["spearman"] = None
            undefined["pearson"] = undefined["spearman"] = " and ".join(why)
        else:
            out["pearson"] = float(pearsonr(preds, gold)[0])
            out["spearman"] = float(spearmanr(preds, gold)[0])
            for k in ("pearson", "spearman"):
                if not math.isfinite(out[k]):  # e.g. ties everywhere after ranking; never 0
                    out[k] = None
                    undefined[k] = "undefined correlation"
    else:
        raise ValueError(f"unknown metric kind {kind!r}")
    if undefined:
        out["undefined"] = undefined
    if convention:
        out["convention"] = convention
    return out


def metric_items(metrics: Mapping[str, Any] | None) -> Iterator[tuple[str, float | None]]:
    """(name, value) of each metric in ``metrics`` (a :func:`glue_metrics` dict, or one read from a
    report), skipping ``n``, ``undefined`` and ``convention``; value is None where undefined."""
    for k, v in (metrics or {}).items():
        if k in NOTE_KEYS or isinstance(v, (dict, list, str)):
            continue
        yield k, v


def metric_value(metrics: Mapping[str, Any] | None, name: str) -> float | None:
    """A metric as a float, or None when missing, undefined, NaN or not a number (never 0 for those)."""
    v = (metrics or {}).get(name) if isinstance(metrics, Mapping) else None
    if not is_finite_number(v):
        return None
    return float(v)


def metric_note(metrics: Mapping[str, Any] | None, name: str) -> str | None:
    """Why ``name`` is undefined, or the convention its value follows; None when it is a plain number.

    A value that is None or NaN without a recorded reason (an old report) gives "undefined"."""
    if not isinstance(metrics, Mapping):
        return None
    for key in ("undefined", "convention"):
        notes = metrics.get(key)
        if isinstance(notes, Mapping) and notes.get(name):
            return str(notes[name])
    if name in metrics and metric_value(metrics, name) is None:
        return "undefined"
    return None


def format_metric_value(metrics: Mapping[str, Any] | None, name: str, scale: float = 100.0, digits: int = 2) -> str:
    """One metric as text, x ``scale``, with its note: "86.47", "undefined (constant predictions)",
    "0.00 (constant predictions: GLUE's convention)"."""
    v = metric_value(metrics, name)
    note = metric_note(metrics, name)
    if v is None:
        return f"undefined ({note})" if note and note != "undefined" else "undefined"
    text = f"{v * scale:.{digits}f}"
    return f"{text} ({note})" if note else text


def format_metrics(metrics: Mapping[str, Any] | None) -> str:
    """All metrics of a dict as "f1 undefined (no positive example in the gold labels), accuracy 100.00"."""
    return ", ".join(f"{k} {format_metric_value(metrics, k)}" for k, _ in metric_items(metrics))
