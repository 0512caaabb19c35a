"""The training loop: fine-tune a dense teacher, or prune a student while distilling (KASP).

One loop serves every method; the recipe (:class:`kasp.spec.config.RunConfig`) says which loss terms
are on, where the student starts and how sparse it ends:

- ``kind=finetune``: dense, task loss only -> the teacher.
- ``kind=prune, method=kasp``: student = the pre-trained model, loss = attention + hidden +
  prediction distillation from the fine-tuned teacher (Xu et al., NAACL 2021), per-matrix
  magnitude masks on the cubic schedule over the whole run.
- ``kind=prune, method=magnitude``: student = a copy of the teacher, task loss only, same schedule.

Device placement, gradient accumulation-free backward and multi-process data parallelism go
through ``accelerate.Accelerator``. Callbacks (minGPT style) receive ``(event, record)`` for the
events "train" (every ``log_every`` steps), "eval", "prune", and "masks" (prune runs: at the start,
after every mask update and after the exact target is imposed; the record holds ``step``, ``phase``,
``sparsity``, ``linears`` and ``masks``, read by :class:`kasp.training.story_recorder.StoryRecorder`, which
every run with a run directory gets); ``should_stop()`` is polled after every step and turns the
run into a cancelled one.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

from kasp.ground import settings
from kasp.training.card import write_model_card
from kasp.spec.config import RunConfig
from kasp.data.glue import (LengthBucketSampler, collate, get_task, input_length, length_warning, load_holdout,
                       load_task_data)
from kasp.core.distill import KaspLoss
from kasp.ground.errors import KaspError
from kasp.spec.methods import shrinks_student
from kasp.training.evaluate import evaluate_sharded
from kasp.core.masks import (SPARSE_WARN_THRESHOLD, MagnitudePruner, MaskKeeper, keep_sparsity_warning, sparsity_summary,
                        sparsity_table)
from kasp.spec.schedule import lr_multiplier, pruning_interval, ramp_steps
from kasp.models.modeling import (align_labels, cap_length, check_tokenizer, count_parameters, load_classifier, load_tokenizer,
                           resolve_model, task_problem_type)
from kasp.training.provenance import run_provenance
from kasp.ground.runs import RunDir, find_teacher, read_json
from kasp.spec.tasks import task_name

Callback = Callable[[str, dict[str, Any]], None]

#: the live panel's clock (issue 25, item 5): a run's status.json gets its step at most every
#: HEARTBEAT_SECONDS (a cheap write, no progress record), and a progress record is written when
#: LOG_SECONDS have passed since the last one even if ``log_every`` steps have not (one process only:
#: with several, every process must log at the same steps)
HEARTBEAT_SECONDS = 2.0
LOG_SECONDS = 20.0

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside :func:`train` when ``should_stop()`` turns true."""


def resolve_teacher(cfg: RunConfig, store: str | Path | None = None) -> tuple[str, dict[str, Any]]:
    """Checkpoint path of the teacher and its run report ({} for a bare checkpoint).

    Raises:
        KaspError: if ``--teacher`` does not exist, or no teacher is found in the store.
    """
    if cfg.teacher:
        p = Path(cfg.teacher)
        if not p.exists():
            raise KaspError(f"--teacher {p} does not exist")
        if (p / "checkpoint").is_dir():
            return str(p / "checkpoint"), read_json(p / "report.json", {}) or {}
        return str(p), read_json(p.parent / "report.json", {}) or {}
    run = find_teacher(cfg.task, cfg.model, store)
    return str(run.checkpoint), run.report()


def _cpu_only() -> bool:
    """True where torch sees no accelerator: Accelerate then runs data-parallel on CPU processes (gloo)
    under torchrun, which it only does when told it is on CPU."""
    if settings.get().accelerate_use_cpu:
        return True
    mps = getattr(torch.backends, "mps", None)
    xpu = getattr(torch, "xpu", None)
    return not (torch.cuda.is_available() or (mps is not None and mps.is_available())
                or (xpu is not None and xpu.is_available()))


def _fused() -> dict[str, bool]:
    """Fused AdamW (one kernel for all parameters) where torch offers it; KASP_FUSED_ADAMW=0 turns it off."""
    return {"fused": True} if settings.get().fused_adamw else {}


def _optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, **_fused())


