"""The sweep results file: its schema, validation and reading, the shipped files, the plan of a sweep's
runs, and the points a chart draws from a results file.

This is the read side of :mod:`kasp.experiments.sweep` (which runs a sweep and writes the file): the app, the
scripts and the GPU route read results through it without importing the training code.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from kasp.ground.errors import KaspError
from kasp.spec.methods import SWEPT_METHODS, axis_sparsity, method_names, shrinks_student

FORMAT = "kasp-sweep"
SCHEMA_VERSION = 1
DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97)
METHODS = method_names()


def shipped_sweep_path(task: str) -> Path:
    """Where the shipped sweep results of ``task`` live: repository ``assets/sweeps/<task>.json``, in the
    package ``kasp.assets`` (:mod:`kasp.ground.resources`). The one place in the code that knows it.
    """
    from kasp.ground.resources import assets_dir

    return assets_dir() / "sweeps" / f"{task}.json"


# --- the results file -------------------------------------------------------------------------
_NUM = {"type": "number"}
_METRIC = {"type": ["number", "null"]}  # null: undefined on these examples (kasp.spec.metrics; the reason beside it)
_NOTES = {"type": "object", "additionalProperties": {"type": "string"}}  # metrics' "undefined" / "convention"
_RUN_SCHEMA = {
    "type": "object",
    "required": ["key", "method", "sparsity", "seed", "metric", "metrics", "measured_sparsity", "recipe",
                 "wall_seconds", "teacher_id"],
    "properties": {
        "key": {"type": "string"}, "method": {"enum": list(METHODS)}, "sparsity": _NUM,
        "seed": {"type": "integer"}, "metric": _METRIC,
        "metrics": {"type": "object", "additionalProperties": {"anyOf": [_METRIC, _NOTES]}},
        "measured_sparsity": _NUM, "recipe": {"type": "object"}, "wall_seconds": _NUM,
        "teacher_id": {"type": "string"},
        "per_matrix_sparsity": {"type": "object", "additionalProperties": _NUM},
        "progress": {"type": "object"}, "retention": {"type": ["object", "null"]},
        "small_dense": {"type": ["object", "null"]},
        "weights_story": {"type": ["array", "null"], "items": {"type": "object"}},  # kasp.training.weights_story records
    },
}
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["format", "schema_version", "task", "model", "main_metric", "teacher", "runs"],
    "properties": {
        "format": {"const": FORMAT}, "schema_version": {"const": SCHEMA_VERSION}, "task": {"type": "string"},
        "model": {"type": "string"}, "main_metric": {"type": "string"},
        "teacher": {"type": ["object", "null"], "required": ["run_id", "metric"],
                    "properties": {"run_id": {"type": "string"}, "metric": _METRIC}},
        "plan": {"type": "object"}, "machine": {"type": "object"},
        "runs": {"type": "array", "items": _RUN_SCHEMA},
    },
}


def validate_results(data: Any, source: str = "results") -> dict[str, Any]:
    """Check a sweep results object: format, schema version, required fields and types.

    Returns:
        ``data`` unchanged.
    Raises:
        KaspError: naming the file, the first problem, and the fix.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KaspError(f"{source} is not a KASP sweep results file (it has no \"format\": \"{FORMAT}\"); "
                        "pass the file `kasp sweep` wrote, or another --results path")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise KaspError(f"{source} has schema version {version}, newer than this KASP reads ({SCHEMA_VERSION}): "
                        "upgrade KASP")
    err = next(iter(sorted(Draft202012Validator(RESULTS_SCHEMA).iter_errors(data), key=lambda e: list(e.path))), None)
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "top level"
        raise KaspError(f"{source} is a broken KASP sweep results file: at {where}: {err.message[:200]}. "
                        "Restore it from git, or move it aside and run the sweep again")
    return data


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep results file.

    Raises:
        KaspError: missing, unreadable, not JSON, or not a valid results file (see :func:`validate_results`).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KaspError(f"sweep results file {p} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KaspError(f"cannot read sweep results file {p}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise KaspError(f"{p} is not valid JSON ({e.msg}, line {e.lineno}): restore it from git, or move it "
                        "aside and run the sweep again") from None
    except (ValueError, RecursionError) as e:  # a number over 4,300 digits, arrays nested thousands deep
        why = "nested too deeply" if isinstance(e, RecursionError) else "a number too long to read"
        raise KaspError(f"{p} is not a results file KASP writes ({why}): restore it from git, or move it "
                        "aside and run the sweep again") from None
    return validate_results(data, str(p))


def shipped_gpu_sweep_path(task: str) -> Path:
    """Where the GPU route's results of ``task`` live (``scripts/gpu_sweep.py``): ``assets/sweeps/gpu/<task>.json``."""
    return shipped_sweep_path(task).parent / "gpu" / f"{task}.json"


def load_shipped_gpu(task: str) -> dict[str, Any] | None:
    """The shipped GPU-route sweep of ``task`` (its own labelled source, ``results["source"]``, e.g. "GPU sweep,
    12 epochs"), or None when none ships.

    Raises:
        KaspError: a shipped file that is broken (see :func:`load_results`).
    """
    return _load_if_shipped(shipped_gpu_sweep_path(task))


def _load_if_shipped(p: Path) -> dict[str, Any] | None:
    """A shipped results file, cached while unchanged, or None when it is not there."""
    if not p.is_file():
        return None
    return _load_cached(str(p), p.stat().st_mtime_ns)


def load_shipped(task: str) -> dict[str, Any] | None:
    """The shipped sweep results of ``task``, or None when none ship (cached while the file is unchanged;
    treat the result as read-only).

    Raises:
        KaspError: a shipped file that is broken (see :func:`load_results`).
    """
    return _load_if_shipped(shipped_sweep_path(task))


def shipped_status(task: str) -> str | None:
    """One line on how complete the shipped sweep of ``task`` is, for the pages (None when none ships,
    it is broken, or every planned run is in it): e.g. "The shipped MRPC sweep holds 7 of its 13
    planned runs so far (budget: 200 steps a run); the curve fills in as the rest are run."
    """
    try:
        res = load_shipped(task)
    except KaspError:
        return None
    if not res:
        return None
    plan = res.get("plan") or {}
    planned = plan.get("runs")
    try:  # count only the runs of this plan (a results file keeps older plans' runs too)
        keys = {r.key for r in plan_runs(plan["sparsities"], plan["methods"], plan["seeds"],
                                         plan.get("small_dense_sparsities"), plan.get("multi_seed_sparsities"))}
        done = sum(1 for e in res.get("runs", []) if e.get("key") in keys)
    except (KeyError, TypeError, KaspError):
        done = len(res.get("runs", []))
    if not planned or done >= planned:
        return None
    from kasp.spec.tasks import task_name

    steps = ((res.get("plan") or {}).get("budget") or {}).get("max_steps")
    return (f"The shipped {task_name(task)} sweep holds {done} of its {planned} planned runs so far"
            + (f" (budget: {steps} steps a run)" if steps else "") + "; the curve fills in as the rest are run "
            "(`scripts/run_sweeps.sh`).")


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    return load_results(path)


# --- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: a method at a sparsity (small-dense: the sparsity it stands for) and a seed."""

    method: str
    sparsity: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}@{self.sparsity:g}/seed{self.seed}"

    @property
    def dirname(self) -> str:
        return f"{self.method}-s{self.sparsity * 100:g}-seed{self.seed}"


