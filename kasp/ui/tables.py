"""Tables the app draws, built from the run store, the shipped precomputed runs and published figures.

Pure pandas, no Streamlit and no torch (``tests/ui/test_app_layout.py`` holds it to that): the pages only lay
these out. Every row says where its number came from in a ``source`` column: "live run" (this machine's
store), "precomputed run" (shipped in ``assets/precomputed/``, with its recipe) or "published" (with the paper).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pandas as pd

from kasp.experiments import jobs
from kasp.ground.errors import KaspError
from kasp.spec.metrics import METRIC_NAMES, metric_note, metric_value
from kasp.ground.resources import precomputed_path
from kasp.ground.runs import RunDir, json_problem, list_runs, measured_sparsity
from kasp.models.shipped import PREFIX as SHIPPED_PREFIX
from kasp.spec.tasks import get_task, metric_axis, task_name
from kasp.spec.methods import axis_sparsity, shrinks_student
from kasp.experiments.results import load_shipped, sweep_points


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

_KNOWN = {"cola", "sst2", "sst-2", "mrpc", "stsb", "sts-b", "qnli", "rte", "wnli", "mnli", "qqp"}
#: the tasks whose shipped sweeps the Results page lists when it shows every task
_SWEEP_TASKS = {"sst2", "mrpc", "rte", "stsb", "cola", "qnli", "wnli"}

def _pct(fraction: float | None) -> float:
    """A fraction as a percentage; NaN when missing (0 stays 0)."""
    return float("nan") if fraction is None else fraction * 100


RUN_COLUMNS = ["id", "source", "state", "task", "method", "target_sparsity", "measured_sparsity", "metric",
               "metric_name", "metric_note", "wall_min", "steps", "error"]
# metric: a fraction, or NaN where undefined (never 0); metric_note: why it is undefined ("constant
# predictions"), or the convention its value follows ("constant predictions: GLUE's convention"), else None


def _run_row(run: RunDir) -> dict[str, Any]:
    rep, st = run.report(), run.status()
    rec = jobs.run_recipe(run)  # a run queued by an older KASP has no config.json: the options it was queued with
    task = rec.get("task")
    task = get_task(task).name if task and task.lower() in _KNOWN else task
    main = rep.get("main_metric") or (get_task(task).main_metric if task in _KNOWN else None)
    m = rep.get("metrics") or {}
    method = rec.get("method")
    target = rec.get("sparsity")
    return {
        "id": run.id, "source": "live run", "state": run.state(), "task": task,
        "method": method, "target_sparsity": target,
        "measured_sparsity": measured_sparsity(rep),
        "metric": metric_value(m, main) if main else None, "metric_name": METRIC_NAMES.get(main, main),
        "metric_note": metric_note(m, main) if main else None,
        "wall_min": rep["wall_seconds"] / 60 if "wall_seconds" in rep else None,
        "steps": st.get("step"), "total_steps": st.get("total_steps") or rep.get("steps"),
        "error": st.get("error") if run.state() in ("failed", "cancelled", "damaged") else None,
    }


def _safe_row(run: RunDir) -> dict[str, Any]:
    """:func:`_run_row`, or a row in state "damaged" naming the run and what could not be read (a file
    of the wrong shape inside: a list where a dict belongs, a string where a number belongs)."""
    try:
        row = _run_row(run)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OSError) as e:
        from kasp.ground.runs import warn_damaged

        text = warn_damaged(run.path / "(run files)", f"hold data of the wrong shape ({type(e).__name__}: {str(e)[:80]})")
        return {"id": run.id, "source": "live run", "state": "damaged", "error": text}
    if row["state"] not in ("failed", "cancelled", "damaged"):
        damage = run.damage()
        if damage:
            row["error"] = "; ".join(damage)
    return row


def runs_frame(store: str | Path | None = None) -> pd.DataFrame:
    """One row per run in the store (newest first), columns :data:`RUN_COLUMNS` + total_steps.

    A run with a damaged file (not UTF-8, NUL bytes, a JSON list where an object belongs, a directory
    where a file belongs) is listed, never raised on: state "damaged" when its status.json is
    damaged, and ``error`` naming the file and the problem."""
    rows = [_safe_row(r) for r in list_runs(store)]
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["total_steps"])


def load_precomputed(path: Path | None = None) -> list[dict[str, Any]]:
    """The shipped precomputed runs (real runs on this project's 2-core machine; see their recipes)."""
    path = Path(path or PRECOMPUTED)
    try:
        return _load_json_cached(str(path), path.stat().st_mtime)
    except FileNotFoundError:
        return []


@functools.lru_cache(maxsize=4)
def _load_json_cached(path: str, mtime: float) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def precomputed_frame(task: str | None = None, path: Path | None = None) -> pd.DataFrame:
    rows = [{"id": r["id"], "source": "precomputed run", "state": "done", "task": r["task"], "method": r["method"],
             "target_sparsity": r["target_sparsity"], "measured_sparsity": r["measured_sparsity"],
             "metric": metric_value(r, "metric"), "metric_name": r["metric_name"],
             "metric_note": metric_note(r.get("metrics"), r.get("main_metric") or get_task(r["task"]).main_metric),
             "wall_min": r["wall_seconds"] / 60,
             "steps": r["steps"], "error": None, "recipe": r.get("command")}
            for r in load_precomputed(path) if task is None or r["task"] == task]
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["recipe"])


