"""Unstructured magnitude masks: compute, apply, measure.

Criterion (docs/method.md §4, Zhu & Gupta 2017): keep the largest |w| of each matrix (scope
"layer", the paper's default) or of all pruned matrices together (scope "global"), ranking w * mask
so that a pruned weight never comes back. The number of zeros is exactly round(s * n).

Masks are plain bool tensors kept beside the model (no parametrisation), so the model stays a
vanilla transformers module and "folding" is just w <- w * mask.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from kasp.models.modeling import prunable_linears
from kasp.spec.schedule import cubic_sparsity, pruning_interval

Masks = dict[str, torch.Tensor]  # name -> bool tensor, same shape as the weight; True = kept


def _n_zero(n: int, sparsity: float) -> int:
    """round(s * n), capped at n - 1: a matrix always keeps at least one weight (the sparsity rule
    stated in ``--sparsity``'s help: 0 <= s < 1 and no matrix is ever zeroed entirely)."""
    return max(0, min(int(round(sparsity * n)), n - 1))


@torch.no_grad()
def magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float, scope: str = "layer",
                    previous: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Magnitude masks with exactly round(sparsity * n) zeros (per matrix, or over all for "global").

    No matrix is zeroed entirely: a matrix of n weights gets at most n - 1 zeros (scope "layer"),
    and with scope "global" a matrix that the joint ranking would empty keeps its largest weight
    (so the total can be a few zeros short of round(s * N) in that case only).

    Args:
        weights: name -> weight tensor (any shape).
        sparsity: target fraction of zeros in [0, 1).
        scope: "layer" (per matrix) or "global" (one ranking across all matrices).
        previous: earlier masks; weights they removed rank below every kept weight, so masks only
            shrink as long as the sparsity does not decrease.

    Returns:
        name -> bool mask (True = kept), shapes as ``weights``.

    Raises:
        ValueError: on an unknown scope or a sparsity outside [0, 1).
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    scores = {}
    for name, w in weights.items():
        s = w.detach().abs().float().flatten()
        if previous is not None and name in previous:
            s = torch.where(previous[name].flatten(), s, torch.full_like(s, -1.0))
        scores[name] = s
    if scope == "layer":
        return {name: _keep_top(s, s.numel() - _n_zero(s.numel(), sparsity)).view_as(weights[name])
                for name, s in scores.items()}
    if scope == "global":
        flat = torch.cat(list(scores.values()))
        keep = _keep_top(flat, flat.numel() - _n_zero(flat.numel(), sparsity))
        out, start = {}, 0
        for name, w in weights.items():
            part = keep[start:start + w.numel()].clone()
            if w.numel() and not part.any():  # never zero a whole matrix
                part[int(scores[name].argmax())] = True
            out[name] = part.view_as(w)
            start += w.numel()
        return out
    raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")


def _keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_keep > 0:
        mask[torch.topk(scores, n_keep, sorted=False).indices] = True
    return mask


@torch.no_grad()
def apply_masks(linears: Mapping[str, nn.Linear], masks: Mapping[str, torch.Tensor]) -> None:
    """w <- w * mask, in place, for every masked Linear weight."""
    for name, m in masks.items():
        linears[name].weight.masked_fill_(~m, 0.0)  # +0.0 (w * 0 would leave -0.0 for negative w)


@torch.no_grad()
def sparsity_table(model: nn.Module) -> dict[str, float]:
    """Measured fraction of exact zeros per pruned matrix, keyed "<layer>.<kind>"."""
    return {name: float((lin.weight == 0).sum().item() / lin.weight.numel())
            for name, lin in prunable_linears(model).items()}


@torch.no_grad()
def sparsity_summary(model: nn.Module) -> dict[str, float | int]:
    """Zeros over the pruned set (the paper's "sparsity") and over all parameters.

    Returns:
        pruned_sparsity, overall_sparsity (fractions), pruned_zeros, pruned_params, total_zeros,
        total_params (counts).
    """
    lin = prunable_linears(model)
    pz = sum(int((m.weight == 0).sum()) for m in lin.values())
    pn = sum(m.weight.numel() for m in lin.values())
    tz = sum(int((p == 0).sum()) for p in model.parameters())
    tn = sum(p.numel() for p in model.parameters())
    return {"pruned_sparsity": pz / pn, "overall_sparsity": tz / tn, "pruned_zeros": pz, "pruned_params": pn,
            "total_zeros": tz, "total_params": tn}


class MagnitudePruner:
    """Masks on the cubic schedule for one model: the state a training loop steps.

    Usage: ``pruner.step(t)`` before optimizer step t (recomputes masks at pruning events),
    ``pruner.apply()`` after every optimizer step, ``pruner.finish()`` after the last step to impose
    the exact target. ``current_sparsity`` is the sparsity the masks hold now. Like torch.ao's
    sparsity schedulers it has :meth:`state_dict` / :meth:`load_state_dict`, so a run resumes with
    the same masks and schedule position.
    """

    def __init__(self, model: nn.Module, target: float, total_steps: int, events: int = 100, scope: str = "layer",
                 initial: float = 0.0, ramp: int | None = None):
        if not 0.0 <= initial <= target:
            raise ValueError(f"initial sparsity must be in [0, target={target}], got {initial}")
        self.linears = prunable_linears(model)
        self.target = target
        self.total_steps = total_steps
        self.initial = initial  # imposed at step 0 (a large first pruning step); 0: none
        self.ramp = total_steps if ramp is None else min(max(1, ramp), total_steps)  # the target is reached here
        self.interval = pruning_interval(self.ramp, events)
        self.scope = scope
        self.masks: Masks = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in self.linears.items()}
        # (weights, kept-as-float masks) for apply(): one fused multiply over all matrices, made at each
        # mask update so that apply() allocates nothing; empty until the first pruning event
        self._weights: list[torch.Tensor] = []
        self._keep: list[torch.Tensor] = []
        self.current_sparsity = 0.0
        self.events = 0

    def scheduled(self, step: int) -> float:
        """The cubic schedule's sparsity at ``step``: from the initial sparsity at 0 to the target at the ramp's end."""
        return cubic_sparsity(step, self.ramp, self.target, self.initial)

    @property
    def has_first_step(self) -> bool:
        """Whether the schedule starts with a first pruning step to the initial sparsity (taken by :meth:`first_step`,
        counted in :attr:`events` like every mask update)."""
        return bool(self.target and self.initial)

    def first_step(self) -> bool:
        """Take the first pruning step (to the initial sparsity, step 0) now, before training starts, so that a
        start snapshot already shows it; :meth:`step` (0) is then no event. False when there is none."""
        if self.events or not self.has_first_step:
            return False
        self._update(self.scheduled(0))
        return True

    def step(self, step: int) -> bool:
        """Recompute the masks if ``step`` is a pruning event: step 0 with an initial sparsity, every multiple of
        the interval inside the ramp, and the ramp's end when a recovery phase follows it."""
        if self.target == 0 or step < 0 or step > self.ramp:
            return False
        if step == 0:
            if not self.initial or self.events:  # taken already (first_step), or none
                return False
        elif step % self.interval and not (step == self.ramp < self.total_steps):
            return False
        elif step == self.ramp == self.total_steps:
            return False  # finish() imposes the target at T
        self._update(self.scheduled(step))
        return True

    def finish(self) -> None:
        """Impose exactly the target sparsity (the schedule's value at T)."""
        if self.target > 0:
            self._update(self.target)

    def _update(self, sparsity: float) -> None:
        weights = {n: m.weight for n, m in self.linears.items()}
        self.masks = magnitude_masks(weights, sparsity, self.scope, previous=self.masks)
        self._prepare_apply()
        self.current_sparsity = sparsity
        self.events += 1
        self.apply()

    def _prepare_apply(self) -> None:
        self._weights = [self.linears[n].weight for n in self.masks]
        self._keep = [m.to(self._weights[0].dtype) for m in self.masks.values()]

    @torch.no_grad()
    def apply(self) -> None:
        """Re-apply the masks (after every optimizer step, so a pruned weight stays zero).

        w <- w * keep + 0.0 over all matrices in two fused ``torch._foreach`` calls (``bench/run.py``:
        about 6 ms per step for MiniLM-L6 on one core, against 24 ms for a ``masked_fill_`` per
        matrix); adding +0.0 turns the -0.0 that a negative weight times 0 leaves into +0.0, so the
        result equals :func:`apply_masks`' bit for bit. A no-op before the first pruning event."""
        if self._weights:
            if self._weights[0] is not next(iter(self.linears.values())).weight:
                self._prepare_apply()  # a weight Parameter was replaced since the masks were made
            torch._foreach_mul_(self._weights, self._keep)
            torch._foreach_add_(self._weights, 0.0)

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state: ``masks`` (name -> bool tensor, True = kept) and the schedule position
        (``current_sparsity``, ``events``) with the settings it was made with (``target``,
        ``total_steps``, ``interval``, ``scope``)."""
        return {"target": self.target, "total_steps": self.total_steps, "interval": self.interval,
                "scope": self.scope, "current_sparsity": self.current_sparsity, "events": self.events,
                "masks": {n: m.clone() for n, m in self.masks.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output and re-apply the masks.

        Raises:
            ValueError: if the state belongs to another schedule (target, total steps, interval,
                scope) or another model (matrix names or shapes differ).
        """
        for key in ("target", "total_steps", "interval", "scope"):
            if state[key] != getattr(self, key):
                raise ValueError(f"pruner state has {key}={state[key]!r}, this pruner {getattr(self, key)!r}")
        masks = state["masks"]
        if set(masks) != set(self.linears):
            raise ValueError(f"pruner state masks name {sorted(set(masks) ^ set(self.linears))[:3]}..., "
                             "which this model does not match")
        for n, m in masks.items():
            if tuple(m.shape) != tuple(self.linears[n].weight.shape):
                raise ValueError(f"pruner state mask {n} has shape {tuple(m.shape)}, the weight "
                                 f"{tuple(self.linears[n].weight.shape)}")
        device = next(iter(self.linears.values())).weight.device
        self.masks = {n: masks[n].to(device=device, dtype=torch.bool) for n in self.linears}
        self.current_sparsity = float(state["current_sparsity"])
        self.events = int(state["events"])
        if self.events:
            self._prepare_apply()
        else:
            self._weights, self._keep = [], []
        self.apply()


