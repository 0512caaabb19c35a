"""The curves the app draws, as data: dev metric against sparsity (:func:`curve_data`), a run's training
curves, the cubic schedule, and what a student's own run needs to be read beside the shipped sweep.

Pure pandas, no Streamlit and no torch; the figures are drawn by :mod:`kasp.ui.figures`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from kasp.ground.errors import KaspError
from kasp.spec.metrics import METRIC_NAMES, metric_items, metric_note, metric_value
from kasp.ground.runs import RunDir, list_runs, measured_sparsity
from kasp.spec.config import RECIPE_KEYS, field_defaults, setting_name, setting_value
from kasp.spec.schedule import mask_update_steps, ramp_steps, scheduled_sparsity
from kasp.spec.tasks import get_task, metric_label
from kasp.experiments.results import load_shipped, load_shipped_gpu, sweep_points
from kasp.ui.tables import PAPER, precomputed_frame, published_frame, runs_frame


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


def schedule_frame(target: float, total_steps: int, events: int = 100, initial: float = 0.0,
                   recovery: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cubic schedule at every step and at the mask-update steps (Zhu & Gupta 2017, eq. 1), from
    ``initial`` at step 0 to ``target`` at the end of the ramp, then flat over a recovery phase of fraction
    ``recovery`` (a run's ``initial_sparsity`` and ``recovery``; sparsities are fractions of zeros).

    The update steps are :func:`kasp.spec.schedule.mask_update_steps`, the ones the training loop uses.

    Returns:
        (curve with columns step, sparsity; update points with columns step, sparsity).
    """
    every = max(1, total_steps // 400)
    steps = list(range(0, total_steps + 1, every))
    if steps[-1] != total_steps:
        steps.append(total_steps)
    ramp = ramp_steps(total_steps, recovery)
    if ramp not in steps:  # the corner where the schedule turns flat
        steps = sorted(steps + [ramp])

    def at(t: int) -> float:
        return scheduled_sparsity(t, total_steps, target, initial, recovery)

    curve = pd.DataFrame({"step": steps, "sparsity": [at(t) for t in steps]})
    upd = mask_update_steps(total_steps, events, recovery, initial)
    points = pd.DataFrame({"step": upd, "sparsity": [at(t) for t in upd]})
    return curve, points


def your_run_context(run: RunDir) -> dict[str, Any] | None:
    """What a student's finished prune run needs to be read where it is drawn: its own point, its own
    teacher, and the budget of the shipped sweep it is drawn beside; None for any other run.

    Returns:
        dict: ``id``, ``task``, ``method``, ``sparsity`` (measured, fraction), ``metric`` (main dev metric,
        fraction, None if undefined), ``steps``; ``teacher`` = {``id``, ``metric``, ``steps``} of the teacher
        it used (from its report; values None where unknown); ``shipped`` = {``steps`` of the shipped sweep's
        runs of the same method, ``teacher_metric``, ``teacher_steps``, ``teacher_budget`` (:func:`teacher_budget_words`), ``teacher_id``} or None when no sweep
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
        theirs = next((r.get("recipe") or {} for r in sweep.get("runs", []) if r.get("method") == ctx["method"]), {})
        ctx["shipped"] = {"steps": max(set(same), key=same.count) if same else None,
                          "teacher_metric": st.get("metric"), "teacher_id": st.get("run_id"),
                          "teacher_steps": (st.get("recipe") or {}).get("max_steps"),
                          "teacher_budget": teacher_budget_words(st.get("recipe") or {}),
                          "recipe_diff": {k: (rec.get(k), theirs.get(k)) for k in RECIPE_KEYS
                                          if theirs and rec.get(k, _FIELD_DEFAULTS.get(k)) != theirs.get(k, _FIELD_DEFAULTS.get(k))}}
    ctx["caption"] = _your_run_caption(ctx)
    return ctx




def teacher_budget_words(recipe: dict[str, Any]) -> str | None:
    """How long a teacher was fine-tuned, from its recipe: "1400 steps", or for one trained in epochs (``max_steps``
    None) "10 epochs, kept at its best epoch on a held-out slice" (``select_best``, ``kasp finetune --select-best``)
    or "5 epochs"; None when the recipe says neither."""
    if recipe.get("max_steps"):
        return f"{recipe['max_steps']} steps"
    if isinstance(recipe.get("epochs"), (int, float)):
        kept = ", kept at its best epoch on a held-out slice" if recipe.get("select_best") else ""
        return f"{recipe['epochs']:g} epochs{kept}"
    return None


#: a field a recipe file leaves out holds its RunConfig default (a sweep recorded before the field existed)
_FIELD_DEFAULTS = field_defaults()


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
                 + (f" ({sh['teacher_budget']})" if sh.get("teacher_budget") else "")
                 + f" (assets/sweeps/{get_task(task).name}.json, the grey dashed teacher line).")
        if sh.get("recipe_diff"):
            diff = ", ".join(f"{setting_name(k)} {setting_value(k, a)} against {setting_value(k, b)}"
                             for k, (a, b) in sh["recipe_diff"].items())
            text += (f" Their recipe differs from your run's ({diff}: yours first), so the gap between them is the recipe's "
                     "as much as the method's.")
        if c["steps"] and sh["steps"] != c["steps"]:
            text += (f" Runs of {c['steps']} and {sh['steps']} steps differ in budget, so how far your run sits from "
                     f"those points says how long it trained more than which method is better: read it against its own "
                     f"teacher line.")
    if name and c["metric"] is None:
        text += f" Its {name} is undefined, so it is not drawn."
    return text


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
        runs: optional DataFrame in :func:`kasp.ui.curves.curve_frame`'s layout to use instead of the
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