def _shipped_sweep(task: str) -> dict[str, Any] | None:
    """The shipped sweep of ``task`` (:func:`kasp.experiments.results.load_shipped`), or None (none ships, or it is broken:
    the curve's pages say so with :func:`curve_data`'s error)."""
    try:
        return load_shipped(get_task(task).name) if get_task(task).name in _KNOWN else None
    except KaspError:
        return None


def sweep_command(results: dict[str, Any]) -> str:
    """The command that made a shipped sweep, with its budget: "kasp sweep --task mrpc (200 steps a run)"."""
    steps = ((results.get("plan") or {}).get("budget") or {}).get("max_steps")
    return f"kasp sweep --task {results['task']}" + (f" ({steps} steps a run)" if steps else "")


def sweep_runs(task: str) -> list[dict[str, Any]]:
    """Every run of the shipped sweep of ``task`` (its teacher first) as a precomputed run, in the layout
    of :func:`load_precomputed`'s entries: id ("sweep/<key>", "sweep/teacher"), task, method, target and
    measured sparsity, metric, metrics, wall_seconds, steps, per_matrix_sparsity, progress (records with
    their ``type``), recipe, command, machine, retention. Empty when no sweep ships for the task."""
    res = _shipped_sweep(task)
    if not res:
        return []
    name = get_task(task).name
    machine = res.get("machine") or {}
    where = (f"{machine.get('cpus', '?')}-core {machine.get('cpu', 'CPU')}"
             + (f", {machine['gpu']}" if machine.get("gpu") else "")) if machine else "the reference machine"
    command = sweep_command(res)
    out = []
    t = res.get("teacher") or {}
    if t.get("run_id"):
        out.append({"id": "sweep/teacher", "task": name, "method": "finetune", "target_sparsity": 0.0,
                    "measured_sparsity": 0.0, "metric": t.get("metric"), "metrics": t.get("metrics"),
                    "metric_name": res.get("metric_name"), "wall_seconds": t.get("wall_seconds"),
                    "steps": (t.get("recipe") or {}).get("max_steps"), "per_matrix_sparsity": None, "progress": [],
                    "recipe": t.get("recipe"), "command": f"{command}: its teacher, {t['run_id']}",
                    "machine": where, "retention": None})
    for e in res.get("runs", []):
        prog = e.get("progress") or {}
        records = sorted([{"type": "train", **r} for r in prog.get("train", [])]
                         + [{"type": "eval", **r} for r in prog.get("eval", [])], key=lambda r: r.get("step", 0))
        out.append({"id": f"sweep/{e['key']}", "task": name, "method": e["method"], "target_sparsity": e["sparsity"],
                    "measured_sparsity": e["measured_sparsity"], "metric": e.get("metric"), "metrics": e.get("metrics"),
                    "metric_name": res.get("metric_name"), "wall_seconds": e.get("wall_seconds"),
                    "steps": e.get("steps"), "per_matrix_sparsity": e.get("per_matrix_sparsity"), "progress": records,
                    "recipe": e.get("recipe"), "command": f"{command}, run {e['key']}", "machine": where,
                    "retention": e.get("retention"), "small_dense": e.get("small_dense")})
    return out


