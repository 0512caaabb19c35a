"""Non-finite values (NaN, +inf, -inf): the one check every reader of weights, outputs and numbers uses.

- :func:`non_finite_mask` / :func:`non_finite_count`: tensors of any dtype (integer and bool tensors have
  none; float8 is widened first, as torch has no ``isfinite`` for it). Used for a checkpoint's weights
  (:func:`kasp.models.modeling.check_finite`, ``kasp inspect``) and a model's outputs
  (:func:`kasp.training.evaluate.score_logits`).
- :func:`is_finite_number`: a Python number (an int beyond the float range counts as not finite). Used
  for the options of a queued run (:mod:`kasp.experiments.jobs`) and metric values (:func:`kasp.spec.metrics.metric_value`).

torch is imported only when a tensor is checked, so that the app's light modules can use the number check.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def non_finite_mask(t: "torch.Tensor") -> "torch.Tensor":
    """A bool tensor of ``t``'s shape, True where ``t`` is NaN or +-inf (all False for integer and bool tensors)."""
    import torch

    if not t.is_floating_point():
        return torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    x = t.float() if t.element_size() == 1 else t  # torch has no isfinite for float8_e4m3fn
    return ~torch.isfinite(x)


def non_finite_count(t: "torch.Tensor") -> int:
    """Number of NaN or +-inf entries of a tensor (0 for integer and bool tensors).

    One pass when there are none: NaN and inf reach a float64 sum, so a finite sum means no such entry;
    only otherwise are the entries counted (a sum that overflowed float64 counts 0)."""
    import torch

    if not t.is_floating_point() or t.numel() == 0:
        return 0
    x = t.float() if t.element_size() == 1 else t
    if bool(torch.isfinite(x.sum(dtype=torch.float64))):
        return 0
    return int(non_finite_mask(x).sum())


def is_finite_number(v: Any) -> bool:
    """Whether ``v`` is an int or float that is neither NaN nor infinite (bool and other types: False).

    An int too large for a float is not finite (it cannot be any recipe's or metric's value)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False
