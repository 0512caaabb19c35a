"""One optimizer step of a KASP run, shared by every loop that trains a student.

The training loop (:func:`kasp.training.train.train`), the step timing of a time budget
(:func:`kasp.training.budget.steps_for_budget`) and the benchmarks (``bench/run.py``, ``bench/weights_story.py``,
``bench/teacher_cache.py``) all run this function, so the step they train, time or measure is the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def training_step(model: nn.Module, batch: dict[str, torch.Tensor], loss_fn, optimizer: torch.optim.Optimizer, *,
                  scheduler: Any = None, pruner: Any = None, keeper: Any = None, max_grad_norm: float = 0.0,
                  accelerator: Any = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Train ``model`` on one batch: loss, backward, clipping, optimizer and scheduler step, masks re-applied.

    In order: ``loss_fn(model, batch)`` (the student's forward pass and, for
    :class:`kasp.core.distill.KaspLoss`, the teacher's targets, computed or read from its cache), backward
    (``accelerator.backward`` when an Accelerator is given), the keep-mask's gradient masking, gradient
    clipping to ``max_grad_norm`` (off at 0), ``optimizer.step()``, ``scheduler.step()``, ``zero_grad``
    (gradients set to None), then the pruner's masks and the keep-mask re-applied to the weights.

    Args:
        model: the student as trained (wrapped by the accelerator, if any).
        batch: a collated batch (:func:`kasp.data.glue.collate`; ``index`` may key the teacher cache).
        loss_fn: called as ``loss_fn(model, batch)``, returning (total loss, {term: 0-d tensor}, outputs),
            as :class:`kasp.core.distill.KaspLoss` does.
        optimizer: the student's optimizer.
        scheduler: the learning-rate scheduler, stepped after the optimizer; None: none.
        pruner: a :class:`kasp.core.masks.MagnitudePruner` whose masks are re-applied after the step; None: none.
            The pruner's mask *updates* (``pruner.step``) are the caller's: they happen before a step.
        keeper: a :class:`kasp.core.masks.MaskKeeper` (keep-mask fine-tuning): gradients masked before
            clipping, weights masked after the step; None: none.
        max_grad_norm: clip the gradients' global norm to this value; 0 (or less): no clipping.
        accelerator: an ``accelerate.Accelerator`` doing backward and clipping; None: plain torch.

    Returns:
        (loss, terms): the total loss and its terms, 0-d tensors still on the device (not read to the
        host, so a loop reads them only at its log points).
    """
    loss, terms, _ = loss_fn(model, batch)
    if accelerator is not None:
        accelerator.backward(loss)
    else:
        loss.backward()
    if keeper is not None:
        keeper.mask_grads()
    if max_grad_norm > 0:
        if accelerator is not None:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if pruner is not None:
        pruner.apply()
    if keeper is not None:
        keeper.apply()
    return loss, terms