def shipped_run(rid: str, task: str | None = None) -> dict[str, Any] | None:
    """A shipped run by its id: a precomputed run ("precomputed/...") or a run of the shipped sweep of
    ``task`` ("sweep/<key>"); None when there is no such run."""
    if rid.startswith("sweep/"):
        return next((r for r in sweep_runs(task) if r["id"] == rid), None) if task else None
    return next((r for r in load_precomputed() if r["id"] == rid), None)


def sweep_frame(task: str) -> pd.DataFrame:
    """The runs of the shipped sweep of ``task`` in :func:`precomputed_frame`'s layout, source
    "precomputed sweep" (recipe: the sweep's command and the run's key)."""
    rows = [{"id": r["id"], "source": "precomputed sweep", "state": "done", "task": r["task"], "method": r["method"],
             "target_sparsity": r["target_sparsity"], "measured_sparsity": r["measured_sparsity"],
             "metric": metric_value(r, "metric"), "metric_name": r["metric_name"],
             "metric_note": metric_note(r.get("metrics"), get_task(r["task"]).main_metric),
             "wall_min": (r["wall_seconds"] or float("nan")) / 60, "steps": r["steps"], "error": None,
             "recipe": r["command"]}
            for r in sweep_runs(task)]
    return pd.DataFrame(rows, columns=RUN_COLUMNS + ["recipe"])


def published_frame(task: str | None = None) -> pd.DataFrame:
    rows = [{"task": t, "method": m, "measured_sparsity": s, "metric": v, "source": f"published: {PAPER}",
             "metric_name": METRIC_NAMES[get_task(t).main_metric]} for t, m, s, v in PUBLISHED if task in (None, t)]
    return pd.DataFrame(rows, columns=["task", "method", "measured_sparsity", "metric", "metric_name", "source"])


RETENTION_COLUMNS = ["run", "method", "sparsity (%)", "attention similarity", "CKA", "agreement (%)", "source"]


def precomputed_retention(task: str, path: Path | None = None) -> pd.DataFrame:
    """Retention measures of the shipped runs of a task, one row per pruned run: the precomputed runs
    (source "precomputed run") and the runs of the shipped sweep (source "precomputed sweep"; small
    dense students at the sparsity their size equals), each measured at the end of its run."""
    def row(r, source):
        ret = r["retention"]
        x = axis_sparsity(r["method"], r["measured_sparsity"], (r.get("small_dense") or {}).get("equivalent_sparsity"))
        return {"run": r["id"], "method": r["method"], "sparsity (%)": x * 100,
                "attention similarity": ret.get("mean_similarity"),
                "CKA": _pct(ret.get("mean_cka")) / 100, "agreement (%)": _pct(ret.get("agreement")), "source": source}

    rows = [row(r, "precomputed run") for r in load_precomputed(path) if r["task"] == task and r.get("retention")]
    rows += [row(r, "precomputed sweep") for r in sweep_runs(task) if r.get("retention")]
    return pd.DataFrame(rows, columns=RETENTION_COLUMNS)


