"""Wall-time budgets (``--time-budget MINUTES``): how many optimizer steps a run can afford here.

A CPU user thinks in minutes, not steps ("what does KASP reach in 15 minutes on my laptop?"), and
one step's cost differs several-fold between machines and between tasks (SST-2 sentences against
MRPC pairs). So a run with a time budget first times a few real training steps on its own data,
then sets its step count T so that the whole run (loading, training, evaluation, saving) fits
(timing stops early once it has used 4 % of the budget):

    T = (B - spent - e - save) / (s + e / eval_every)

with B the budget, ``spent`` the seconds since the run started (loading), ``s`` the seconds per
step, ``e`` the seconds of one dev evaluation, ``save`` a reserve for the checkpoint. ``s`` is the
measured seconds per padded token times the mean padded tokens of a batch over an epoch of the
run's own length-bucketed batches (one timed batch of short sentences would mislead; a least-squares
line through the timed batches, seconds = a + b * tokens, gives the fixed cost a of a step). Each batch
is timed up to ROUNDS times, in rounds over all of them, and its lower median kept: timed once each,
the steps of one 15-minute SST-2 run came out 15 to 68 % slower than those of another on the same
machine (the first steps of a process, or a passing job), and it chose 1,478 steps instead of 2,147
and ended after about 10 minutes. ``e`` is the
dev set's padded tokens times the per-token cost of a forward pass without gradient, taken as a
quarter (distilling: student forward and backward plus the teacher's forward) or a third (task loss
only) of the training per-token cost.

The steps are timed on a copy of the student with its own optimizer (the run's own step,
:func:`kasp.training.step.training_step`, without a learning-rate scheduler), and the random state is put
back afterwards, so a run with ``--time-budget`` that chose T trains exactly as the same run with
``--max-steps T`` (tested). The schedule (cubic sparsity, learning rate) is then laid over T as
usual: nothing about the method changes, only its length.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from kasp.data.glue import Encoded, LengthBucketSampler, collate
from kasp.ground.errors import KaspError

#: batches timed after one untimed warm-up batch; timing stops early (after at least MIN_TIMED) once it
#: has used CALIBRATION_SHARE of the budget
TIMED_BATCHES = 6
WARMUP_BATCHES = 1
#: times each timed batch is run (in rounds over all of them); the lower median of its times is kept
ROUNDS = 3
MIN_TIMED = 2
CALIBRATION_SHARE = 0.04
#: seconds kept for saving the checkpoint and the report
SAVE_RESERVE_S = 5.0


def _padded_tokens(lengths: list[int], idx: list[int]) -> int:
    """Tokens of batch ``idx`` padded to its longest example (``lengths``: :attr:`kasp.data.glue.Encoded.lengths`)."""
    return len(idx) * max(int(lengths[i]) for i in idx)


def fit_step_cost(timed: list[list[float]]) -> tuple[float, float]:
    """The cost of one training step as ``seconds = a + b * padded tokens``, from timed steps.

    Steps timed on batches of the same padded size are one point: the lower median of their times
    (:func:`statistics.median_low`; slow outliers come from allocation and other jobs, never fast ones).
    The line is a least-squares fit through those points; with a single size, or a fit with a negative
    intercept or slope, ``a`` is 0 and ``b`` the mean seconds per token.

    Args:
        timed: ``[padded tokens, seconds]`` per timed step (at least one; tokens > 0).

    Returns:
        (a, b): seconds of fixed cost per step, seconds per padded token.
    """
    by_size: dict[float, list[float]] = {}
    for tokens, seconds in timed:
        by_size.setdefault(float(tokens), []).append(float(seconds))
    x = np.array(sorted(by_size), dtype=float)
    y = np.array([statistics.median_low(by_size[t]) for t in sorted(by_size)], dtype=float)
    a, per_token = 0.0, float(y.sum() / x.sum())
    if len(x) > 1:
        b_fit, a_fit = np.polyfit(x, y, 1)
        if a_fit >= 0 and b_fit > 0:
            a, per_token = float(a_fit), float(b_fit)
    return a, per_token


def steps_for_budget(cfg: Any, student: nn.Module, teacher: nn.Module | None, train_data: Encoded,
                     dev_data: Encoded | None, pad_id: int, spent_s: float, regression: bool,
                     make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
                     device: torch.device | str = "cpu", processes: int = 1) -> dict[str, Any]:
    """The step count T that fits ``cfg.time_budget`` minutes, measured on this machine and data.

    Args:
        cfg: the run's :class:`kasp.spec.config.RunConfig` (time_budget in minutes; batch size, seed,
            loss weights, pruning target and evaluation interval are read).
        student, teacher: the run's models (the student is copied, never trained here).
        train_data, dev_data: the run's encoded splits (after augmentation, if any).
        pad_id: the tokenizer's padding id.
        spent_s: seconds the run has spent so far (loading), counted against the budget.
        regression: STS-B (MSE task loss).
        make_optimizer: builds the run's optimizer for a model (the copy gets its own).
        device: where the run trains (the steps are timed there; the teacher is moved there).
        processes: processes of the run: each computes 1/processes of a batch (``split_batches``),
            so the timed batches are cut to that share.

    Returns:
        dict: steps (T), step_seconds (s, estimated mean), eval_seconds (e, estimated), timed
        (list of [padded tokens, seconds] of every timed step, in the order run), calibration_seconds,
        budget_seconds.

    Raises:
        KaspError: when the budget leaves no time for a single step after loading and timing.
    """
    t_start = time.time()
    budget_s = float(cfg.time_budget) * 60.0
    rng = torch.random.get_rng_state()
    train_len = train_data.lengths
    batches, mean_tokens = _batches_to_time(train_len, cfg, processes)
    try:
        timed = _time_steps(cfg, student, teacher, train_data, train_len, batches, pad_id, regression, make_optimizer,
                            device, t_start, CALIBRATION_SHARE * budget_s)
    finally:
        torch.random.set_rng_state(rng)
    a, per_token = fit_step_cost(timed)
    step_s = a + per_token * mean_tokens
    dev_tokens = 0.0
    dev_len = dev_data.lengths if dev_data is not None else []
    if dev_len:
        dev_tokens = sum(_padded_tokens(dev_len, list(range(i, min(i + cfg.eval_batch_size, len(dev_len)))))
                         for i in range(0, len(dev_len), cfg.eval_batch_size))
    eval_s = dev_tokens * per_token / (4.0 if cfg.distill_weight() > 0 else 3.0)
    calibration_s = time.time() - t_start
    left = budget_s - spent_s - calibration_s - eval_s - SAVE_RESERVE_S
    per_step = step_s + (eval_s / cfg.eval_every if cfg.eval_every else 0.0)
    steps = math.floor(left / per_step) if per_step > 0 else 0
    if steps < 1:
        raise KaspError(f"--time-budget {cfg.time_budget:g} min leaves no time to train: loading took "
                        f"{spent_s:.0f} s and one step takes about {step_s:.2f} s here; give a larger budget")
    return {"steps": int(steps), "step_seconds": step_s, "eval_seconds": eval_s, "timed": timed,
            "calibration_seconds": calibration_s, "budget_seconds": budget_s, "spent_seconds": spent_s}


def _batches_to_time(train_len: list[int], cfg: Any, processes: int) -> tuple[list[list[int]], float]:
    """(the batches to time, in order, the mean padded tokens of a batch over an epoch) of a run's data.

    One process's share of each batch of an epoch of the run's length-bucketed batches; the timed ones
    are spread evenly over the epoch's range of lengths (shortest to longest), after warm-up on the
    median batch, and run ROUNDS times.
    """
    sampler = LengthBucketSampler(train_len, cfg.batch_size, seed=cfg.seed + 7919, bucket=cfg.bucket_batches)
    share = max(1, cfg.batch_size // max(1, processes))  # examples of a batch one process computes
    epoch = [b[:share] for b in sampler]
    mean_tokens = sum(_padded_tokens(train_len, b) for b in epoch) / max(1, len(epoch))
    by_len = sorted(epoch, key=lambda b: _padded_tokens(train_len, b))
    spread = [by_len[round(i * (len(by_len) - 1) / max(1, TIMED_BATCHES - 1))] for i in range(TIMED_BATCHES)]
    spread = [b for pair in zip(spread[len(spread) // 2:], spread[:len(spread) // 2][::-1]) for b in pair]  # middle out,
    # long and short in turn, so that a timing cut short still spans the lengths
    return [by_len[len(by_len) // 2]] * WARMUP_BATCHES + spread * ROUNDS, mean_tokens


def _time_steps(cfg: Any, student: nn.Module, teacher: nn.Module | None, train_data: Encoded, train_len: list[int],
                batches: list[list[int]], pad_id: int, regression: bool,
                make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], device: torch.device | str,
                t_start: float, limit_s: float) -> list[list[float]]:
    """``[padded tokens, seconds]`` of each timed training step (:func:`kasp.training.step.training_step`, the run's
    loss, optimizer, clipping and masks) on a copy of ``student``, after the warm-up batches; timing stops
    once at least MIN_TIMED steps are timed and ``limit_s`` seconds have passed since ``t_start`` (``time.time()``)."""
    from kasp.core.distill import KaspLoss
    from kasp.core.masks import MagnitudePruner
    from kasp.training.step import training_step

    model = copy.deepcopy(student).to(device).train()
    if teacher is not None:
        teacher.to(device)
    loss_fn = KaspLoss.from_config(cfg, model, teacher, regression=regression)
    optimizer = make_optimizer(model)
    pruner = MagnitudePruner(model, cfg.pruning_target(), 100, 100, cfg.scope)
    if pruner.target > 0:
        pruner.step(50)  # masks in place, so that re-applying them is timed too
    timed: list[list[float]] = []
    try:
        for i, idx in enumerate(batches):
            batch = {k: v.to(device) for k, v in collate(train_data, idx, pad_id).items()}
            t0 = time.perf_counter()
            training_step(model, batch, loss_fn, optimizer, pruner=pruner, max_grad_norm=cfg.max_grad_norm)
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            if i >= WARMUP_BATCHES:
                timed.append([_padded_tokens(train_len, idx), time.perf_counter() - t0])
                if len(timed) >= MIN_TIMED and time.time() - t_start > limit_s:
                    break  # enough for an estimate: the budget is for training
    finally:
        loss_fn.remove()
        del model, optimizer
    return timed
