"""GLUE metrics (Wang et al. 2019, "GLUE", table 1), computed with scikit-learn and SciPy.

All values are fractions in [0, 1] (correlations in [-1, 1]); the UI and reports show them x 100.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRIC_NAMES = {
    "accuracy": "accuracy",
    "f1": "F1 (positive class)",
    "mcc": "Matthews correlation",
    "pearson": "Pearson correlation",
    "spearman": "Spearman correlation",
}


def glue_metrics(kind: str, predictions: Sequence[float], labels: Sequence[float]) -> dict[str, float]:
    """GLUE metrics for one task.

    Args:
        kind: "accuracy" (SST-2, QNLI, RTE, WNLI, MNLI), "f1_accuracy" (MRPC, QQP), "mcc" (CoLA) or
            "correlation" (STS-B).
        predictions: class ids (classification) or scores (regression), length N.
        labels: gold class ids or scores, length N.

    Returns:
        dict of metric name -> value, for example {"accuracy": 0.91}.

    Raises:
        ValueError: on empty input, length mismatch or an unknown kind.
    """
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if preds.shape != gold.shape or preds.ndim != 1:
        raise ValueError(f"predictions {preds.shape} and labels {gold.shape} must be 1-D of equal length")
    if len(preds) == 0:
        raise ValueError("no examples to score")
    if kind == "accuracy":
        return {"accuracy": float(accuracy_score(gold, preds))}
    if kind == "f1_accuracy":
        return {"f1": float(f1_score(gold, preds, zero_division=0.0)), "accuracy": float(accuracy_score(gold, preds))}
    if kind == "mcc":
        return {"mcc": float(matthews_corrcoef(gold, preds))}
    if kind == "correlation":
        if np.all(preds == preds[0]) or np.all(gold == gold[0]):
            return {"pearson": 0.0, "spearman": 0.0}  # undefined for a constant input; report 0
        return {"pearson": float(pearsonr(preds, gold)[0]), "spearman": float(spearmanr(preds, gold)[0])}
    raise ValueError(f"unknown metric kind {kind!r}")