def retention_samples(task: str) -> int | None:
    """How many dev examples the shipped retention measures of ``task`` were taken on (None: none ship)."""
    ns = {int(r["retention"]["samples"]) for r in sweep_runs(task) + [p for p in load_precomputed() if p["task"] == task]
          if r.get("retention") and r["retention"].get("samples")}
    return max(ns) if ns else None




#: one icon per run state (Material Symbols, as Streamlit writes them)
STATE_ICONS = {"queued": ":material/hourglass_empty:", "running": ":material/directions_run:",
               "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
               "damaged": ":material/broken_image:"}


def state_icon(state: str) -> str:
    """The icon of a run state (a bullet for an unknown state)."""
    return STATE_ICONS.get(state, "•")


def results_table(task: str | None, store: str | Path | None = None, precomputed: Path | None = None) -> pd.DataFrame:
    """The Results page's table: live and precomputed runs (of ``task``, or all when None), newest live
    runs first, with display columns: id, source, state (icon and word), task (GLUE name), method,
    target and measured sparsity (%), dev metric (x 100, the run's own task metric; NaN where undefined),
    metric, metric note (why it is undefined, or "constant predictions: GLUE's convention"), wall time
    (min), error."""
    live = runs_frame(store)
    pre = precomputed_frame(path=precomputed)
    sweeps = [f for f in (sweep_frame(t) for t in ([task] if task is not None else sorted(_SWEEP_TASKS))) if len(f)]
    table = pd.concat([f for f in [live, pre, *sweeps] if len(f)], ignore_index=True) if (len(pre) or sweeps) else live
    if task is not None:
        table = table[table["task"] == get_task(task).name]
    return pd.DataFrame({
        "id": table["id"], "source": table["source"], "state": table["state"],
        "task": [task_name(t) if isinstance(t, str) else "?" for t in table["task"]],
        "method": table["method"],
        "target sparsity (%)": table["target_sparsity"].astype(float) * 100,
        "measured sparsity (%)": table["measured_sparsity"].astype(float) * 100,
        "dev metric": table["metric"].astype(float) * 100, "metric": table["metric_name"],
        "metric note": table["metric_note"],
        "wall time (min)": table["wall_min"].astype(float), "error": table["error"],
    }).reset_index(drop=True)


def undefined_runs_note(table: pd.DataFrame) -> str | None:
    """One line naming the finished runs of a :func:`results_table` whose dev metric is undefined (not
    drawn: a gap, never a point at 0) and those whose value is GLUE's convention for a degenerate case
    (drawn, with the note); None when there are none."""
    if table.empty or "metric note" not in table:
        return None
    done = table[(table["state"] == "done") & table["metric note"].notna()]
    gaps = [f"{r['id']} ({r['metric note']})" for _, r in done.iterrows() if r["dev metric"] != r["dev metric"]]
    conv = [f"{r['id']} {r['dev metric']:.2f} ({r['metric note']})" for _, r in done.iterrows()
            if r["dev metric"] == r["dev metric"]]
    parts = []
    if gaps:
        parts.append("Not drawn, their dev metric is undefined: " + "; ".join(gaps) + ".")
    if conv:
        parts.append("Drawn by convention: " + "; ".join(conv) + ".")
    return " ".join(parts) or None


