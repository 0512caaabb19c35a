"""Wall-time estimates of a run before it starts (torch-free): the app's queue and ETA, the sweep's plan.

Beside :mod:`kasp.training.budget`, which turns a wall-time budget into a step count by timing real steps; this
module only reads the speeds of finished runs in the store, or the measured defaults of docs/cpu.md.
"""

from __future__ import annotations

from pathlib import Path

from kasp.spec.methods import FINETUNE, METHODS, step_seconds
from kasp.ground.runs import list_runs

# seconds per optimizer step of MiniLM-L6 at batch 32, length-bucketed, 2 threads (docs/cpu.md)
DEFAULT_STEP_SECONDS = {FINETUNE: step_seconds(FINETUNE), **{m: step_seconds(m) for m in METHODS}}


def _shipped_rates(task: str, method: str) -> list[float]:
    """Seconds per step at batch 32 of the shipped sweep's runs of ``method`` on ``task``
    (``assets/sweeps/<task>.json``, measured on the 2-core reference machine; for "finetune", its teacher's wall
    time over its steps: ``max_steps``, or for a teacher trained in epochs the steps those epochs took), or [] when
    none is shipped."""
    from kasp.experiments.results import load_shipped
    from kasp.ground.errors import KaspError

    try:
        res = load_shipped(task) or {}  # cached while the file is unchanged: the Prune page asks on every rerun
    except KaspError:
        return []
    if method == FINETUNE:  # the sweep's teacher: its wall time (evaluations included) over its steps
        t = res.get("teacher") or {}
        rec = t.get("recipe") or {}
        steps = rec.get("max_steps")
        if not steps and isinstance(rec.get("epochs"), (int, float)):  # a teacher trained in epochs (--select-best)
            from kasp.experiments.sweep import steps_for_epochs

            try:
                steps = steps_for_epochs(task, rec["epochs"], rec.get("batch_size", 32), int(rec.get("holdout") or 0))
            except KaspError:
                steps = None
        return [max(t["wall_seconds"] - 20, 0) / steps * 32 / rec.get("batch_size", 32)] if (
            isinstance(steps, int) and steps > 0 and isinstance(t.get("wall_seconds"), (int, float))) else []
    return [e["train_seconds"] / e["steps"] * 32 / (e.get("recipe") or {}).get("batch_size", 32)
            for e in res.get("runs") or []
            if e.get("method") == method and e.get("train_seconds") and e.get("steps")]


def estimate_seconds(method: str, steps: int, batch_size: int = 32, evals: int = 0, dev_examples: int = 872,
                     model: str = "default", store: str | Path | None = None,
                     task: str | None = None) -> tuple[float, str]:
    """Estimated wall time of a run on this machine, in seconds, and where the estimate comes from.

    Seconds per step (at batch 32, scaled to ``batch_size``) come from, in order: the median of finished runs
    of the same method and model in the store (of the same ``task`` when one is given: an MRPC step, pairs at
    length 128, costs several SST-2 steps); for the default model, the median of the shipped sweep's runs of
    that method on ``task`` (``assets/sweeps/<task>.json``); else the step time measured for MiniLM-L6 on SST-2
    on 2 cores (docs/cpu.md). Adds 20 s start-up and ``evals`` evaluations of ``dev_examples`` sentences at
    about 112 sentences per second.
    """
    per_step, source = None, "docs/cpu.md: MiniLM-L6, batch 32, 2 CPU cores"
    done = [(r.report(), r.recipe()) for r in list_runs(store) if r.state() == "done"
            and r.recipe().get("method") == method and r.recipe().get("model") == model
            and (task is None or r.recipe().get("task") == task)]
    rates = [rep["train_seconds"] / rep["steps"] * 32 / rec.get("batch_size", 32)  # seconds per step at batch 32
             for rep, rec in done if rep.get("train_seconds") and rep.get("steps")]
    of = f" on {task}" if task else ""
    if rates:
        source = f"median speed of {len(rates)} finished {method} run(s) of this model{of} in the store"
    elif task and model == "default" and (rates := _shipped_rates(task, method)):
        what = f"the shipped {task} teacher's speed" if method == FINETUNE else (
            f"median speed of {len(rates)} shipped {method} run(s){of}")
        source = f"{what} (assets/sweeps/{task}.json, 2-core reference machine)"
    if rates:
        per_step = sorted(rates)[len(rates) // 2]
    else:
        per_step = DEFAULT_STEP_SECONDS.get(method, 0.44)
    return 20 + steps * per_step * batch_size / 32 + evals * dev_examples / 112, source
