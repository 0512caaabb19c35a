"""KASP inside the Hugging Face ``Trainer``: a Trainer subclass that adds the distillation terms and a
callback that prunes on the cubic schedule. Both call the same functions as the CLI
(:class:`kasp.core.distill.KaspLoss`, :class:`kasp.core.masks.MagnitudePruner`,
:class:`kasp.data.glue.LengthBucketSampler`), so the two routes give the same masks on the same data,
seed and recipe.

Example (see README)::

    trainer = KaspTrainer(model=student, teacher=teacher, args=TrainingArguments(...),
                          train_dataset=EncodedDataset(train), data_collator=EncodedDataset.collator(train),
                          callbacks=[KaspPruningCallback(target=0.9)])
    trainer.train()
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from kasp.data.glue import Encoded, IndexDataset, LengthBucketSampler, collate
from kasp.core.distill import KaspLoss
from kasp.core.masks import SPARSE_WARN_THRESHOLD, MagnitudePruner, MaskKeeper, keep_sparsity_warning, sparsity_summary
from kasp.spec.schedule import ramp_steps


log = logging.getLogger(__name__)


class EncodedDataset(IndexDataset):
    """A tokenised split (:class:`kasp.data.glue.Encoded`) as a map-style dataset of its indices
    (:class:`kasp.data.glue.IndexDataset`), with the collator that pads them into batches."""

    def __init__(self, data: Encoded):
        super().__init__(len(data))
        self.data = data

    @staticmethod
    def collator(data: Encoded, pad_id: int = 0):
        """A data collator that pads a list of indices of ``data`` to the batch's longest row."""
        return lambda idx: collate(data, idx, pad_id)


class KaspTrainer(Trainer):
    """``Trainer`` whose loss is KASP's: attention + hidden + prediction distillation (+ task loss).

    Args:
        teacher: the fine-tuned teacher (frozen, eval mode); None for task loss only.
        attention_weight, hidden_weight, prediction_weight, task_loss_weight, temperature, regression:
            as in :class:`kasp.core.distill.KaspLoss`.
        length_bucketing: train on :class:`kasp.data.glue.LengthBucketSampler` batches (the CLI's order)
            when the train dataset is an :class:`EncodedDataset`.
    """

    def __init__(self, *args: Any, teacher: nn.Module | None = None, attention_weight: float = 1.0,
                 hidden_weight: float = 1.0, prediction_weight: float = 1.0, task_loss_weight: float = 0.0,
                 temperature: float = 1.0, regression: bool = False, length_bucketing: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if teacher is not None:
            teacher.to(self.args.device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        self.kasp_loss = KaspLoss(self.model, teacher, attention_weight=attention_weight, hidden_weight=hidden_weight,
                                  prediction_weight=prediction_weight, task_loss_weight=task_loss_weight,
                                  temperature=temperature, regression=regression)
        self.length_bucketing = length_bucketing
        self.last_terms: dict[str, float] = {}
        keeps = any(isinstance(cb, (KeepSparsityCallback, KaspPruningCallback)) for cb in self.callback_handler.callbacks)
        if not keeps:
            start = sparsity_summary(self.model)["pruned_sparsity"]
            if start > SPARSE_WARN_THRESHOLD:
                log.warning("kasp: warning: %s", keep_sparsity_warning(start, "the model given to KaspTrainer"))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The KASP loss of a batch. ``num_items_in_batch`` is accepted and not needed: every term is
        already a mean over its own elements."""
        loss, terms, out = self.kasp_loss(model, inputs)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return (loss, out) if return_outputs else loss

    def log(self, logs, *args, **kwargs):
        """Adds the last batch's loss terms and the current sparsity to what the Trainer logs."""
        logs = dict(logs)
        logs.update({f"loss_{k}": v for k, v in self.last_terms.items()})
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, KaspPruningCallback) and cb.pruner is not None:
                logs["sparsity"] = cb.pruner.current_sparsity
            elif isinstance(cb, KeepSparsityCallback) and cb.keeper is not None:
                logs["sparsity"] = cb.keeper.sparsity
        super().log(logs, *args, **kwargs)

    def get_train_dataloader(self):
        if not (self.length_bucketing and isinstance(self.train_dataset, EncodedDataset)):
            return super().get_train_dataloader()
        data = self.train_dataset.data
        sampler = LengthBucketSampler(data.lengths, self.args.per_device_train_batch_size, seed=self.args.seed)
        loader = torch.utils.data.DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator)
        return self.accelerator.prepare(loader)


