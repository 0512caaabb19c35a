"""The cubic sparsity schedule and the pruning-event grid.

Zhu & Gupta, "To prune, or not to prune" (arXiv 1710.01878), eq. 1:

    s_t = s_f + (s_i - s_f) * (1 - t / T) ** 3,   t clamped to [0, T]

KASP uses s_i = 0 and lets the schedule span the whole run (T = total optimizer steps), with about
100 mask updates (docs/method.md §4).
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
