"""The cubic sparsity schedule and the pruning-event grid.

Zhu & Gupta, "To prune, or not to prune" (arXiv 1710.01878), eq. 1:

    s_t = s_f + (s_i - s_f) * (1 - t / T) ** 3,   t clamped to [0, T]

KASP uses s_i = 0 and lets the schedule span the whole run (T = total optimizer steps), with about
100 mask updates (docs/method.md §4). ``--initial-sparsity`` (a large first pruning step at step 0,
as GMP★ takes) and ``--recovery`` (the schedule reaches the target earlier and the rest of the run
trains at fixed masks) change that; so does the learning-rate multiplier :func:`lr_multiplier`.
"""

from __future__ import annotations


def cubic_sparsity(step: int, total_steps: int, final_sparsity: float, initial_sparsity: float = 0.0) -> float:
    """Target sparsity (fraction of zeros, 0..1) after ``step`` of ``total_steps`` optimizer steps.

    Args:
        step: current step t; values outside [0, total_steps] are clamped.
        total_steps: T, the step at which ``final_sparsity`` is reached (> 0).
        final_sparsity: s_f in [0, 1).
        initial_sparsity: s_i in [0, s_f].

    Raises:
        ValueError: if ``total_steps`` <= 0 or a sparsity is outside [0, 1).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    for name, s in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {s}")
    t = min(max(step, 0), total_steps)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - t / total_steps) ** 3


def pruning_interval(total_steps: int, events: int = 100) -> int:
    """Steps between mask updates: round(T / events), at least 1."""
    if events <= 0:
        raise ValueError(f"events must be > 0, got {events}")
    return max(1, round(total_steps / events))


def pruning_steps(total_steps: int, events: int = 100) -> list[int]:
    """The steps at which masks are recomputed: every ``pruning_interval`` steps in [0, T), then T.

    The last entry is always ``total_steps``, where the exact final sparsity is imposed.
    """
    every = pruning_interval(total_steps, events)
    steps = list(range(every, total_steps, every))
    steps.append(total_steps)
    return steps


def ramp_steps(total_steps: int, recovery: float = 0.0) -> int:
    """Steps over which the cubic schedule climbs to the target: T, or round((1 - r) * T) with a recovery
    phase of fraction ``r`` at the final sparsity after it (at least 1).

    Raises:
        ValueError: if ``recovery`` is outside [0, 1).
    """
    if not 0.0 <= recovery < 1.0:
        raise ValueError(f"recovery must be in [0, 1), got {recovery}")
    return max(1, min(total_steps, round((1.0 - recovery) * total_steps)))


def mask_update_steps(total_steps: int, events: int = 100, recovery: float = 0.0,
                      initial_sparsity: float = 0.0) -> list[int]:
    """The steps at which :class:`kasp.core.masks.MagnitudePruner` recomputes the masks, in order: step 0 when there
    is an initial sparsity (a first pruning step before training), every ``pruning_interval(ramp, events)`` steps
    inside the ramp (:func:`ramp_steps`), the ramp's end when a recovery phase follows it, and T (where the
    exact target is imposed). Without recovery and initial sparsity this is :func:`pruning_steps`.

    Raises:
        ValueError: if ``events`` <= 0 or ``recovery`` is outside [0, 1).
    """
    ramp = ramp_steps(total_steps, recovery)
    every = pruning_interval(ramp, events)
    steps = [0] if initial_sparsity else []
    steps += [t for t in range(every, ramp + 1, every) if t < total_steps]
    if ramp < total_steps and steps[-1:] != [ramp]:
        steps.append(ramp)
    return steps + [total_steps]


def scheduled_sparsity(step: int, total_steps: int, final_sparsity: float, initial_sparsity: float = 0.0,
                       recovery: float = 0.0) -> float:
    """The cubic schedule (:func:`cubic_sparsity`) of a run of ``total_steps`` steps with a recovery phase of
    fraction ``recovery``: it climbs from ``initial_sparsity`` at step 0 to ``final_sparsity`` at the ramp's end
    (:func:`ramp_steps`) and stays there. Fractions of zeros, 0..1.

    Raises:
        ValueError: as :func:`cubic_sparsity` and :func:`ramp_steps`.
    """
    return cubic_sparsity(step, ramp_steps(total_steps, recovery), final_sparsity, initial_sparsity)


def lr_multiplier(step: int, total_steps: int, schedule: str, warmup_steps: int = 0, ramp: int | None = None,
                  prune_every: int = 1) -> float:
    """Factor on the peak learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    - "constant": 1 after a linear warm-up of ``warmup_steps``;
    - "linear": warm-up, then linear decay to 0 at ``total_steps``;
    - "rewarm" (GMP★, Kurtic & Alistarh 2022, "Well-Tuned Gradual Magnitude Pruning Can Outperform
      Most BERT-Pruning Methods"): back to 1 at every mask update (every ``prune_every`` steps while the
      schedule ramps) and linearly down towards 0 before the next one.

    With a recovery phase (``ramp`` < ``total_steps``: the schedule has reached the target at ``ramp``),
    "constant" and "rewarm" decay linearly from 1 to 0 over the steps ``ramp`` .. ``total_steps``.
    The warm-up multiplies whatever the schedule gives. "constant" and "linear" without recovery equal
    transformers' ``constant_with_warmup`` and ``linear`` schedules.

    Raises:
        ValueError: for an unknown schedule.
    """
    ramp = total_steps if ramp is None else ramp
    warm = step / max(1, warmup_steps) if step < warmup_steps else 1.0
    if schedule == "linear":
        if step < warmup_steps:
            return warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if schedule not in ("constant", "rewarm"):
        raise ValueError(f"unknown learning-rate schedule {schedule!r}: constant, linear or rewarm")
    if step >= ramp:  # recovery: masks fixed, the rate decays to 0
        return warm * max(0.0, (total_steps - step) / max(1, total_steps - ramp))
    if schedule == "constant":
        return warm
    every = max(1, prune_every)
    return warm * (1.0 - (step % every) / every)