class KaspPruningCallback(TrainerCallback):
    """Magnitude masks on the cubic schedule for a ``Trainer`` run.

    Masks are recomputed at pruning events (``on_step_begin``), re-applied after every optimizer
    step (``on_optimizer_step``), set to exactly the target at the end (``on_train_end``); the
    current sparsity is added to the Trainer's logs.

    Args:
        target: final sparsity of the encoder linear weights (fraction).
        events: mask updates over the run; scope: "layer" or "global" ranking.
        story: a file (e.g. ``<run dir>/weights.jsonl``) to record the weights' story in, as
            ``kasp prune`` does (:class:`kasp.training.story_recorder.StoryRecorder`: the start, up to 20 mask
            updates and the end), so the app's Weights page can show a Trainer run too; None: none.
        initial: sparsity imposed before the first step (``--initial-sparsity``, a first pruning step; fraction,
            at most ``target``); recovery: fraction of the steps after the schedule reaches the target, at fixed
            masks (``--recovery``; its learning-rate decay is the Trainer's scheduler's to give).
    """

    def __init__(self, target: float, events: int = 100, scope: str = "layer", story: str | None = None,
                 initial: float = 0.0, recovery: float = 0.0):
        self.target, self.events, self.scope = target, events, scope
        self.initial, self.recovery = initial, recovery
        self.pruner: MagnitudePruner | None = None
        self.story = story
        self.recorder = None

    def _record(self, step: int, phase: str) -> None:
        if self.recorder is not None:
            self.recorder("masks", {"step": step, "phase": phase, "sparsity": self.pruner.current_sparsity,
                                    "linears": self.pruner.linears, "masks": self.pruner.masks})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        base = getattr(model, "module", model)
        self.pruner = MagnitudePruner(base, self.target, state.max_steps, self.events, self.scope,
                                      initial=self.initial, ramp=ramp_steps(state.max_steps, self.recovery))
        self.pruner.first_step()  # a first pruning step comes before the start, as in `kasp prune`
        if self.story is not None and self.target > 0 and state.is_world_process_zero:
            from kasp.training.story_recorder import StoryRecorder

            self.recorder = StoryRecorder(self.story, StoryRecorder.stride(self.events))
            self._record(0, "start")

    def on_step_begin(self, args, state, control, **kwargs):
        if self.pruner.step(state.global_step):
            self._record(state.global_step, "prune")

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.pruner.apply()

    def on_train_end(self, args, state, control, **kwargs):
        self.pruner.finish()
        self._record(state.global_step, "end")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.pruner is not None:
            logs["sparsity"] = self.pruner.current_sparsity


class KeepSparsityCallback(TrainerCallback):
    """Keep-mask fine-tuning for a ``Trainer`` run (``kasp finetune --keep-sparsity`` in the Trainer route).

    At ``on_train_begin`` the masks are taken from the exact zeros of the model's encoder linear
    weights (:class:`kasp.core.masks.MaskKeeper`); the gradients of the pruned weights are zeroed before
    every optimizer step (``on_pre_optimizer_step``, after the Trainer's gradient clipping) and the
    pruned weights set to zero again after it (``on_optimizer_step``), so each matrix keeps its
    sparsity exactly. ``sparsity`` (the fraction the masks hold at zero) is added to the logs.
    """

    def __init__(self) -> None:
        self.keeper: MaskKeeper | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.keeper = MaskKeeper(getattr(model, "module", model))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.keeper.mask_grads()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.keeper.apply()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.keeper is not None:
            logs["sparsity"] = self.keeper.sparsity
