"""Tables the app draws, built from the run store, the shipped precomputed runs and published figures.

Pure pandas, no Streamlit: the pages only lay these out. Every row says where its number came
from in a ``source`` column: "live run" (this machine's store), "precomputed run" (shipped in
``assets/precomputed/``, with its recipe) or "published" (with the paper).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pandas as pd

from kasp.data import get_task
from kasp.metrics import METRIC_NAMES
from kasp.resources import precomputed_path
from kasp.runs import RunDir, list_runs
from kasp.schedule import cubic_sparsity, pruning_steps

PRECOMPUTED = precomputed_path("runs.json")

PAPER = "Xu et al., NAACL 2021, table 1 (BERT-base, GLUE dev)"
#: docs/method.md §6: GLUE dev, BERT-base; sparsity = fraction of encoder linear weights removed.
PUBLISHED = [
    # task, method, sparsity, metric value (fraction)
    ("qnli", "dense (BERT-base)", 0.0, 0.918), ("mrpc", "dense (BERT-base)", 0.0, 0.886),
    ("rte", "dense (BERT-base)", 0.0, 0.693), ("cola", "dense (BERT-base)", 0.0, 0.563),
    ("qnli", "SparseBERT (KASP)", 0.95, 0.906), ("mrpc", "SparseBERT (KASP)", 0.95, 0.885),
    ("rte", "SparseBERT (KASP)", 0.95, 0.691), ("cola", "SparseBERT (KASP)", 0.95, 0.521),
]

RUN_COLUMNS = ["id", "source", "state", "task", "method", "target_sparsity", "measured_sparsity", "metric",
               "metric_name", "wall_min", "steps", "error"]


def _run_row(run: RunDir) -> dict[str, Any]:
    rec, rep, st = run.recipe(), run.report(), run.status()
    task = rec.get("task")
    main = rep.get("main_metric") or (get_task(task).main_metric if task else None)
    m = rep.get("metrics") or {}
    return {
        "id": run.id, "source": "live run", "state": run.state(), "task": task,
        "method": rec.get("method"), "target_sparsity": rec.get("sparsity"),
        # a small-dense run has no zeros: place it at the sparsity its size equals (kasp/small_dense.py)
        "measured_sparsity": (rep.get("small_dense") or {}).get("equivalent_sparsity",
                                                                 (rep.get("sparsity") or {}).get("pruned_sparsity")),
        "metric": m.get(main) if main else None, "metric_name": METRIC_NAMES.get(main, main),
        "wall_min": rep["wall_seconds"] / 60 if "wall_seconds" in rep else None,
        "steps": st.get("step"), "total_steps": st.get("total_steps") or rep.get("steps"),
        "error": st.get("error") if run.state() in ("failed", "cancelled") else None,
    }


def runs_frame(store: str | Path | None = None) -> pd.DataFrame:
    """One row per run in the store (newest first), columns :data:`RUN_COLUMNS` + total_steps."""
    rows = [_run_row(r) for r in list_runs(store)]
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["total_steps"])


def load_precomputed(path: Path = PRECOMPUTED) -> list[dict[str, Any]]:
    """The shipped precomputed runs (real runs on this project's 2-core machine; see their recipes)."""
    try:
        return _load_json_cached(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        return []


@functools.lru_cache(maxsize=4)
def _load_json_cached(path: str, mtime: float) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def precomputed_frame(task: str | None = None, path: Path = PRECOMPUTED) -> pd.DataFrame:
    rows = [{"id": r["id"], "source": "precomputed run", "state": "done", "task": r["task"], "method": r["method"],
             "target_sparsity": r["target_sparsity"], "measured_sparsity": r["measured_sparsity"],
             "metric": r["metric"], "metric_name": r["metric_name"], "wall_min": r["wall_seconds"] / 60,
             "steps": r["steps"], "error": None, "recipe": r.get("command")}
            for r in load_precomputed(path) if task is None or r["task"] == task]
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["recipe"])


def published_frame(task: str | None = None) -> pd.DataFrame:
    rows = [{"task": t, "method": m, "measured_sparsity": s, "metric": v, "source": f"published: {PAPER}",
             "metric_name": METRIC_NAMES[get_task(t).main_metric]} for t, m, s, v in PUBLISHED if task in (None, t)]
    return pd.DataFrame(rows, columns=["task", "method", "measured_sparsity", "metric", "metric_name", "source"])


def curve_frame(task: str, store: str | Path | None = None) -> pd.DataFrame:
    """Metric against sparsity for a task: finished live runs, precomputed runs and published figures.

    Columns: method, sparsity (fraction of encoder linear weights that are zero), metric
    (fraction), source, label. Dense fine-tuned runs appear as method "dense teacher".
    """
    live = runs_frame(store)
    live = live[(live["task"] == task) & (live["state"] == "done")]
    frames = [live, precomputed_frame(task)]
    parts = []
    for f in frames:
        if len(f):
            parts.append(pd.DataFrame({"method": f["method"].replace({"finetune": "dense teacher"}),
                                       "sparsity": f["measured_sparsity"].fillna(f["target_sparsity"]).astype(float),
                                       "metric": f["metric"].astype(float), "source": f["source"], "label": f["id"]}))
    pub = published_frame(task)
    if len(pub):
        parts.append(pd.DataFrame({"method": pub["method"], "sparsity": pub["measured_sparsity"], "metric": pub["metric"],
                                   "source": "published", "label": PAPER}))
    if not parts:
        return pd.DataFrame(columns=["method", "sparsity", "metric", "source", "label"])
    return pd.concat(parts, ignore_index=True).dropna(subset=["metric"])


def progress_frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train records, eval records) of a progress log (``RunDir.progress()`` or a precomputed run's
    ``progress``) as DataFrames, empty when there are none yet.

    The eval frame has one column per metric (e.g. ``accuracy``) and ``step``, ``sparsity``.
    """
    train = pd.DataFrame([r for r in records if r.get("type") == "train"])
    evals = pd.DataFrame([{"step": r["step"], "sparsity": r.get("sparsity"), **r["metrics"]}
                          for r in records if r.get("type") == "eval"])
    return train, evals


def schedule_frame(target: float, total_steps: int, events: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cubic schedule at every step and at the mask-update steps (Zhu & Gupta 2017, eq. 1).

    The update steps are :func:`kasp.schedule.pruning_steps`, the ones the training loop uses.

    Returns:
        (curve with columns step, sparsity; update points with columns step, sparsity).
    """
    every = max(1, total_steps // 400)
    steps = list(range(0, total_steps + 1, every))
    if steps[-1] != total_steps:
        steps.append(total_steps)
    curve = pd.DataFrame({"step": steps, "sparsity": [cubic_sparsity(t, total_steps, target) for t in steps]})
    upd = pruning_steps(total_steps, events)
    points = pd.DataFrame({"step": upd, "sparsity": [cubic_sparsity(t, total_steps, target) for t in upd]})
    return curve, points


# seconds per optimizer step of MiniLM-L6 at batch 32, length-bucketed, 2 threads (docs/cpu.md)
_DEFAULT_STEP_SECONDS = {"finetune": 0.33, "magnitude": 0.33, "kasp": 0.44}


def estimate_seconds(method: str, steps: int, batch_size: int = 32, evals: int = 0, dev_examples: int = 872,
                     model: str = "default", store: str | Path | None = None) -> tuple[float, str]:
    """Estimated wall time of a run on this machine and where the estimate comes from.

    Uses the median seconds per step of finished runs of the same method in the store (scaled
    by batch size), else the step time measured for MiniLM-L6 on 2 cores (docs/cpu.md); adds 20 s
    start-up and evaluation at about 112 sentences per second.
    """
    per_step, source = None, "docs/cpu.md: MiniLM-L6, batch 32, 2 CPU cores"
    done = [(r.report(), r.recipe()) for r in list_runs(store) if r.state() == "done" and r.recipe().get("method") == method and r.recipe().get("model") == model]
    rates = [rep["train_seconds"] / rep["steps"] * 32 / rec.get("batch_size", 32)  # seconds per step at batch 32
             for rep, rec in done if rep.get("train_seconds") and rep.get("steps")]
    if rates:
        per_step = sorted(rates)[len(rates) // 2]
        source = f"median speed of {len(rates)} finished {method} run(s) of this model in the store"
    else:
        per_step = _DEFAULT_STEP_SECONDS.get(method, 0.44)
    return 20 + steps * per_step * batch_size / 32 + evals * dev_examples / 112, source


def precomputed_retention(task: str, path: Path = PRECOMPUTED) -> pd.DataFrame:
    """Retention measures of the shipped precomputed runs of a task (one row per pruned run)."""
    rows = [{"run": r["id"], "method": r["method"], "sparsity (%)": r["measured_sparsity"] * 100,
             "attention similarity": r["retention"]["mean_similarity"], "CKA": r["retention"]["mean_cka"],
             "agreement (%)": (r["retention"]["agreement"] or 0) * 100, "source": "precomputed run"}
            for r in load_precomputed(path) if r["task"] == task and r.get("retention")]
    return pd.DataFrame(rows, columns=["run", "method", "sparsity (%)", "attention similarity", "CKA", "agreement (%)",
                                       "source"])