def _lr_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig, total: int):
    """The learning-rate schedule of a run: transformers' ``linear`` / ``constant_with_warmup`` for the plain
    schedules (as before), else a ``LambdaLR`` over :func:`kasp.spec.schedule.lr_multiplier` (rewarm, recovery)."""
    from transformers import get_scheduler

    warmup = int(round(cfg.warmup_ratio * total))
    if cfg.lr_schedule in ("constant", "linear") and not cfg.recovery:
        return get_scheduler("linear" if cfg.lr_schedule == "linear" else "constant_with_warmup",
                             optimizer, num_warmup_steps=warmup, num_training_steps=total)
    ramp = ramp_steps(total, cfg.recovery)
    every = pruning_interval(ramp, cfg.pruning_events)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total, cfg.lr_schedule, warmup, ramp, every))


def _teacher_embeddings(student: nn.Module, teacher: nn.Module) -> None:
    """Copy the teacher's embedding block (word, position, segment embeddings and their LayerNorm) into the
    student (``--init-embeddings teacher``).

    Raises:
        KaspError: when the two embedding blocks differ in names or shapes.
    """
    s_mod = getattr(student, "base_model", student).embeddings
    t_mod = getattr(teacher, "base_model", teacher).embeddings
    s_emb, t_emb = s_mod.state_dict(), t_mod.state_dict()
    if s_emb.keys() != t_emb.keys() or any(s_emb[k].shape != t_emb[k].shape for k in s_emb):
        raise KaspError("--init-embeddings teacher: the teacher's embeddings do not have the student's shapes "
                        "(another vocabulary or width); use --init-embeddings pretrained")
    s_mod.load_state_dict(t_emb)


def _check_labels(model: nn.Module, task, path: str) -> nn.Module:
    """The teacher's outputs checked against the task and put in KASP's class order (kasp.models.modeling.align_labels)."""
    align_labels(model, task, f"the teacher {path}")
    return model


@dataclass
class TrainResult:
    """What :func:`train` returns: the report (also written to report.json) and the final model."""

    report: dict[str, Any]
    model: nn.Module


class _IndexDataset(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class _ResumableBatches(torch.utils.data.Sampler):
    """The run's batch sampler with a start offset for the first epoch after a resume.

    ``skip`` batches of the next epoch are left out (not collated); later epochs are whole.
    """

    def __init__(self, sampler: LengthBucketSampler):
        self.sampler = sampler
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.sampler), skip, None)


def _load_models(cfg: RunConfig, task, store) -> tuple[nn.Module, nn.Module | None, Any, str, str | None, dict, Any]:
    """(student, teacher or None, tokenizer, model path, teacher path, teacher report, small-dense size
    or None) for a recipe.

    Raises:
        KaspError: no teacher, a teacher for another label set, or teacher and student widths differ.
    """
    from accelerate.utils import set_seed

    model_path = resolve_model(cfg.model)
    teacher_path, teacher_report = resolve_teacher(cfg, store) if cfg.needs_teacher() else (None, {})
    tokenizer = load_tokenizer(teacher_path or model_path)
    teacher = None
    if cfg.needs_teacher() and cfg.distill_weight() > 0:
        teacher = _check_labels(load_classifier(teacher_path), task, teacher_path)
    set_seed(cfg.seed)  # the new classifier head of a pre-trained student draws from this seed
    if cfg.kind == "prune" and cfg.init == "finetuned":
        student = _check_labels(load_classifier(teacher_path), task, teacher_path)
    else:
        student = load_classifier(model_path, num_labels=task.num_labels)
    check_tokenizer(tokenizer, student.config, model_path)  # the student's embeddings must hold every token
    cap_length(tokenizer, student.config)  # texts are cut at the student's position table too
    small_dense = None
    if shrinks_student(cfg.method):  # a dense student as large as the pruned ones' non-zeros
        from kasp.core.small_dense import shrink_to, size_for_sparsity

        small_dense = size_for_sparsity(student.config, cfg.sparsity)
        shrink_to(student, small_dense)
    if teacher is not None and teacher.config.hidden_size != student.config.hidden_size:
        raise KaspError(f"teacher width {teacher.config.hidden_size} differs from student width "
                        f"{student.config.hidden_size}; KASP needs equal widths (no projection)")
    if cfg.init_embeddings == "teacher":
        _teacher_embeddings(student, teacher if teacher is not None else load_classifier(teacher_path))
    if task.class_names:  # the checkpoint names its classes, so a scorer can map them (kasp.models.modeling.label_order)
        student.config.id2label = dict(enumerate(task.class_names))
        student.config.label2id = {v: k for k, v in enumerate(task.class_names)}
    student.config.kasp_task = task.name
    # what KASP trains (softmax cross-entropy or MSE), never a problem_type inherited from the checkpoint
    # (a multi-label one would make pipelines apply a sigmoid)
    student.config.problem_type = task_problem_type(task)
    return student, teacher, tokenizer, model_path, teacher_path, teacher_report, small_dense


