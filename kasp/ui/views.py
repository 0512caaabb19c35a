"""Tables the app draws, built from the run store, the shipped precomputed runs and published figures.

Pure pandas, no Streamlit: the pages only lay these out. Every row says where its number came
from in a ``source`` column: "live run" (this machine's store), "precomputed run" (shipped in
``assets/precomputed/``, with its recipe) or "published" (with the paper).
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import re
import secrets
import time
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from kasp.experiments import jobs
from kasp.ground import settings
from kasp.spec.config import RunConfig, make_config
from kasp.data.glue import get_task, load_split, shipped_splits
from kasp.ground.errors import KaspError
from kasp.spec.metrics import METRIC_NAMES, glue_metrics, metric_items, metric_note, metric_value
from kasp.ground.resources import precomputed_path
from kasp.ground.runs import FINAL_STATES, RunDir, json_problem, list_runs, measured_sparsity
from kasp.spec.schedule import cubic_sparsity, pruning_steps
from kasp.spec.tasks import format_metric, metric_axis, metric_heading, metric_label, metric_unit, task_name  # noqa: F401
from kasp.spec.methods import REFERENCE, axis_sparsity, shrinks_student
from kasp.training.estimate import DEFAULT_STEP_SECONDS, estimate_seconds
from kasp.experiments.results import load_shipped, load_shipped_gpu, sweep_points

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
    rec = _recipe(run)  # a run queued by an older KASP has no config.json: the options it was queued with
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


def curve_frame(task: str, store: str | Path | None = None) -> pd.DataFrame:
    """Metric against sparsity for a task: finished live runs, precomputed runs and published figures.

    Columns: method, sparsity (fraction of encoder linear weights that are zero), metric
    (fraction), source, label, note (``runs_frame``'s metric_note). Dense fine-tuned runs appear as
    method "dense teacher". Runs whose metric is undefined are left out (never drawn at 0); the
    Results page names them (:func:`undefined_runs_note`).
    """
    live = runs_frame(store)
    live = live[(live["task"] == task) & (live["state"] == "done")].copy()
    if len(live):  # a live prune run's hover names its budget and its own teacher (the shipped line is another's)
        by_id = {r.id: r for r in list_runs(store)}
        live["id"] = [_live_point_label(by_id[i]) if i in by_id else i for i in live["id"]]
    frames = [live, precomputed_frame(task)]
    parts = []
    for f in frames:
        if len(f):
            parts.append(pd.DataFrame({"method": f["method"].replace({"finetune": "dense teacher"}),
                                       "sparsity": f["measured_sparsity"].fillna(f["target_sparsity"]).astype(float),
                                       "metric": f["metric"].astype(float), "source": f["source"], "label": f["id"],
                                       "note": f["metric_note"]}))
    pub = published_frame(task)
    if len(pub):
        parts.append(pd.DataFrame({"method": pub["method"], "sparsity": pub["measured_sparsity"], "metric": pub["metric"],
                                   "source": "published", "label": PAPER}))
    if not parts:
        return pd.DataFrame(columns=["method", "sparsity", "metric", "source", "label", "note"])
    return pd.concat(parts, ignore_index=True).dropna(subset=["metric"])


def _live_point_label(run: RunDir) -> str:
    """A finished live run's label on the dev-metric-against-sparsity chart: its id and, for a prune run, its
    steps and its own teacher's dev metric (from its report), e.g. "20261202-...-kasp-s90 (live run: 500
    steps; its own teacher 20261202-...-finetune scored 85.09)"."""
    if run.recipe().get("kind") != "prune":
        return run.id
    rep = run.report()
    t = rep.get("teacher") or {}
    main = rep.get("main_metric") or get_task(run.recipe().get("task") or "sst2").main_metric
    tv = metric_value(t.get("metrics") or {}, main) if isinstance(t.get("metrics"), dict) else None
    tp = t.get("path")
    tid = (Path(tp).parent.name if Path(tp).name == "checkpoint" else Path(tp).name) if tp else None
    parts = [f"{rep['steps']} steps"] if rep.get("steps") else []
    if tv is not None:
        parts.append(f"its own teacher {tid} scored {tv * 100:.2f}")
    return f"{run.id} (live run: {'; '.join(parts)})" if parts else run.id


