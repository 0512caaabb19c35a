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
        per_step = DEFAULT_STEP_SECONDS.get(method, 0.44)
    return 20 + steps * per_step * batch_size / 32 + evals * dev_examples / 112, source