def _teacher_cache(cfg: RunConfig, kasp_loss: KaspLoss, teacher_path: str | None, task, train_data, total: int,
                   batches_per_epoch: int, accelerator):
    """The teacher cache of a run (:mod:`kasp.core.teacher_cache`), installed in ``kasp_loss``; None where it cannot
    pay: no teacher, the recipe turns it off, a run of at most one epoch, or several processes."""
    if not (cfg.teacher_cache and kasp_loss.teacher is not None and teacher_path and total > batches_per_epoch
            and accelerator.num_processes == 1 and cfg.teacher_cache_gb > 0):
        return None
    from kasp.core.teacher_cache import open_cache

    amap, hmap = kasp_loss.cache_layout()
    try:
        cache = open_cache(teacher_path, task.name, cfg.max_seq_length, train_data, amap, hmap,
                           kasp_loss.teacher.config, kasp_loss.teacher.config.num_labels, cfg.teacher_cache_gb)
    except (OSError, TimeoutError) as e:  # no safetensors, a read-only or full cache folder: run without it
        print(f"teacher cache off: {e}", file=sys.stderr)
        return None
    kasp_loss.use_cache(cache)
    return cache


def _keep_mask_setup(cfg: RunConfig, model: nn.Module, main: bool = True) -> MaskKeeper | None:
    """Keep-mask fine-tuning: a :class:`kasp.core.masks.MaskKeeper` of the starting checkpoint's zeros for a
    finetune run with ``keep_sparsity``; None otherwise, with a warning (logger ``kasp.training.train``, printed
    on stderr) when a finetune run starts from a checkpoint whose pruned set is more than
    :data:`kasp.core.masks.SPARSE_WARN_THRESHOLD` zeros, whose zeros will then fill in."""
    if cfg.kind != "finetune":
        return None
    if cfg.keep_sparsity:
        keeper = MaskKeeper(model)
        if main and keeper.sparsity == 0:  # a dense start: the flag keeps nothing, and the card would say "yes"
            log.warning("kasp: warning: --keep-sparsity: --model %s has no zeros in its encoder linear weights "
                        "(0.00 %% sparse), so there is nothing to keep and the run fine-tunes it densely; give a pruned "
                        "checkpoint (a `kasp prune` run) or drop --keep-sparsity", cfg.model)
        return keeper
    start = sparsity_summary(model)["pruned_sparsity"]
    if main and start > SPARSE_WARN_THRESHOLD:
        log.warning("kasp: warning: %s", keep_sparsity_warning(start, f"--model {cfg.model}"))
    return None