def plan_runs(sparsities: Iterable[float] = DEFAULT_SPARSITIES, methods: Iterable[str] = SWEPT_METHODS,
              seeds: Iterable[int] = (42,), small_dense_sparsities: Iterable[float] | None = None,
              multi_seed_sparsities: Iterable[float] | None = None) -> list[PlannedRun]:
    """The ordered runs of a sweep: every method at every sparsity for the first seed, then the other seeds.

    Args:
        sparsities: for KASP and magnitude (fractions in (0, 1)).
        methods: a subset of :data:`METHODS`.
        seeds: the first runs everything; the others only at ``multi_seed_sparsities``.
        small_dense_sparsities: the sizes of the small-dense runs (default: ``sparsities``).
        multi_seed_sparsities: where seeds after the first run (default: every sparsity).

    Raises:
        KaspError: an unknown method, a sparsity outside (0, 1), or no seed.
    """
    methods, seeds = list(methods), list(seeds)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise KaspError(f"unknown sweep method(s) {bad}: choose from {', '.join(METHODS)}")
    if not seeds:
        raise KaspError("--seeds needs at least one seed")
    sp = sorted(set(float(s) for s in sparsities))
    sd = sorted(set(float(s) for s in (sp if small_dense_sparsities is None else small_dense_sparsities)))
    for s in sp + sd:
        if not 0.0 < s < 1.0:
            raise KaspError(f"sweep sparsity {s} is outside (0, 1): give fractions, e.g. 0.9 for 90 % zeros")
    multi = None if multi_seed_sparsities is None else {float(s) for s in multi_seed_sparsities}
    out = []
    for i, seed in enumerate(seeds):
        for s in sorted(set(sp) | set(sd)):
            if i > 0 and multi is not None and s not in multi:
                continue
            for m in methods:
                if s in (sd if shrinks_student(m) else sp):
                    out.append(PlannedRun(m, s, int(seed)))
    return out