def progress_frames(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train records, eval records) of a progress log (``RunDir.progress()`` or a precomputed run's
    ``progress``) as DataFrames, empty when there are none yet.

    The eval frame has one column per metric (e.g. ``accuracy``; NaN where undefined, a gap in the
    curves) and ``step``, ``sparsity``.
    """
    train = pd.DataFrame([r for r in records if r.get("type") == "train"])
    evals = pd.DataFrame([{"step": r["step"], "sparsity": r.get("sparsity"),
                           **{k: (float("nan") if v is None else v) for k, v in metric_items(r.get("metrics"))}}
                          for r in records if r.get("type") == "eval" and isinstance(r.get("metrics"), dict)])
    return train, evals


def eval_gaps_note(records: list[dict[str, Any]], task: str) -> str | None:
    """One line naming the evaluation points of a progress log whose main dev metric is undefined
    (gaps in the curve, never points at 0) or kept by GLUE's convention, with the reason; None when
    there are none. E.g. "dev Pearson correlation undefined at steps 100, 200 (constant predictions):
    gaps in the curve"."""
    main = get_task(task).main_metric
    gaps: dict[str, list[int]] = {}
    conv: dict[str, list[int]] = {}
    for r in records:
        if r.get("type") != "eval" or not isinstance(r.get("metrics"), dict):
            continue
        note = metric_note(r["metrics"], main)
        if note:
            (gaps if metric_value(r["metrics"], main) is None else conv).setdefault(note, []).append(r.get("step"))
    name = METRIC_NAMES.get(main, main)
    parts = [f"dev {name} undefined at step(s) {', '.join(map(str, s))} ({n}): gaps in the curve" for n, s in gaps.items()]
    parts += [f"dev {name} 0.00 at step(s) {', '.join(map(str, s))} is {n}" for n, s in conv.items()]
    return "; ".join(parts) or None


def schedule_frame(target: float, total_steps: int, events: int = 100) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cubic schedule at every step and at the mask-update steps (Zhu & Gupta 2017, eq. 1).

    The update steps are :func:`kasp.spec.schedule.pruning_steps`, the ones the training loop uses.

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


# --- names and metrics as GLUE writes them (defined in kasp.spec.tasks, torch-free) ------------------

#: what each task asks, shown beside its GLUE name in the sidebar
TASK_BLURBS = {"sst2": "sentiment", "cola": "grammaticality", "mrpc": "paraphrase", "stsb": "similarity",
               "rte": "entailment", "wnli": "coreference", "qnli": "question answering"}

def task_option(task: str) -> str:
    """Sidebar label: GLUE name and what the task asks, e.g. "SST-2 (sentiment)"."""
    extra = TASK_BLURBS.get(get_task(task).name)
    if get_task(task).name == "qnli" and "train" not in shipped_splits().get("qnli", []):
        extra = f"{extra}, dev only offline"
    return f"{task_name(task)} ({extra})" if extra else task_name(task)


#: one icon per run state (Material Symbols, as Streamlit writes them)
STATE_ICONS = {"queued": ":material/hourglass_empty:", "running": ":material/directions_run:",
               "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:",
               "damaged": ":material/broken_image:"}


def state_icon(state: str) -> str:
    """The icon of a run state (a bullet for an unknown state)."""
    return STATE_ICONS.get(state, "•")


# --- the model box, the recipe form, the teacher -----------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_model(name: str, offline: bool | None = None) -> str | None:
    """Check the pre-trained model named in the sidebar before anything is launched.

    Args:
        name: "default", a local folder (a Hugging Face checkpoint or a KASP run directory) or a Hub id.
        offline: whether the Hub is unreachable; default: ``HF_HUB_OFFLINE=1`` (the app sets it).

    Returns:
        None when the model can be used, else a one-line message naming the problem and the fix.
    """
    from kasp.models.modeling import check_checkpoint_dir, default_model_path, resolve_model

    name = (name or "default").strip()
    if offline is None:
        offline = settings.get().hub_offline
    try:
        if name == "default":
            default_model_path()
            return None
        if Path(name).is_dir():
            check_checkpoint_dir(resolve_model(name))
            return None
    except KaspError as e:
        return str(e)
    if offline:
        return (f"`{name}` is not a folder on this machine, and the app works offline: use `default` "
                "(MiniLM-L6-H384) or the path of a local folder holding a Hugging Face checkpoint (safetensors).")
    if not _HUB_ID.match(name):
        return f"`{name}` is neither a local folder nor a Hugging Face Hub id (owner/name)"
    return None


@functools.lru_cache(maxsize=16)
def train_size(task: str) -> int | None:
    """Number of training examples of a task on this machine (None when its train split is not shipped)."""
    if "train" not in shipped_splits().get(get_task(task).name, []):
        return None
    return len(load_split(task, "train"))


def form_defaults(kind: str, method: str, task: str) -> dict[str, Any]:
    """Widget defaults of the Prune page: the CLI's recipe for (kind, method, task) (:func:`kasp.spec.config.make_config`),
    with ``max_steps`` filled in for the steps field: the task's step budget when the recipe is bounded by
    wall time (``time_budget`` in minutes stays set: the page starts in minutes), else from ``epochs``
    (steps = ceil(epochs · train examples / batch size)); and a target sparsity of 0.9 for prune runs."""
    from kasp.spec.config import STEP_BUDGETS

    cfg = make_config(kind, method, task, sparsity=0.9 if kind == "prune" else None).to_dict()
    if not cfg.get("max_steps") and cfg.get("time_budget") and (kind, task) in STEP_BUDGETS:
        cfg["max_steps"] = STEP_BUDGETS[(kind, task)]
    if not cfg.get("max_steps"):
        n = train_size(task)
        cfg["max_steps"] = max(1, math.ceil(cfg["epochs"] * n / cfg["batch_size"])) if n else 300
    return cfg