def retention_rows(runs: list[RunDir], samples: int) -> tuple[pd.DataFrame, list[RunDir]]:
    """Cached retention measures of finished prune runs at ``samples`` dev examples, and the runs not yet
    measured at that size (their ``retention.json`` is missing or was measured on another number).

    Returns:
        (one row per measured run with columns run, method, sparsity (%), attention similarity, CKA,
        agreement (%), source = "live run", or "shipped model" for a run of :func:`kasp.models.shipped.shipped_store`;
        the unmeasured runs).
    """
    rows, missing = [], []
    for r in runs:
        cached, _ = json_problem(r.path / "retention.json")  # damaged (any kind): measured again
        if not isinstance(cached, dict) or cached.get("samples_requested") != samples:
            missing.append(r)
            continue
        try:
            rows.append({"run": r.id, "method": r.recipe().get("method"),
                         "sparsity (%)": _pct(measured_sparsity(r.report())),
                         "attention similarity": float(cached["mean_similarity"]),
                         "CKA": float("nan") if cached["mean_cka"] is None else float(cached["mean_cka"]),
                         # no agreement for a regression task: a gap, never 0 %
                         "agreement (%)": _pct(None if cached.get("agreement") is None else float(cached["agreement"])),
                         "source": "shipped model" if r.id.startswith(SHIPPED_PREFIX) else "live run"})
        except (KeyError, TypeError, ValueError):
            missing.append(r)  # a cache of the wrong shape: measured again
    cols = ["run", "method", "sparsity (%)", "attention similarity", "CKA", "agreement (%)", "source"]
    return pd.DataFrame(rows, columns=cols), missing


def latency_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Latency rows (:func:`kasp.models.onnx_export.measure_latency`) side by side: one row per threads x batch size,
    one column of median milliseconds per runtime, and int8's speed-up over dense PyTorch."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    wide = df.pivot_table(index=["threads", "batch", "tokens"], columns="runtime", values="median_ms").reset_index()
    wide.columns.name = None
    wide = wide.rename(columns={c: f"{c} (ms)" for c in ("PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime int8")})
    if {"PyTorch fp32 (ms)", "ONNX Runtime int8 (ms)"} <= set(wide.columns):
        wide["int8 speed-up vs PyTorch"] = wide["PyTorch fp32 (ms)"] / wide["ONNX Runtime int8 (ms)"]
    return wide


def shipped_scores(task: str) -> pd.DataFrame:
    """What the shipped runs of ``task`` scored on its dev set, for pages that cannot run them (no weights ship): one
    row per condition, the numbers the Overview and Results pages draw. The precomputed runs and the shipped sweep's
    teacher are single runs; each (method, sparsity) of the shipped sweep is the mean over its seeds
    (:func:`kasp.experiments.results.sweep_points`, a seed whose metric is undefined left out).

    Columns: method (as the app names it), sparsity (%; a small dense model: the sparsity its size equals), the dev
    metric (column named by :func:`metric_axis`, ×100), spread (half the seeds' range, so that the metric ± it spans
    the seeds; 0 for one seed), seeds (how many), run (a single run's id; a condition of the sweep:
    "sweep/kasp@0.9", whose seeds' runs are "sweep/kasp@0.9/seed42", ... elsewhere in the app). Empty when nothing
    ships."""
    from kasp.ui.style import method_label

    single = pd.concat([x for x in (precomputed_frame(task), sweep_frame(task)) if len(x)] or [pd.DataFrame(
        columns=RUN_COLUMNS + ["recipe"])], ignore_index=True)
    single = single[~single["id"].str.startswith("sweep/") | (single["id"] == "sweep/teacher")]
    rows = [{"method": m, "sparsity": s, "nominal": t, "metric": v, "spread": 0.0, "n": 1, "run": i}
            for m, s, t, v, i in zip(single["method"], single["measured_sparsity"].astype(float),
                                     single["target_sparsity"].astype(float), single["metric"].astype(float),
                                     single["id"])]
    res = _shipped_sweep(task)
    if res and res.get("runs"):
        for _, p in sweep_points(res).sort_values("nominal", kind="stable").iterrows():  # by sparsity, then method
            rows.append({"method": p["method"], "sparsity": p["sparsity"], "nominal": p["nominal"],
                         "metric": p["metric"], "spread": p["spread"], "n": int(p["n"]),
                         "run": f"sweep/{p['method']}@{p['nominal']:g}"})
    f = pd.DataFrame(rows, columns=["method", "sparsity", "nominal", "metric", "spread", "n", "run"])
    small = f["method"].map(shrinks_student).astype(bool)  # dense, smaller: the sparsity its number of weights equals
    sparsity = (f["sparsity"].fillna(f["nominal"]).where(~small, f["nominal"]) * 100).astype(float)
    # the numbers first, so that they show at 1024 px without scrolling the table sideways
    return pd.DataFrame({"method": f["method"].map(method_label), "sparsity (%)": sparsity,
                         metric_axis(task): f["metric"].astype(float) * 100, "spread": f["spread"].astype(float) * 100,
                         "seeds": f["n"].astype(int), "run": f["run"]})