#: fine-tuning a checkpoint whose pruned set has more zeros than this warns that they will fill in
SPARSE_WARN_THRESHOLD = 0.10


def keep_sparsity_warning(sparsity: float, source: str = "the starting checkpoint") -> str:
    """The one warning for fine-tuning a sparse checkpoint without keeping its zeros (CLI and Trainer route).

    Args:
        sparsity: fraction of zeros in the checkpoint's pruned set (0..1).
    """
    return (f"{source} is {sparsity * 100:.1f} % sparse in its encoder linear weights, and fine-tuning will fill "
            "its zeros in (the model ends dense); to keep them, run `kasp finetune --keep-sparsity` "
            "(Trainer route: add kasp.training.hf_trainer.KeepSparsityCallback())")


class MaskKeeper:
    """Keep a model's existing zeros through training: keep-mask fine-tuning of a pruned checkpoint.

    The masks are taken once, when the keeper is made, from the exact zeros of the pruned set
    (:func:`kasp.models.modeling.prunable_linears`; True = kept = non-zero). :meth:`mask_grads` zeroes the
    gradients of the pruned weights (call it after backward, before clipping and the optimizer step,
    so that AdamW's moments and the clipping norm see only the kept weights); :meth:`apply` sets the
    pruned weights to +0.0 again after every optimizer step, so the sparsity of every matrix stays
    exactly what it was (weight decay and Adam's epsilon cannot move a weight off zero either).
    Like :class:`MagnitudePruner` it works on the weights in place (fused ``torch._foreach`` calls).
    """

    def __init__(self, model: nn.Module):
        self.linears = prunable_linears(model)
        with torch.no_grad():
            self.masks: Masks = {n: m.weight != 0 for n, m in self.linears.items()}
        self._prepare()

    def _prepare(self) -> None:
        self._weights = [self.linears[n].weight for n in self.masks]
        self._keep = [m.to(w.dtype) for m, w in zip(self.masks.values(), self._weights)]

    @property
    def sparsity(self) -> float:
        """Fraction of the pruned set the masks hold at zero."""
        n = sum(m.numel() for m in self.masks.values())
        return sum(int((~m).sum()) for m in self.masks.values()) / max(n, 1)

    @torch.no_grad()
    def mask_grads(self) -> None:
        """grad <- grad * mask for every pruned-set weight that has a gradient."""
        pairs = [(w.grad, k) for w, k in zip(self._weights, self._keep) if w.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [k for _, k in pairs])

    @torch.no_grad()
    def apply(self) -> None:
        """w <- w * mask + 0.0 (a pruned weight is +0.0 again, as :func:`apply_masks` leaves it)."""
        if not self._weights:
            return
        if self._weights[0] is not next(iter(self.linears.values())).weight:
            self._prepare()  # a weight Parameter was replaced since the masks were made
        torch._foreach_mul_(self._weights, self._keep)
        torch._foreach_add_(self._weights, 0.0)