def validate_launch(kind: str, options: dict[str, Any]) -> RunConfig:
    """The recipe a launch would run, validated by the same code as the CLI (:func:`kasp.spec.config.config_from_options`),
    plus the checks the app can make before starting a subprocess: model name and an offline training set.

    Raises:
        KaspError: one line naming the bad value and the fix.
    """
    from kasp.spec.config import config_from_options

    cfg = config_from_options(kind, options)
    problem = check_model(cfg.model)
    if problem:
        raise KaspError(problem)
    if train_size(cfg.task) is None and settings.get().hub_offline:
        raise KaspError(f"the {task_name(cfg.task)} training set is not shipped with KASP and the app works offline: "
                        "choose another task (QNLI ships its dev set only)")
    return cfg


@functools.lru_cache(maxsize=16)
def majority_baseline(task: str) -> dict[str, float] | None:
    """GLUE metrics of always answering the dev set's most frequent label (None for STS-B, a regression).

    Computed on the shipped dev set with :func:`kasp.spec.metrics.glue_metrics`; a teacher at or below
    this has learnt nothing a constant answer would not. Cached per task: the pages draw it on every rerun.
    """
    t = get_task(task)
    if t.is_regression:
        return None
    try:
        labels = load_split(t, "dev")["label"].to_numpy()
    except KaspError:
        return None
    majority = pd.Series(labels).mode().iloc[0]
    return glue_metrics(t.metric, [majority] * len(labels), labels)


def majority_metric(task: str) -> float | None:
    """The task's main GLUE metric (fraction) of always answering the majority class on the dev set,
    or None (STS-B, or no dev labels). The curves draw it as a floor: a student at it learnt nothing."""
    base = majority_baseline(task)
    return None if base is None else base.get(get_task(task).main_metric)


def teacher_warning(task: str, report: dict[str, Any]) -> str | None:
    """A warning when a teacher's dev main metric is at or below the majority-class baseline, else None."""
    base = majority_baseline(task)
    main = get_task(task).main_metric
    value = (report.get("metrics") or {}).get(main)
    if base is None or value is None or value > base[main]:
        return None
    return (f"This teacher's dev {metric_label(task)} ({format_metric(task, value)}) is not above that of always "
            f"answering the most frequent label of the {task_name(task)} dev set ({format_metric(task, base[main])}): "
            "it has learnt nothing a constant answer would not, and a student distilled from it learns no more. "
            "Fine-tune a teacher with more steps.")


def default_example(task: str) -> tuple[str, str | None]:
    """The first dev example of a task: (sentence, second sentence or None), the Attention page's default input."""
    try:
        row = load_split(task, "dev").iloc[0]
    except KaspError:
        return "a gripping , funny and deeply moving film .", None
    b = row["text_b"]
    return str(row["text_a"]), (str(b) if b is not None and not (isinstance(b, float) and math.isnan(b)) else None)


# --- runs people can follow and own ------------------------------------------------------------

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def session_token(existing: str | None = None) -> str:
    """The owner token of a browser session: ``existing`` when it looks like one (e.g. from the page URL,
    so that a reload keeps ownership), else a new random one (``secrets.token_urlsafe``)."""
    if existing and _TOKEN.match(existing):
        return existing
    return secrets.token_urlsafe(12)


#: the shortest ``KASP_OPERATOR_KEY`` accepted (a shorter one switches the key off, with a warning)
OPERATOR_KEY_MIN_LENGTH = 16
#: wrong ``?operator=`` keys a browser session may give before it accepts no more
OPERATOR_MAX_ATTEMPTS = 5


def operator_key_problem() -> str | None:
    """Why ``KASP_OPERATOR_KEY`` cannot be used (None: it is unset, or long enough): set but shorter than
    :data:`OPERATOR_KEY_MIN_LENGTH` characters. ``kasp app`` refuses to start with such a key; the app
    switches the key off and says so in the sidebar."""
    secret = settings.get().operator_key
    if secret is None or len(secret) >= OPERATOR_KEY_MIN_LENGTH:
        return None
    return (f"KASP_OPERATOR_KEY is {len(secret)} characters long, shorter than the {OPERATOR_KEY_MIN_LENGTH} required, "
            "so no operator key is accepted: set a longer one (for example `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'`) and start the app again")