def short_labels(items: list[dict[str, Any]]) -> dict[str, str]:
    """{label: how narrow places name it} for :func:`kasp.analysis.predict.prediction_runs`' items (the Predictions
    page's Students chips and table rows, whole at 1024 px): the item's ``short`` ("KASP, 90 %"), or its full
    label (the run id first) where two items would read the same."""
    shorts = [it.get("short") or it["label"] for it in items]
    return {it["label"]: s if shorts.count(s) == 1 else it["label"] for it, s in zip(items, shorts)}


#: the 2 x 2 of issue 24 (student start x loss), measured by the recipe study and shipped for the app
INGREDIENTS = precomputed_path("ingredients.json")
#: its cells in reading order: (student start, loss)
INGREDIENT_CELLS = [("pre-trained", "task labels"), ("pre-trained", "distillation"),
                    ("fine-tuned", "task labels"), ("fine-tuned", "distillation")]


LONGER_BUDGETS = precomputed_path("longer_budgets.json")


def longer_budget(task: str, path: Path | None = None) -> dict[str, Any] | None:
    """The recipe study's longer KASP run of a small ``task`` at 90 % (``assets/precomputed/longer_budgets.json``,
    written by ``scripts/study_table.py --ship-budgets``): {"line", "main_metric", "steps", "epochs", "teacher":
    {"run_id", "metric", "epochs"}, "dev": {seed: metric}, "evals": [{"step", "sparsity", "dev": {seed: metric}}],
    "source"}, metrics as fractions; None when the task has none or the file is missing or unreadable."""
    try:
        data = json.loads(Path(path or LONGER_BUDGETS).read_text(encoding="utf-8"))
        entry = data["tasks"][get_task(task).name]
        if not isinstance(entry, dict) or not entry.get("dev"):
            return None
        return entry | {"source": data.get("source", "precomputed recipe-study runs")}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def ingredient_cells(task: str, path: Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The shipped 2 x 2 of ``task`` (``assets/precomputed/ingredients.json``, written by
    ``scripts/study_table.py --ship`` from the recipe study's results files): one row per measured cell with
    ``start`` ("pre-trained" / "fine-tuned"), ``loss`` ("task labels" / "distillation"), ``line`` (the study line),
    ``mean`` and ``spread`` (dev metric x 100, mean and half the range over the seeds), ``n`` (seeds) and
    ``selection`` (the selection slice's mean x 100); and the file's header (recipe, teacher, source). Empty when
    the task has no study or the file is missing or unreadable."""
    f = Path(path or INGREDIENTS)
    empty = pd.DataFrame(columns=["start", "loss", "line", "mean", "spread", "n", "selection"])
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return empty, {}
    if not isinstance(data, dict) or data.get("task") != get_task(task).name:
        return empty, {}
    rows = []
    for c in data.get("cells") or []:
        dev = [100 * v for v in (c.get("dev") or {}).values() if isinstance(v, (int, float))]
        sel = [100 * v for v in (c.get("selection") or {}).values() if isinstance(v, (int, float))]
        if dev:
            rows.append({"start": c["start"], "loss": c["loss"], "line": c.get("line"), "mean": sum(dev) / len(dev),
                         "spread": (max(dev) - min(dev)) / 2, "n": len(dev),
                         "selection": sum(sel) / len(sel) if sel else float("nan")})
    return (pd.DataFrame(rows) if rows else empty), {k: v for k, v in data.items() if k != "cells"}