class _NonFinite:
    """The first optimizer step (1-based) whose training loss was NaN or infinite, tracked on the device.

    :meth:`update` after every step costs two small device ops and no host read; :meth:`check` reads it
    (one host read, gathered over processes: call it at the same step in every process).
    """

    def __init__(self, total: int, step: int, accelerator) -> None:
        self.total, self.accelerator = total, accelerator
        self.step_t: torch.Tensor | None = None
        self.first: torch.Tensor | None = None
        self.start = step

    def update(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        if self.first is None:
            self.step_t = torch.tensor(self.start, device=loss.device)
            self.first = torch.tensor(self.total + 1, device=loss.device)
        self.step_t += 1
        self.first = torch.where(torch.isfinite(loss), self.first, torch.minimum(self.first, self.step_t))

    def check(self, step: int, lr: float) -> None:
        """Raise when a loss so far was not finite.

        Raises:
            KaspError: naming the first such step, where the run stopped, and the fix (a lower --lr).
        """
        if self.first is None:
            return
        first = self.first.reshape(1)
        if self.accelerator.num_processes > 1:
            first = self.accelerator.gather(first)
        bad = int(first.min())
        if bad <= self.total:
            raise KaspError(f"the training loss became NaN or infinite at step {bad} of {self.total} (learning rate "
                            f"{lr:g}); the run stopped at step {step} and wrote no checkpoint: lower the learning rate "
                            f"(for example --lr {min(lr / 10, 1e-4):g})")


def _read_window(window: dict[str, torch.Tensor], n: int, accelerator) -> dict[str, float]:
    """Means of the loss terms summed since the last log point: the loop's one host read per log."""
    keys = list(window)
    vals = torch.stack([window[k] for k in keys]) / n if keys else torch.zeros(0)
    if accelerator.num_processes > 1:  # each process saw part of every batch: average them
        vals = accelerator.reduce(vals.to(accelerator.device), "mean")
    return dict(zip(keys, vals.tolist()))


def train(cfg: RunConfig, run: RunDir | None = None, callbacks: Iterable[Callback] = (),
          should_stop: Callable[[], bool] = lambda: False, store: str | Path | None = None,
          progress_bar: bool = True, resume_from: str | Path | None = None) -> TrainResult:
    """Run one fine-tune or prune run end to end; return its report and final (mask-folded) model.

    Writes config, status, progress log, checkpoint and report into ``run`` when given, and at
    every evaluation point the resume state (:mod:`kasp.training.resume`) that ``resume_from`` (a state
    directory, :func:`kasp.training.resume.latest`) continues from: the resumed run ends with the weights
    an uninterrupted run would have.

    The run ends checkpoint, report, status "done", and only then deletes its resume state, so a kill
    at any point leaves a run that ``--resume`` continues or finishes (:func:`kasp.training.resume.finish_complete`).

    Raises:
        KaspError: bad recipe or inputs (no teacher, unsupported model, missing data, a resume
            state that does not fit), or a training loss that became NaN or infinite (checked at
            every log and evaluation point; the run stops there, status "failed", no checkpoint).
        Cancelled: when ``should_stop()`` became true; the status is "cancelled", no checkpoint.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm
    from kasp.training import resume

    t0 = time.time()
    callbacks = list(callbacks)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # split_batches: --batch-size is the global batch, split across processes, so N processes
    # follow the same optimisation path as one
    accelerator = Accelerator(split_batches=True, cpu=_cpu_only())
    main = accelerator.is_main_process
    run = run if main else None
    task = get_task(cfg.task)
    if run and resume_from:  # keep the provenance (the teacher a second resume needs) and the step reached
        run.set_status("running", pid=os.getpid(), error=None)
        # the clock continues from the resume point: progress "elapsed" and the report's wall time count
        # the time before the interruption too (not the steps after the last state, which run again)
        before = [r["elapsed"] for r in run.progress() if isinstance(r.get("elapsed"), (int, float))]
        if before:
            t0 -= before[-1]
    elif run:
        run.write_config(cfg.to_dict(), {"command": sys.argv})
        run.set_status("running", pid=os.getpid(), started=t0, step=0, error=None)

    def emit(event: str, record: dict[str, Any]) -> None:
        if run and event in ("train", "eval"):
            run.log({"type": event, **record})
        for cb in callbacks:
            cb(event, record)

    def phase(text: str) -> None:  # what the run is doing before its first step, for the live panel
        if run:
            run.set_status("running", phase=text)

    finished = False  # set once the run is recorded as done
    try:
        phase("loading the pre-trained model" + (" and the fine-tuned teacher" if cfg.kind == "prune" else ""))
        student, teacher, tokenizer, model_path, teacher_path, teacher_report, small_dense = _load_models(cfg, task, store)
        prov = run_provenance(cfg, model_path, teacher_path) if run else {}  # written once more when a budget sets T
        if run:
            run.write_config(cfg.to_dict(), prov | {"resumed_from": str(resume_from) if resume_from else None})
        pad_id = tokenizer.pad_token_id or 0

        # --- data ---------------------------------------------------------------------------
        phase(f"reading and tokenising the {task_name(task.name)} training and dev data")
        train_data, dev_data = load_task_data(cfg, tokenizer)
        held_data = load_holdout(cfg, tokenizer)  # the selection slice, or None
        lengths = input_length(tokenizer, cfg.max_seq_length)  # said with every score (report, summary line)
        if length_warning(lengths) and accelerator.is_main_process:
            print(f"kasp: {length_warning(lengths)}", file=sys.stderr, flush=True)
        steps_per_epoch = -(-len(train_data) // cfg.batch_size)  # of the task's own examples
        if cfg.augment:
            from kasp.training.augment import augmented_examples

            with accelerator.main_process_first():  # the main process builds the cache, the others read it
                train_data = augmented_examples(cfg, train_data, tokenizer, model_path)
        sampler = LengthBucketSampler(train_data.lengths, cfg.batch_size, seed=cfg.seed, bucket=cfg.bucket_batches)
        batches = _ResumableBatches(sampler)
        loader = torch.utils.data.DataLoader(_IndexDataset(len(train_data)), batch_sampler=batches,
                                             collate_fn=lambda idx: collate(train_data, idx, pad_id) | {"index": torch.tensor(idx)})
        budget = None
        if cfg.time_budget and not cfg.max_steps:  # choose T from the measured step time (kasp/training/budget.py)
            from accelerate.utils import broadcast_object_list

            from kasp.training.budget import steps_for_budget

            plan: list[Any] = [None]
            phase(f"timing a few steps to fit the {cfg.time_budget:g}-minute budget")
            if main:
                try:
                    plan[0] = steps_for_budget(cfg, student, teacher, train_data, dev_data, pad_id, time.time() - t0,
                                               task.is_regression, lambda m: _optimizer(m, cfg),
                                               device=accelerator.device, processes=accelerator.num_processes)
                except KaspError as e:
                    plan[0] = {"error": str(e)}
            if accelerator.num_processes > 1:
                broadcast_object_list(plan)  # every process trains the same T, or stops with the same error
            if "error" in plan[0]:
                raise KaspError(plan[0]["error"])
            budget = plan[0]
            cfg = dataclasses.replace(cfg, max_steps=budget["steps"])
            if run:  # the recipe as run: a resume continues with this T
                run.write_config(cfg.to_dict(), prov | {"resumed_from": None, "time_budget": budget})
        # --epochs counts passes over the task's examples, so --augment changes what a run sees, not its length
        total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        if run:
            run.set_status("running", total_steps=total, **({} if resume_from else {"step": 0}))  # the app knows T before step 1

        # --- optimisation -------------------------------------------------------------------
        optimizer = _optimizer(student, cfg)
        scheduler = _lr_scheduler(optimizer, cfg, total)
        student, optimizer, loader, scheduler = accelerator.prepare(student, optimizer, loader, scheduler)
        raw_student = accelerator.unwrap_model(student)
        if teacher is not None:
            teacher.to(accelerator.device).eval()
            for p in teacher.parameters():
                p.requires_grad_(False)
        pruner = MagnitudePruner(raw_student, cfg.pruning_target(), total, cfg.pruning_events, cfg.scope,
                                 initial=cfg.initial_sparsity, ramp=ramp_steps(total, cfg.recovery))
        keeper = _keep_mask_setup(cfg, raw_student, main)  # before a resume loads weights: the start's zeros
        if run and pruner.target > 0:
            from kasp.training.weights_story import STORY_FILE
            from kasp.training.story_recorder import StoryRecorder

            recorder = StoryRecorder(run.path / STORY_FILE, StoryRecorder.stride(cfg.pruning_events))
            callbacks.append(recorder)

        def emit_masks(step: int, phase: str) -> None:
            if main and pruner.target > 0:
                emit("masks", {"step": step, "phase": phase, "sparsity": pruner.current_sparsity,
                               "linears": pruner.linears, "masks": pruner.masks})
        kasp_loss = KaspLoss(raw_student, teacher, attention_weight=cfg.attention_weight, hidden_weight=cfg.hidden_weight,
                             prediction_weight=cfg.prediction_weight, task_loss_weight=cfg.task_loss_weight,
                             temperature=cfg.temperature, regression=task.is_regression)
        cache = _teacher_cache(cfg, kasp_loss, teacher_path, task, train_data, total, len(batches), accelerator)
        loop, restore_rng = resume.LoopState(), None
        if resume_from:
            loop, restore_rng = resume.load(resume_from, model=raw_student, optimizer=optimizer, scheduler=scheduler,
                                            pruner=pruner)
            batches.skip = loop.batch_in_epoch
            if run and pruner.target > 0:
                recorder.resume(loop.step, pruner.events)

        def run_eval(step: int) -> tuple[dict[str, float], dict[str, float] | None]:
            """(dev metrics, metrics on the held-out selection slice or None)."""
            kasp_loss.set_capture(False)  # plain sdpa attention while evaluating
            m = evaluate_sharded(raw_student, dev_data, task, accelerator, cfg.eval_batch_size, pad_id)
            sel = (evaluate_sharded(raw_student, held_data, task, accelerator, cfg.eval_batch_size, pad_id)
                   if held_data is not None else None)
            kasp_loss.set_capture(True)
            if main:
                emit("eval", {"step": step, "metrics": m, "sparsity": pruner.current_sparsity,
                              "elapsed": time.time() - t0} | ({"selection_metrics": sel} if sel is not None else {}))
            return m, sel

        # --- loop ---------------------------------------------------------------------------
        student.train()
        if not resume_from:
            emit_masks(0, "start")
        bar = tqdm(total=total, initial=loop.step, disable=not (progress_bar and main), dynamic_ncols=True,
                   mininterval=1.0, desc=f"{cfg.kind} {task.name}" + (f" {cfg.method} s={cfg.sparsity:g}" if cfg.kind == "prune" else ""))
        window = {k: torch.tensor(v) for k, v in loop.window.items()}  # loss sums since the last log point
        t_train = time.time() - loop.train_seconds
        step = loop.step
        if run:  # the panel's measured rate counts from here (loading and set-up excluded)
            run.set_status("running", phase="training", train_started=time.time(), train_step0=step)
        last_beat = last_record = time.time()
        by_time = accelerator.num_processes == 1  # time-triggered records need every process to agree
        # the first step whose loss was NaN or infinite (total + 1: none), kept on the device (no host read per
        # step) and read at every log and evaluation point: the run stops there, before a state or checkpoint
        nonfinite = _NonFinite(total, loop.step, accelerator)
        while step < total:
            sampler.set_epoch(loop.epoch)
            if hasattr(loader, "set_epoch"):  # accelerate's loader counts epochs too
                loader.set_epoch(loop.epoch)
            for batch in loader:
                if step >= total:
                    break
                if restore_rng:  # after the loader drew its seed: dropout continues where it stopped
                    restore_rng()
                    restore_rng = None
                if pruner.step(step):
                    emit("prune", {"step": step, "sparsity": pruner.current_sparsity})
                    emit_masks(step, "prune")
                loss, terms, _ = kasp_loss(student, batch)
                accelerator.backward(loss)
                if keeper is not None:
                    keeper.mask_grads()
                if cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                pruner.apply()
                if keeper is not None:
                    keeper.apply()
                step += 1
                nonfinite.update(loss)
                loop.batch_in_epoch += 1
                loop.seen += batch["input_ids"].shape[0] * accelerator.num_processes
                terms["loss"] = loss
                for k, v in terms.items():  # summed as tensors: no host read per step
                    v = v.detach().float()
                    window[k] = window[k] + v if k in window else v
                loop.window_n += 1
                bar.update(1)
                now = time.time()
                if step % cfg.log_every == 0 or step == total or step == 1 or \
                        (by_time and now - last_record >= LOG_SECONDS):  # step 1: the app shows progress at once
                    last_record = last_beat = now
                    nonfinite.check(step, cfg.lr)
                    means = _read_window(window, loop.window_n, accelerator)
                    rec = {"step": step, "total_steps": total, "epoch": loop.epoch + 1, **means,
                           "sparsity": pruner.current_sparsity, "scheduled_sparsity": pruner.scheduled(step) if cfg.pruning_target() else 0.0,
                           "lr": scheduler.get_last_lr()[0], "elapsed": time.time() - t0,
                           "examples_per_s": loop.seen / max(time.time() - t_train, 1e-9)}
                    if main:
                        emit("train", rec)
                    window, loop.window_n = {}, 0
                    bar.set_postfix({k: f"{v:.3g}" for k, v in means.items()} | {"sparsity": f"{pruner.current_sparsity:.3f}"}, refresh=False)
                    if run:
                        run.set_status("running", step=step, total_steps=total)
                elif run and now - last_beat >= HEARTBEAT_SECONDS:  # the step counter moves between records
                    last_beat = now
                    run.set_status("running", step=step, total_steps=total)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < total:
                    nonfinite.check(step, cfg.lr)  # never a resume state of NaN weights
                    run_eval(step)
                    student.train()
                    if run:
                        loop.step, loop.train_seconds = step, time.time() - t_train
                        loop.window = {k: float(v) for k, v in window.items()}
                        resume.save(run.path, model=raw_student, optimizer=optimizer, scheduler=scheduler,
                                    pruner=pruner, loop=loop, recipe=cfg.to_dict())
                if should_stop():
                    raise Cancelled(f"cancelled at step {step} of {total}")
            loop.epoch += 1
            loop.batch_in_epoch = 0
        bar.close()
        nonfinite.check(step, cfg.lr)
        train_seconds = time.time() - t_train
        pruner.finish()  # exact target sparsity
        emit_masks(total, "end")
        kasp_loss.remove()
        final, final_selection = run_eval(total)

        # --- save and report -----------------------------------------------------------------
        report: dict[str, Any] = {
            "task": task.name, "kind": cfg.kind, "method": cfg.method, "target_sparsity": cfg.sparsity,
            "metrics": final, "main_metric": task.main_metric, "steps": total, "epochs": total / steps_per_epoch,
            "train_examples": len(train_data), "dev_examples": len(dev_data),
            "sparsity": sparsity_summary(raw_student), "per_matrix_sparsity": sparsity_table(raw_student),
            "parameters": count_parameters(raw_student), "pruning_events": pruner.events,
            "train_seconds": train_seconds, "examples_per_s": loop.seen / max(train_seconds, 1e-9),
            "processes": accelerator.num_processes, "device": str(accelerator.device),
            "teacher": {"path": teacher_path, "metrics": teacher_report.get("metrics")} if teacher_path else None,
            "input_length": lengths,
        }
        if budget is not None:
            report["time_budget"] = {"minutes": cfg.time_budget, "steps": budget["steps"],
                                     "estimated_step_seconds": budget["step_seconds"],
                                     "estimated_eval_seconds": budget["eval_seconds"],
                                     "calibration_seconds": budget["calibration_seconds"]}
        if held_data is not None:
            report["selection_metrics"] = final_selection
            report["holdout_examples"] = len(held_data)
        if small_dense is not None:
            report["small_dense"] = small_dense.to_dict()
        if cache is not None:
            cache.close()
            report["teacher_cache"] = {"folder": str(cache.folder), "hits": cache.hits, "misses": cache.misses,
                                       "cached_examples": cache.cached_examples, "examples": len(train_data),
                                       "stored_bytes": cache.stored_bytes}
        accelerator.wait_for_everyone()  # a collective: every process must reach it
        if run and main:
            # checkpoint, report, status "done", and only then the resume state goes: a kill at any point
            # leaves a run that --resume continues (before the checkpoint), finishes (checkpoint and report
            # saved, kasp.training.resume.finish_complete), or a done run whose leftovers the next listing removes
            run.save_checkpoint(raw_student, tokenizer)
            report["checkpoint"] = str(run.checkpoint)
            report["wall_seconds"] = time.time() - t0
            run.write_report(report)
            write_model_card(run.checkpoint, report, cfg.to_dict(), run.config().get("provenance"))
            run.set_status("done", step=total, total_steps=total, finished=time.time(),
                           wall_seconds=report["wall_seconds"])
            finished = True
            resume.discard(run.path)
        else:
            report["wall_seconds"] = time.time() - t0
        return TrainResult(report, raw_student)
    except Cancelled as e:
        if run:
            run.set_status("cancelled", error=str(e), finished=time.time())
        raise
    except KaspError as e:
        if run:
            run.set_status("failed", error=str(e), finished=time.time())
        raise
    except BaseException as e:
        if run and finished:  # recorded as done: only deleting its resume state failed; the run stands
            print(f"kasp: warning: {run.path} is done, but its resume state could not be deleted ({e}); "
                  "the next `kasp runs` removes it", file=sys.stderr)
            return TrainResult(report, raw_student)
        if run:
            state = "cancelled" if isinstance(e, KeyboardInterrupt) else "failed"
            run.set_status(state, error=f"{type(e).__name__}: {e}" if state == "failed" else "interrupted",
                           finished=time.time())
        raise