# --- reading for the app ----------------------------------------------------------------------
def sweep_points(results: dict[str, Any], source: str = "precomputed sweep"):
    """Mean and seed spread of each (method, sparsity) of a results object, as a DataFrame.

    Columns: method, nominal (the planned sparsity; for small-dense the sparsity it stands for),
    sparsity (x position: measured sparsity, for small-dense its equivalent sparsity
    1 - its weights / the full model's), metric (mean over seeds, fraction), spread (half the
    max - min range over seeds, so mean +- spread spans the seeds; 0 for one seed), n (seeds),
    wall_min (mean), source, label, note (why a seed's metric is undefined, or the convention its value
    follows, with how many seeds: "constant predictions: GLUE's convention (2 of 2 seeds)"; None when
    plain). A seed whose metric is undefined is left out of the mean; with none left, metric is NaN
    (a gap, never 0).
    """
    import pandas as pd

    from kasp.spec.metrics import metric_note, metric_value

    rows = []
    main = results.get("main_metric")
    for e in results["runs"]:
        x = axis_sparsity(e["method"], e["measured_sparsity"], (e.get("small_dense") or {}).get("equivalent_sparsity"))
        rows.append({"method": e["method"], "nominal": e["sparsity"], "x": x, "metric": metric_value(e, "metric"),
                     "wall": e["wall_seconds"] / 60, "note": metric_note(e.get("metrics"), main) if main else None})
    cols = ["method", "nominal", "sparsity", "metric", "spread", "n", "wall_min", "source", "label", "note"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["metric"] = df["metric"].astype(float)

    def _note(notes):
        said = [n for n in notes if isinstance(n, str) and n]  # pandas holds a missing note as NaN (truthy)
        if not said:
            return None
        return "; ".join(f"{n} ({said.count(n)} of {len(notes)} seeds)" for n in dict.fromkeys(said))

    g = df.groupby(["method", "nominal"], as_index=False).agg(
        sparsity=("x", "mean"), metric=("metric", "mean"), lo=("metric", "min"), hi=("metric", "max"),
        n=("metric", "size"), wall_min=("wall", "mean"), note=("note", _note))
    g["spread"] = (g["hi"] - g["lo"]) / 2
    budget = (results.get("plan") or {}).get("budget", {})
    steps, epochs = budget.get("max_steps"), budget.get("epochs")
    each = f"{epochs:g} epochs, {steps} steps per run" if epochs and steps else f"{steps} steps per run" if steps else ""
    g["source"] = source
    g["label"] = f"kasp sweep --task {results['task']}" + (f" ({each})" if each else "")
    return g[cols]
