"""Launching a run from the Prune page and following it in its live panel: the form's defaults, the
recipe a launch would run, whether this session may launch now, the queue's line for a queued run, and
the live clock (elapsed, speed, time left). No Streamlit, no torch at import.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from kasp.experiments import jobs
from kasp.experiments.results import load_shipped
from kasp.ground import settings
from kasp.spec.config import RunConfig, make_config
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir
from kasp.spec.tasks import task_name
from kasp.spec.methods import METHODS, REFERENCE
from kasp.training.estimate import DEFAULT_STEP_SECONDS, estimate_seconds
from kasp.ui.checks import check_model
from kasp.ui.devset import train_size


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


def adopted_recipe_caption(method: str, task: str) -> str | None:
    """The Prune page's note on a default recipe the recipe study adopted (kasp.spec.config.ADOPTED): which study
    line it comes from, its settings in words, and, for a task that carries another task's line
    (``ADOPTED_CARRIED``), that it was not studied on this task. None for a (method, task) with the method's own
    recipe."""
    from kasp.spec.config import ADOPTED, ADOPTED_CARRIED, ADOPTED_FROM, describe_settings

    if (method, task) not in ADOPTED:
        return None
    entry = ADOPTED[(method, task)]
    words = describe_settings(dict(sorted(entry.items(), key=lambda kv: kv[0] != "max_steps")))
    line = ADOPTED_FROM[(method, task)]
    name = METHODS[method].label
    if (method, task) in ADOPTED_CARRIED:
        text = (f"{task_name(task)}'s default {name} recipe carries the changes the recipe study adopted on the tasks "
                f"it studied (`{line}` and SST-2's, chosen on held-out slices of the training sets, two seeds each; "
                f"docs/results.md), not studied on {task_name(task)} itself: {words}.")
    else:
        text = (f"{task_name(task)}'s default {name} recipe is the one the recipe study adopted (`{line}`, chosen on a "
                f"held-out slice of the training set, two seeds; docs/results.md): {words}.")
    try:
        shipped = [e for e in (load_shipped(task) or {}).get("runs", []) if e["method"] == method]
    except KaspError:
        shipped = []
    settings_ = {k: v for k, v in entry.items() if k != "max_steps"}
    if any(any(e["recipe"].get(k) != v for k, v in settings_.items()) for e in shipped):
        text += f" The Overview's shipped {task_name(task)} sweep was made with the earlier recipe."
    return text


def recipe_origin(method: str, task: str) -> str:
    """Where a (method, task)'s default recipe comes from, for a caption: "chosen by the recipe study" for a task
    whose own study line was adopted, "carried from the recipe study of other tasks, not studied on RTE" for one
    that carries another task's (kasp.spec.config.ADOPTED_CARRIED), "the method's own recipe" otherwise."""
    from kasp.spec.config import ADOPTED, ADOPTED_CARRIED

    if (method, task) in ADOPTED_CARRIED:
        return f"carried from the recipe study of other tasks, not studied on {task_name(task)}"
    return "chosen by the recipe study" if (method, task) in ADOPTED else "the method's own recipe"


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


def _duration(seconds: float) -> str:
    """``"2 min 05 s"``, ``"45 s"``, ``"1 h 03 min"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


#: steps a run must have made before the panel gives its speed and time left: the first step alone (thread pools,
#: first allocations) measured 5x slower than the steady speed and gave a 23-minute estimate for a 5-minute run
SPEED_MIN_STEPS = 10


def live_timing(status: dict[str, Any], records: list[dict[str, Any]] | None = None,
                now: float | None = None) -> dict[str, Any]:
    """Elapsed time, the measured speed and the time left of a running (or ended) run, for the live panel.

    The speed is measured on this run alone, once it has made :data:`SPEED_MIN_STEPS` steps: the steps done since
    its training loop began
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
    if isinstance(t0, (int, float)) and isinstance(s0, int) and step >= s0 + SPEED_MIN_STEPS \
            and isinstance(t_last, (int, float)) and t_last > t0:
        per_step, measured = (t_last - t0) / (step - s0), f"steps {s0 + 1}-{step}"
    else:
        train = [r for r in (records or []) if r.get("type") == "train" and isinstance(r.get("elapsed"), (int, float))]
        if len(train) >= 2 and train[-1]["step"] >= train[0]["step"] + SPEED_MIN_STEPS:
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
        done = step - s0 if isinstance(s0, int) else step
        parts.append(f"the speed (and the time left) is measured once {SPEED_MIN_STEPS} steps are done "
                     f"({max(0, done)} so far): the first steps are slower")
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
    est, _ = estimate_seconds(kind if kind in DEFAULT_STEP_SECONDS else REFERENCE, int(total), store=store,
                              task=rec.get("task"))
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


def run_total_steps(run: RunDir) -> int | None:
    """The run's total optimizer steps T: from its status once training has started, else from its recipe
    or the recipe it was queued with; None when the run is bounded by epochs (or time) and has not started."""
    status = run.status()
    total = status.get("total_steps") or _recipe(run).get("max_steps")
    return int(total) if total else None