def operator_mode(key: str | None = None) -> bool:
    """Whether this session may cancel and delete every run (the lecturer's setting).

    On when the app was started with ``KASP_OPERATOR=1``, or when ``key`` (the page's ``?operator=``
    parameter) equals the secret in ``KASP_OPERATOR_KEY``, compared in constant time (as UTF-8 bytes,
    so any text is safe to compare). A secret shorter than :data:`OPERATOR_KEY_MIN_LENGTH` matches nothing.
    """
    if settings.get().operator:
        return True
    secret = settings.get().operator_key
    if not secret or operator_key_problem() or not key:
        return False
    return hmac.compare_digest(str(key).encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass"))


def operator_attempt(state: Any, key: str | None) -> str | None:
    """Take one ``?operator=`` key given to a browser session (``state``: its ``st.session_state``, or
    any dict): set ``state["operator"]`` when it is right; count it in ``state["operator_failures"]``
    when it is wrong. After :data:`OPERATOR_MAX_ATTEMPTS` wrong keys the session takes no more, right
    or wrong.

    Returns:
        the sentence the sidebar shows (wrong key and attempts left, no more attempts, no key
        configured or one too short), or None when the session is (now) the operator.
    """
    if state.get("operator"):
        return None
    failures = int(state.get("operator_failures", 0))
    if failures >= OPERATOR_MAX_ATTEMPTS:
        return (f"This session gave {OPERATOR_MAX_ATTEMPTS} wrong operator keys and accepts no more; the key in "
                "the address was ignored.")
    problem = operator_key_problem()
    if problem:
        return problem
    if not settings.get().operator_key:
        return "This app has no operator key (KASP_OPERATOR_KEY is not set): the operator key in the address was ignored."
    if operator_mode(key):
        state["operator"] = True
        return None
    state["operator_failures"] = failures = failures + 1
    left = OPERATOR_MAX_ATTEMPTS - failures
    return ("Wrong operator key: " + (f"{left} more attempt{'s' if left > 1 else ''} in this session." if left else
                                      "this session accepts no more operator keys."))


def panel_runs(session: str | None, store: str | Path | None = None) -> list[RunDir]:
    """The runs of the Prune page's live panel: every queued or running run (oldest first), then this
    session's own finished, failed or cancelled runs that it has not dismissed (newest first)."""
    runs = list_runs(store)
    active = sorted((r for r in runs if r.state() in ("queued", "running")), key=lambda r: r.id)
    own = [r for r in runs if session and r.state() in FINAL_STATES and jobs.owner(r) == session
           and not r.status().get("dismissed")]
    return active + own


def _duration(seconds: float) -> str:
    """``"2 min 05 s"``, ``"45 s"``, ``"1 h 03 min"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def live_timing(status: dict[str, Any], records: list[dict[str, Any]] | None = None,
                now: float | None = None) -> dict[str, Any]:
    """Elapsed time, the measured speed and the time left of a running (or ended) run, for the live panel.

    The speed is measured on this run alone: the steps done since its training loop began
    (``status["train_started"]``, ``status["train_step0"]``, written by :func:`kasp.training.train.train`) over the
    wall time until its last status write (``status["updated"]``, at most 2 s old while it runs), so loading
    and set-up are left out and evaluations made so far are included. A run written by an older KASP
    falls back on its progress records' ``elapsed`` between the first and the last train record.

    Returns:
        dict: ``elapsed_s`` (since the run started; None if unknown), ``step``, ``total``, ``per_step_s``
        (None until two points are known), ``eta_s`` (seconds left for the remaining steps at that speed,
        counted from now; None without a speed or a total), ``measured`` (the steps the speed was measured
        over, e.g. "steps 1-240"), ``phase`` (what the run does before its first step, or None) and
        ``text``: one line for the panel saying all of it and where the numbers come from.
    """
    now = time.time() if now is None else now
    started = status.get("started")
    end = status.get("finished") if status.get("state") not in ("queued", "running") else None
    elapsed = ((end or now) - started) if isinstance(started, (int, float)) else None
    step = int(status.get("step") or 0)
    total = status.get("total_steps")
    per_step, measured, t_last = None, None, status.get("updated")
    t0, s0 = status.get("train_started"), status.get("train_step0")
    if isinstance(t0, (int, float)) and isinstance(s0, int) and step > s0 and isinstance(t_last, (int, float)) \
            and t_last > t0:
        per_step, measured = (t_last - t0) / (step - s0), f"steps {s0 + 1}-{step}"
    else:
        train = [r for r in (records or []) if r.get("type") == "train" and isinstance(r.get("elapsed"), (int, float))]
        if len(train) >= 2 and train[-1]["step"] > train[0]["step"]:
            per_step = (train[-1]["elapsed"] - train[0]["elapsed"]) / (train[-1]["step"] - train[0]["step"])
            measured = f"steps {train[0]['step']}-{train[-1]['step']}"
            if isinstance(started, (int, float)):
                t_last = started + train[-1]["elapsed"]
    eta, quiet = None, None
    if per_step is not None and total:
        since = max(0.0, now - t_last) if isinstance(t_last, (int, float)) and end is None else 0.0
        if since > max(30.0, 5 * per_step):  # no step for a while (evaluating, saving, or stuck): no countdown
            quiet, since = since, 0.0
        eta = max(0.0, per_step * (int(total) - step) - since)
    phase = status.get("phase") if status.get("state") == "running" and not step else None
    parts = []
    if elapsed is not None:
        parts.append(f"elapsed {_duration(elapsed)}" + (" (run time)" if end else ""))
    if phase:
        parts.append(f"now {phase}; the first progress record comes with step 1")
    if per_step is not None:
        parts.append(f"{per_step:.2f} s per step, measured on this run over {measured} (evaluations included)")
        if quiet is not None and end is None:
            parts.append(f"no new step for {_duration(quiet)} (evaluating, saving, or held up)")
        if eta is not None and end is None:
            parts.append(f"about {_duration(eta)} left for the remaining {int(total) - step} steps "
                         f"(ends near {time.strftime('%H:%M', time.gmtime(now + eta))} UTC, plus the final "
                         "evaluation and save)")
    elif status.get("state") == "running" and step:
        parts.append("the speed is measured from the next step on")
    return {"elapsed_s": elapsed, "step": step, "total": total, "per_step_s": per_step, "eta_s": eta,
            "measured": measured, "phase": phase, "text": "; ".join(parts)}


def remaining_seconds(run: RunDir, store: str | Path | None = None) -> float:
    """Estimated seconds until a queued or running run finishes: from its own speed once it has logged
    steps, else :func:`estimate_seconds` of its recipe; a run with a wall-time budget (``--time-budget``)
    takes its budget."""
    status = run.status()
    rec = _recipe(run)
    budget = rec.get("time_budget")
    if budget and not (run.state() == "running" and status.get("step")):
        started = status.get("started") if run.state() == "running" else None
        return max(0.0, float(budget) * 60 - (time.time() - started if started else 0.0))
    kind = rec.get("method") or REFERENCE
    total = status.get("total_steps") or rec.get("max_steps") or 300
    step = status.get("step") or 0
    started = status.get("started")
    if run.state() == "running" and step and started:
        timing = live_timing(status, run.progress())  # the speed measured on the run, as its panel shows
        if timing["eta_s"] is not None:
            return timing["eta_s"]
        per_step = (time.time() - started) / step
        return max(0.0, per_step * (int(total) - step))
    est, _ = estimate_seconds(kind if kind in DEFAULT_STEP_SECONDS else REFERENCE, int(total), store=store)
    return est


def _recipe(run: RunDir) -> dict[str, Any]:
    """The run's recipe, queued or started: :func:`kasp.experiments.jobs.run_recipe`."""
    return jobs.run_recipe(run)


def queue_text(run: RunDir, store: str | Path | None = None, now: float | None = None) -> str | None:
    """The live panel's line for a queued run, e.g. "queued, position 2 of 2, waiting for <run>; estimated
    start in about 4 min (10:42 UTC)"; None when the run is not queued.

    The start estimate adds the remaining time of the running runs and of the queued runs ahead,
    shared over :func:`kasp.experiments.jobs.max_jobs` slots.
    """
    store = store if store is not None else run.path.parent
    pos = jobs.queue_position(run, store)
    if pos is None:
        return None
    waiting = pos["ahead"][-1:] or pos["running"][:1]
    text = f"queued, position {pos['position']} of {pos['of']}"
    if waiting:
        text += f", waiting for {waiting[0]}"
    elif jobs.max_jobs() <= 0:
        return text + ": no run may start (KASP_MAX_JOBS is 0)"
    ahead = [RunDir(Path(store) / rid) for rid in pos["running"] + pos["ahead"]]
    wait = sum(remaining_seconds(r, store) for r in ahead) / max(jobs.max_jobs(), 1)
    now = time.time() if now is None else now
    return text + f"; estimated start in about {max(1, round(wait / 60))} min " \
                  f"({time.strftime('%H:%M', time.gmtime(now + wait))} UTC)"


def run_kind(run: RunDir) -> str:
    """"finetune" or "prune": from the run's recipe, or from the recipe it was queued with before it started."""
    return _recipe(run).get("kind") or "prune"


def launch_gate(task: str, model: str, session: str | None, store: str | Path | None = None) -> str | None:
    """Why this session may not launch a run now (None: it may): a bad model name, a run of this
    session still queued or running (one at a time each), or a full queue (``KASP_MAX_QUEUED``)."""
    problem = check_model(model)
    if problem:
        return problem
    own = [r for r in jobs.active_runs(store) if session and jobs.owner(r) == session]
    if own:
        return f"Your run {own[0].id} is {own[0].state()}: wait for it to finish or cancel it before launching another."
    if jobs.queue_full(store):
        return (f"The queue is full ({jobs.max_jobs()} running, {jobs.max_queued()} waiting, the most this machine takes): "
                "launch again when a run has finished.")
    return None


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


def checkpoint_zip(run: RunDir) -> bytes:
    """A run's checkpoint directory as a zip archive (files under ``<run id>/``), for the Results download.

    The checkpoint carries its model card (``README.md``) and the ``kasp`` block of ``config.json``
    (:mod:`kasp.training.card`); the run's ``report.json`` goes beside them as ``<run id>/report.json``.

    Only plain files go in: a link (to a file anywhere on the server, planted in a copied run) or a folder
    inside ``checkpoint/`` is left out, and a checkpoint folder that is itself a link is refused, so the
    download never carries a file from outside the run.

    Raises:
        KaspError: when the run has no checkpoint (not finished, or cancelled), or its checkpoint folder is a link.
    """
    import io
    import zipfile

    if not run.checkpoint.is_dir():
        raise KaspError(f"{run.id} has no checkpoint: only a finished run has one")
    if run.checkpoint.is_symlink():
        raise KaspError(f"{run.id}: its checkpoint folder is a link to elsewhere; it is not offered for download")

    def plain(p: Path) -> bool:
        return not p.is_symlink() and p.is_file()

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(run.checkpoint.iterdir()):
            if plain(f):
                zf.write(f, arcname=f"{run.id}/{f.name}")
        if plain(run.path / "report.json") and not (run.checkpoint / "report.json").exists():
            zf.write(run.path / "report.json", arcname=f"{run.id}/report.json")
    return buf.getvalue()


def retention_rows(runs: list[RunDir], samples: int) -> tuple[pd.DataFrame, list[RunDir]]:
    """Cached retention measures of finished prune runs at ``samples`` dev examples, and the runs not yet
    measured at that size (their ``retention.json`` is missing or was measured on another number).

    Returns:
        (one row per measured run with columns run, method, sparsity (%), attention similarity, CKA,
        agreement (%), source = "live run"; the unmeasured runs).
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
                         "source": "live run"})
        except (KeyError, TypeError, ValueError):
            missing.append(r)  # a cache of the wrong shape: measured again
    cols = ["run", "method", "sparsity (%)", "attention similarity", "CKA", "agreement (%)", "source"]
    return pd.DataFrame(rows, columns=cols), missing


def run_total_steps(run: RunDir) -> int | None:
    """The run's total optimizer steps T: from its status once training has started, else from its recipe
    or the recipe it was queued with; None when the run is bounded by epochs (or time) and has not started."""
    status = run.status()
    total = status.get("total_steps") or _recipe(run).get("max_steps")
    return int(total) if total else None


def _curve_preset(label: str, icon: str, task: str, methods: tuple[str, str], shipped: set, help: str) -> dict[str, Any]:
    """An Overview preset that shows two methods' curves; disabled (saying why) when the shipped
    results of ``task`` lack one of them."""
    missing = [m for m in methods if m not in shipped]
    return {"label": label, "icon": icon, "page": "pages/overview.py",
            "params": {"task": task, "methods": ",".join(methods)}, "disabled": bool(missing),
            "help": help if not missing else f"No shipped {task_name(task)} results for {' and '.join(missing)} "
                                             "yet (its sweep has not shipped)."}


def attention_available(task: str, store: str | Path | None = None) -> bool:
    """Whether the Attention page has something to draw for ``task``: a shipped run with retention measures
    (precomputed or in the shipped sweep) or a finished prune run in the store."""
    from kasp.ground.runs import iter_done

    if not precomputed_retention(task).empty:
        return True
    return next(iter_done(store, kind="prune", task=get_task(task).name), None) is not None


def view_presets(task: str) -> list[dict[str, Any]]:
    """The Overview's one-click views (issue 15): each a page of the app and the address parameters
    (:mod:`kasp.ui.urlstate`) that open the view answering one question, for ``task``.

    Returns:
        A list of dicts: ``label`` (the question), ``icon``, ``page`` (page script path, relative to
        ``app.py``), ``params`` (query parameters, strings), ``help`` (what the view shows).
    """
    try:
        sweep = load_shipped(task) or {}
    except KaspError:
        sweep = {}
    with_story = {r.get("key") for r in sweep.get("runs", []) if r.get("weights_story")}
    story_run = next((f"sweep/{k}" for k in ("kasp@0.9/seed42", "kasp@0.95/seed42") if k in with_story), None)
    shipped = {r.get("method") for r in sweep.get("runs", [])} | {r["method"] for r in load_precomputed()
                                                                  if r["task"] == task}
    if story_run is None:
        story_run = next((r["id"] for r in load_precomputed() if r["task"] == task and r["method"] == REFERENCE
                          and r.get("weights_story")), None)
    weights = {"task": task, "matrix": "FFN-in", "layer": "0"} | ({"run": story_run} if story_run else {})
    name = task_name(task)
    return [
        {"label": "What does 90 % sparsity remove?", "icon": ":material/grid_on:", "page": "pages/weights.py",
         "params": weights, "disabled": story_run is None,
         "help": (f"The Weights page on a shipped KASP run of {name}: which blocks of a feed-forward matrix lose "
                  "their weights, step by step along the cubic schedule, beside the magnitude baseline.")
         if story_run else (f"No shipped {name} run carries weight pictures yet (the {name} sweep has not shipped): "
                            "prune one on the Prune page and open the Weights page.")},
        _curve_preset("Distil or not?", ":material/school:", task, ("kasp", "magnitude"), shipped,
                      f"{name}: KASP (distil the teacher while pruning) against the magnitude baseline (prune the "
                      "fine-tuned model, retrain on the labels), across sparsities."),
        _curve_preset("Sparse or small?", ":material/compress:", task, ("kasp", "small-dense"), shipped,
                      f"{name}: a sparse model against a small dense one with the same number of non-zero weights."),
        {"label": "Does the student still attend like the teacher?", "icon": ":material/visibility:",
         "page": "pages/attention.py", "params": {"task": task}, "disabled": not attention_available(task),
         "help": "The Attention page: how much of the teacher's attention and representations each student kept."
         if attention_available(task) else (f"No shipped {name} run carries retention measures and no {name} prune run "
                                            "has finished here: prune one on the Prune page first.")},
    ]


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


def your_run_context(run: RunDir) -> dict[str, Any] | None:
    """What a student's finished prune run needs to be read where it is drawn: its own point, its own
    teacher, and the budget of the shipped sweep it is drawn beside; None for any other run.

    Returns:
        dict: ``id``, ``task``, ``method``, ``sparsity`` (measured, fraction), ``metric`` (main dev metric,
        fraction, None if undefined), ``steps``; ``teacher`` = {``id``, ``metric``, ``steps``} of the teacher
        it used (from its report; values None where unknown); ``shipped`` = {``steps`` of the shipped sweep's
        runs of the same method, ``teacher_metric``, ``teacher_steps``, ``teacher_id``} or None when no sweep
        ships for the task; ``caption``: sentences naming each number and where it comes from.
    """
    if run.state() != "done":
        return None
    rec, rep = run.recipe(), run.report()
    if rec.get("kind") != "prune" or not rec.get("task"):
        return None
    task = rec["task"]
    main = get_task(task).main_metric
    metric = metric_value(rep.get("metrics") or {}, main)
    teacher = rep.get("teacher") or {}
    tpath = teacher.get("path")
    tdir = Path(tpath).parent if tpath and Path(tpath).name == "checkpoint" else (Path(tpath) if tpath else None)
    t_metric = metric_value(teacher.get("metrics") or {}, main) if isinstance(teacher.get("metrics"), dict) else None
    t_steps = RunDir(tdir).report().get("steps") if tdir is not None and tdir.is_dir() else None
    ctx: dict[str, Any] = {
        "id": run.id, "task": task, "method": rec.get("method"), "sparsity": measured_sparsity(rep),
        "metric": metric, "steps": rep.get("steps") or run.status().get("total_steps"),
        "teacher": {"id": tdir.name if tdir is not None else None, "metric": t_metric, "steps": t_steps},
        "shipped": None}
    try:
        sweep = load_shipped(task)
    except KaspError:
        sweep = None
    if sweep:
        same = [r.get("steps") for r in sweep.get("runs", []) if r.get("method") == ctx["method"] and r.get("steps")]
        st = sweep.get("teacher") or {}
        ctx["shipped"] = {"steps": max(set(same), key=same.count) if same else None,
                          "teacher_metric": st.get("metric"), "teacher_id": st.get("run_id"),
                          "teacher_steps": (st.get("recipe") or {}).get("max_steps")}
    ctx["caption"] = _your_run_caption(ctx)
    return ctx


def _your_run_caption(c: dict[str, Any]) -> str:
    task = c["task"]
    name, label = METRIC_NAMES.get(get_task(task).main_metric, "metric"), metric_label(task)
    m = "undefined" if c["metric"] is None else f"{c['metric'] * 100:.2f}"
    sp = "" if c["sparsity"] is None else f", {c['sparsity'] * 100:.1f} % of the encoder linear weights zero (measured)"
    text = (f"**Your run** {c['id']} ({c['method']}{sp}): dev {label} {m} after {c['steps']} steps (its report).")
    t = c["teacher"]
    if t["metric"] is not None:
        kept = (f", {c['metric'] / t['metric'] * 100:.0f} % of it" if c["metric"] is not None and t["metric"] > 0
                else "")
        text += (f" Its own teacher {t['id']} scored {t['metric'] * 100:.2f}{kept}"
                 + (f", after {t['steps']} fine-tuning steps" if t["steps"] else "")
                 + " (its report; the dashed line **your run's teacher**).")
    sh = c["shipped"]
    if sh and sh.get("steps"):
        text += (f" The shipped sweep's {c['method']} points beside it trained {sh['steps']} steps"
                 + (f" from a teacher at {sh['teacher_metric'] * 100:.2f}" if sh.get("teacher_metric") is not None else "")
                 + (f" ({sh['teacher_steps']} steps)" if sh.get("teacher_steps") else "")
                 + f" (assets/sweeps/{get_task(task).name}.json, the grey dashed teacher line).")
        if c["steps"] and sh["steps"] != c["steps"]:
            text += (f" Runs of {c['steps']} and {sh['steps']} steps differ in budget, so how far your run sits from "
                     f"those points says how long it trained more than which method is better: read it against its own "
                     f"teacher line.")
    if name and c["metric"] is None:
        text += f" Its {name} is undefined, so it is not drawn."
    return text


def shipped_scores(task: str) -> pd.DataFrame:
    """What the shipped runs of ``task`` (precomputed runs and the shipped sweep) scored on its dev set, for
    pages that cannot run them (no weights ship): method (as the app names it), sparsity (%; a small
    dense model: the sparsity its size equals), the dev metric (column named by :func:`metric_axis`), source,
    run and recipe. Empty when nothing ships."""
    from kasp.ui.style import method_label

    f = pd.concat([x for x in (precomputed_frame(task), sweep_frame(task)) if len(x)] or [pd.DataFrame(
        columns=RUN_COLUMNS + ["recipe"])], ignore_index=True)
    sparsity = f["measured_sparsity"].astype(float).fillna(f["target_sparsity"].astype(float)) * 100
    small = f["method"].map(shrinks_student).astype(bool)  # dense, smaller: the sparsity its number of weights equals
    sparsity = sparsity.where(~small, f["target_sparsity"].astype(float) * 100)
    # the numbers first, so that they show at 1024 px without scrolling the table sideways
    return pd.DataFrame({"method": f["method"].map(method_label), "sparsity (%)": sparsity,
                         metric_axis(task): f["metric"].astype(float) * 100, "source": f["source"], "run": f["id"],
                         "recipe": f["recipe"]})


def dev_examples_frame(task: str, n: int = 8) -> pd.DataFrame:
    """The first ``n`` examples of the task's shipped dev set with their gold answers (class name, or the
    STS-B similarity score 0-5): the examples every dev metric of the app is computed on."""
    t = get_task(task)
    try:
        dev = load_split(t, "dev").head(n)
    except KaspError:
        return pd.DataFrame(columns=["sentence", "gold"])
    names = t.class_names
    gold = [f"{float(v):.2f}" if t.is_regression else (names[int(v)] if names else str(v)) for v in dev["label"]]
    cols = {"sentence" if t.text_b is None else "first sentence": dev["text_a"].astype(str).tolist()}
    if t.text_b is not None:
        cols["second sentence"] = dev["text_b"].astype(str).tolist()
    cols["gold"] = gold
    return pd.DataFrame(cols)


# --- the accuracy-against-sparsity chart's data ----------------------------------------------
class CurveData(NamedTuple):
    """What :func:`curve_data` returns: the chart's points, the teacher line, the published figures,
    and the one-line message of a broken shipped sweep file (None when fine)."""

    points: Any
    teacher: tuple[float, str] | None
    published: Any
    error: str | None


def curve_data(task: str, store: str | Path | None = None, runs=None) -> CurveData:
    """Everything the accuracy-against-sparsity chart of a task shows, from where each number came.

    Args:
        task: GLUE task name.
        store: the run store for live runs (default: $KASP_RUNS_DIR or ./runs).
        runs: optional DataFrame in :func:`kasp.ui.views.curve_frame`'s layout to use instead of the
            store's live and precomputed runs (the Results page passes the selected runs).

    Returns:
        :class:`CurveData` (points, teacher, published, error): points as :func:`sweep_points` (the shipped sweep, mean and
        seed spread, source "precomputed sweep", plus single runs with spread 0 and source "live
        run" / "precomputed run"); teacher = (metric, source) of the dense teacher (the sweep's
        teacher first; else the precomputed teacher when precomputed runs are drawn; else the
        newest live one) or None; published = the paper's
        BERT-base figures (method, sparsity, metric); error = the message of a broken shipped sweep
        file, which is then left out (never raised: the pages show it with st.error).
    """
    import pandas as pd

    cf = curve_frame(task, store) if runs is None else runs
    pub = published_frame(task).rename(columns={"measured_sparsity": "sparsity"})[["method", "sparsity", "metric"]]
    singles = cf[(cf["source"] != "published") & (cf["method"] != "dense teacher")]
    teachers = cf[(cf["source"] != "published") & (cf["method"] == "dense teacher")]
    parts = []
    teacher = None
    error = None
    try:
        shipped = load_shipped(task)
    except KaspError as e:
        shipped, error = None, str(e)
    if shipped is not None:
        parts.append(sweep_points(shipped))
        if shipped.get("teacher") and shipped["teacher"].get("metric") is not None:  # undefined: no line, never 0
            teacher = (shipped["teacher"]["metric"], f"teacher of the shipped sweep, {shipped['teacher']['run_id']}")
    try:
        gpu = load_shipped_gpu(task)
    except KaspError as e:
        gpu, error = None, "; ".join(x for x in (error, str(e)) if x)
    if gpu is not None and gpu.get("runs"):
        parts.append(sweep_points(gpu, source=str(gpu.get("source") or "GPU sweep")))
    if teacher is None and len(teachers):
        # the teacher of the points shown: the shipped one when shipped runs are drawn (a short live
        # teacher, e.g. a class-preset one, would otherwise stretch the axis and misplace the reference)
        pre = teachers[teachers["source"] == "precomputed run"]
        live = teachers[teachers["source"] != "precomputed run"]
        use = pre if len(pre) and (singles["source"] == "precomputed run").any() else (live if len(live) else pre)
        t = use.iloc[0]
        if t["metric"] == t["metric"]:  # an undefined teacher metric draws no line (never one at 0)
            teacher = (float(t["metric"]), f"{t['source']} {t['label']}")
    if len(singles):
        parts.append(pd.DataFrame({"method": singles["method"], "nominal": float("nan"), "sparsity": singles["sparsity"],
                                   "metric": singles["metric"], "spread": 0.0, "n": 1, "wall_min": float("nan"),
                                   "source": singles["source"], "label": singles["label"],
                                   "note": singles["note"] if "note" in singles else None}))
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["method", "nominal", "sparsity", "metric", "spread", "n", "wall_min", "source", "label", "note"])
    return CurveData(points, teacher, pub.reset_index(drop=True), error)
