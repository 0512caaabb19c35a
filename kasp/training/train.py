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

:func:`train` reads top to bottom: set-up (models, data) -> plan the steps (T, a time budget) ->
prepare (optimizer, schedules, masks, loss, resume state) -> the loop (one
:func:`kasp.training.step.training_step` per batch) -> finish (report, checkpoint). What a run directory
records (status, progress, resume state, checkpoint, report) goes through the hooks of
:class:`RunCallbacks`, written by :class:`RunStoreCallbacks`; a run without a directory uses the
no-op hooks.
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
from kasp.spec.metrics import metric_value
from kasp.data.glue import (IndexDataset, LengthBucketSampler, collate, get_task, input_length, length_warning, load_holdout,
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
from kasp.ground.runs import RunDir, find_teacher, read_json
from kasp.training.provenance import run_provenance
from kasp.training.step import training_step
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
    if cfg.freeze_word_embeddings:  # shared with the starting model by a compact export (kasp/models/export.py)
        student.get_input_embeddings().weight.requires_grad_(False)
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


# --- the run store, as one more callback ---------------------------------------------------------------

class RunCallbacks:
    """What :func:`train` tells a run store, as hooks that do nothing here (the bookkeeping stays out of the
    trainer, as minGPT keeps its logging out of its loop); :class:`RunStoreCallbacks` writes a run directory.

    :func:`train` calls them in the main process only, in this order: :meth:`on_start`; :meth:`on_phase`
    and :meth:`on_recipe` while loading; :meth:`on_planned` once T is known; :meth:`story_recorder`;
    :meth:`on_train_start`; then, along the loop, :meth:`on_event`, :meth:`on_step` (a progress record),
    :meth:`on_heartbeat` (between records) and :meth:`on_eval` (an evaluation point before the end);
    :meth:`on_end` at the end, or :meth:`on_error` when the run stops with an exception.
    """

    def on_start(self, cfg: RunConfig, t0: float, resumed: bool) -> float:
        """The run begins, before loading. Returns the run's clock origin (seconds since the epoch): ``t0``,
        or earlier for a resumed run whose clock continues."""
        return t0

    def on_phase(self, text: str) -> None:
        """What the run is doing before its first step (loading, tokenising, timing a budget)."""

    def on_recipe(self, cfg: RunConfig, model_path: str, teacher_path: str | None, extra: dict[str, Any]) -> None:
        """The recipe as run, after loading and again once a time budget chose T; ``extra`` joins its provenance."""

    def on_planned(self, total: int, resumed: bool) -> None:
        """The run's step count T is known (before set-up and step 1)."""

    def story_recorder(self, cfg: RunConfig, pruner: MagnitudePruner) -> Any:
        """An event callback that records the masks (the weights' story), or None."""
        return None

    def on_train_start(self, step: int) -> None:
        """The loop starts at ``step`` (0, or a resume's), loading and set-up done."""

    def on_event(self, event: str, record: dict[str, Any]) -> None:
        """An event of the run (see the module's docstring), before the user's callbacks get it."""

    def on_step(self, step: int, total: int) -> None:
        """A progress record was written at ``step`` of ``total``."""

    def on_heartbeat(self, step: int, total: int) -> None:
        """:data:`HEARTBEAT_SECONDS` have passed since the last record or heartbeat."""

    def on_eval(self, step: int, save_state: Callable[[Path], None]) -> None:
        """An evaluation point before the end; ``save_state(folder)`` writes the resume state (:mod:`kasp.training.resume`)."""

    def on_end(self, report: dict[str, Any], model: nn.Module, tokenizer: Any, cfg: RunConfig, total: int) -> None:
        """The run has trained and evaluated; ``report`` is complete except for what the store adds."""

    def on_error(self, error: BaseException) -> None:
        """The run stops with ``error`` (raised again after this)."""


class RunStoreCallbacks(RunCallbacks):
    """The hooks of :class:`RunCallbacks` writing a run directory (:class:`kasp.ground.runs.RunDir`): config.json
    with the provenance, status.json (phase, step, heartbeat, the end state), progress.jsonl, the resume
    state at evaluation points, the weights' story, and at the end checkpoint, report and model card."""

    def __init__(self, run: RunDir):
        self.run = run
        self.t0 = time.time()

    def on_start(self, cfg: RunConfig, t0: float, resumed: bool) -> float:
        run = self.run
        if resumed:  # keep the provenance (the teacher a second resume needs) and the step reached
            run.set_status("running", pid=os.getpid(), error=None)
            # the clock continues from the resume point: progress "elapsed" and the report's wall time count
            # the time before the interruption too (not the steps after the last state, which run again)
            before = [r["elapsed"] for r in run.progress() if isinstance(r.get("elapsed"), (int, float))]
            if before:
                t0 -= before[-1]
        else:
            run.write_config(cfg.to_dict(), {"command": sys.argv})
            run.set_status("running", pid=os.getpid(), started=t0, step=0, error=None)
        self.t0 = t0
        return t0

    def on_phase(self, text: str) -> None:  # for the live panel
        self.run.set_status("running", phase=text)

    def on_recipe(self, cfg: RunConfig, model_path: str, teacher_path: str | None, extra: dict[str, Any]) -> None:
        if getattr(self, "_provenance", None) is None:  # built once: a time budget writes the recipe again with it
            self._provenance = run_provenance(cfg, model_path, teacher_path)
        self.run.write_config(cfg.to_dict(), self._provenance | extra)

    def on_planned(self, total: int, resumed: bool) -> None:  # the app knows T before step 1
        self.run.set_status("running", total_steps=total, **({} if resumed else {"step": 0}))

    def story_recorder(self, cfg: RunConfig, pruner: MagnitudePruner) -> Any:
        if pruner.target <= 0:
            return None
        from kasp.training.weights_story import STORY_FILE
        from kasp.training.story_recorder import StoryRecorder

        return StoryRecorder(self.run.path / STORY_FILE, StoryRecorder.stride(cfg.pruning_events))

    def on_train_start(self, step: int) -> None:  # the panel's measured rate counts from here
        self.run.set_status("running", phase="training", train_started=time.time(), train_step0=step)

    def on_event(self, event: str, record: dict[str, Any]) -> None:
        if event in ("train", "eval"):
            self.run.log({"type": event, **record})

    def on_step(self, step: int, total: int) -> None:
        self.run.set_status("running", step=step, total_steps=total)

    def on_heartbeat(self, step: int, total: int) -> None:  # the step counter moves between records
        self.run.set_status("running", step=step, total_steps=total)

    def on_eval(self, step: int, save_state: Callable[[Path], None]) -> None:
        save_state(self.run.path)

    def on_end(self, report: dict[str, Any], model: nn.Module, tokenizer: Any, cfg: RunConfig, total: int) -> None:
        # checkpoint, report, status "done", and only then the resume state goes: a kill at any point
        # leaves a run that --resume continues (before the checkpoint), finishes (checkpoint and report
        # saved, kasp.training.resume.finish_complete), or a done run whose leftovers the next listing removes
        from kasp.training import resume

        run = self.run
        run.save_checkpoint(model, tokenizer)
        report["checkpoint"] = str(run.checkpoint)
        report["wall_seconds"] = time.time() - self.t0
        run.write_report(report)
        write_model_card(run.checkpoint, report, cfg.to_dict(), run.config().get("provenance"))
        run.set_status("done", step=total, total_steps=total, finished=time.time(), wall_seconds=report["wall_seconds"])
        try:
            resume.discard(run.path)
        except BaseException as e:  # recorded as done: only deleting its resume state failed; the run stands
            print(f"kasp: warning: {run.path} is done, but its resume state could not be deleted ({e}); "
                  "the next `kasp runs` removes it", file=sys.stderr)

    def on_error(self, error: BaseException) -> None:
        if isinstance(error, (Cancelled, KaspError)):
            self.run.set_status("cancelled" if isinstance(error, Cancelled) else "failed", error=str(error),
                                finished=time.time())
            return
        state = "cancelled" if isinstance(error, KeyboardInterrupt) else "failed"
        self.run.set_status(state, error=f"{type(error).__name__}: {error}" if state == "failed" else "interrupted",
                            finished=time.time())


@dataclass
class BestPoint:
    """The evaluation point of a ``--select-best`` fine-tuning run with the best metric on the held-out
    selection slice so far: its step, its dev and selection metrics, and a CPU copy of the student's weights.

    Early stopping with the choice made on a slice held out from training, never on dev (dev stays the
    reported number). Ties keep the earlier point (fewer steps for the same score).
    """

    step: int
    metrics: dict[str, float]
    selection: dict[str, float]
    state: dict[str, torch.Tensor]

    @staticmethod
    def offer(best: "BestPoint | None", step: int, metrics: dict[str, float], selection: dict[str, float] | None,
              model: nn.Module, main_metric: str) -> "BestPoint | None":
        """``best``, or a new point for ``step`` when its selection metric (``main_metric``) is higher; a point
        whose selection metric is undefined (NaN, None) never wins."""
        value = metric_value(selection, main_metric)
        if value is None or (best is not None and value <= metric_value(best.selection, main_metric)):
            return best
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return BestPoint(step, dict(metrics), dict(selection), state)


@dataclass
class TrainState:
    """One run between its stages (:func:`train`): what each stage sets, the next reads.

    ``cfg`` is the recipe as run (with T in ``max_steps`` once a time budget chose it); ``t0`` the run's
    clock origin (seconds since the epoch); ``events`` the event callbacks (the user's, then the
    weights' story); ``loop`` the loop's counters (:class:`kasp.training.resume.LoopState`). ``student`` is the
    model as trained (wrapped by the accelerator after :func:`_prepare`), ``raw_student`` the module itself.
    """

    cfg: RunConfig
    task: Any
    accelerator: Any
    hooks: RunCallbacks
    events: list[Callback]
    resume_from: str | Path | None
    t0: float
    # _setup: models and data
    student: Any = None
    teacher: nn.Module | None = None
    tokenizer: Any = None
    model_path: str = ""
    teacher_path: str | None = None
    teacher_report: dict[str, Any] = dataclasses.field(default_factory=dict)
    small_dense: Any = None
    pad_id: int = 0
    train_data: Any = None
    dev_data: Any = None
    held_data: Any = None
    lengths: Any = None
    steps_per_epoch: int = 1
    sampler: Any = None
    batches: Any = None
    loader: Any = None
    # _plan_steps
    budget: dict[str, Any] | None = None
    total: int = 0
    # _prepare
    raw_student: Any = None
    optimizer: Any = None
    scheduler: Any = None
    pruner: Any = None
    keeper: MaskKeeper | None = None
    kasp_loss: Any = None
    cache: Any = None
    loop: Any = None
    best: "BestPoint | None" = None  # --select-best: the evaluation point kept so far
    restore_rng: Callable[[], None] | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def emit(self, event: str, record: dict[str, Any]) -> None:
        """Hand an event to the run store, then to every event callback."""
        self.hooks.on_event(event, record)
        for cb in self.events:
            cb(event, record)


def train(cfg: RunConfig, run: RunDir | None = None, callbacks: Iterable[Callback] = (),
          should_stop: Callable[[], bool] = lambda: False, store: str | Path | None = None,
          progress_bar: bool = True, resume_from: str | Path | None = None) -> TrainResult:
    """Run one fine-tune or prune run end to end; return its report and final (mask-folded) model.

    Writes config, status, progress log, checkpoint and report into ``run`` when given
    (:class:`RunStoreCallbacks`), and at every evaluation point the resume state (:mod:`kasp.training.resume`)
    that ``resume_from`` (a state directory, :func:`kasp.training.resume.latest`) continues from: the resumed run
    ends with the weights an uninterrupted run would have.

    The run ends checkpoint, report, status "done", and only then deletes its resume state, so a kill
    at any point leaves a run that ``--resume`` continues or finishes (:func:`kasp.training.resume.finish_complete`).

    Raises:
        KaspError: bad recipe or inputs (no teacher, unsupported model, missing data, a resume
            state that does not fit), or a training loss that became NaN or infinite (checked at
            every log and evaluation point; the run stops there, status "failed", no checkpoint).
        Cancelled: when ``should_stop()`` became true; the status is "cancelled", no checkpoint.
    """
    from accelerate import Accelerator

    t0 = time.time()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    # split_batches: --batch-size is the global batch, split across processes, so N processes
    # follow the same optimisation path as one
    accelerator = Accelerator(split_batches=True, cpu=_cpu_only())
    hooks = RunStoreCallbacks(run) if run and accelerator.is_main_process else RunCallbacks()
    task = get_task(cfg.task)
    t0 = hooks.on_start(cfg, t0, resumed=bool(resume_from))
    st = TrainState(cfg, task, accelerator, hooks, list(callbacks), resume_from, t0)
    try:
        _setup(st, store)  # the student, the teacher, the data
        _plan_steps(st)  # T: the recipe's, or the one a time budget affords
        _prepare(st)  # optimizer, schedules, masks, the loss, a resume state
        train_seconds = _loop(st, should_stop, progress_bar)
        return _finish(st, train_seconds)
    except BaseException as e:
        hooks.on_error(e)
        raise


def _setup(st: TrainState, store: str | Path | None) -> None:
    """Load the student and the teacher (:func:`_load_models`), record the recipe with its provenance, then
    read and tokenise the data (:func:`_load_data`)."""
    cfg = st.cfg
    st.hooks.on_phase("loading the pre-trained model" + (" and the fine-tuned teacher" if cfg.kind == "prune" else ""))
    (st.student, st.teacher, st.tokenizer, st.model_path, st.teacher_path, st.teacher_report,
     st.small_dense) = _load_models(cfg, st.task, store)
    st.hooks.on_recipe(cfg, st.model_path, st.teacher_path,
                       {"resumed_from": str(st.resume_from) if st.resume_from else None})
    st.pad_id = st.tokenizer.pad_token_id or 0
    _load_data(st)


def _load_data(st: TrainState) -> None:
    """The run's splits (training data augmented if the recipe says so, dev, the held-out selection slice or
    None), the input-length note, and the length-bucketed, resumable batches of the training data."""
    cfg, tokenizer = st.cfg, st.tokenizer
    st.hooks.on_phase(f"reading and tokenising the {task_name(st.task.name)} training and dev data")
    train_data, st.dev_data = load_task_data(cfg, tokenizer)
    st.held_data = load_holdout(cfg, tokenizer)  # the selection slice, or None
    st.lengths = input_length(tokenizer, cfg.max_seq_length)  # said with every score (report, summary line)
    if length_warning(st.lengths) and st.main:
        print(f"kasp: {length_warning(st.lengths)}", file=sys.stderr, flush=True)
    st.steps_per_epoch = -(-len(train_data) // cfg.batch_size)  # of the task's own examples
    if cfg.augment:
        from kasp.training.augment import augmented_examples

        with st.accelerator.main_process_first():  # the main process builds the cache, the others read it
            train_data = augmented_examples(cfg, train_data, tokenizer, st.model_path)
    st.train_data, pad_id = train_data, st.pad_id
    st.sampler = LengthBucketSampler(train_data.lengths, cfg.batch_size, seed=cfg.seed, bucket=cfg.bucket_batches)
    st.batches = _ResumableBatches(st.sampler)
    st.loader = torch.utils.data.DataLoader(IndexDataset(len(train_data)), batch_sampler=st.batches,
                                            collate_fn=lambda idx: collate(train_data, idx, pad_id) | {"index": torch.tensor(idx)})


def _plan_steps(st: TrainState) -> None:
    """The run's step count T: ``max_steps``; else, with a time budget, the steps it affords (timed here,
    :func:`_budget_plan`, and then written into the recipe as ``max_steps``); else ``epochs`` passes over
    the task's examples. The run store learns T before step 1."""
    cfg = st.cfg
    if cfg.time_budget and not cfg.max_steps:  # choose T from the measured step time (kasp/training/budget.py)
        st.budget = _budget_plan(st)
        st.cfg = cfg = dataclasses.replace(cfg, max_steps=st.budget["steps"])
        # the recipe as run: a resume continues with this T
        st.hooks.on_recipe(cfg, st.model_path, st.teacher_path, {"resumed_from": None, "time_budget": st.budget})
    # --epochs counts passes over the task's examples, so --augment changes what a run sees, not its length
    st.total = cfg.max_steps or max(1, math.ceil(cfg.epochs * st.steps_per_epoch))
    st.hooks.on_planned(st.total, bool(st.resume_from))


def _budget_plan(st: TrainState) -> dict[str, Any]:
    """The time budget's plan (:func:`kasp.training.budget.steps_for_budget`), timed in the main process and handed to
    every process, so that all train the same T.

    Raises:
        KaspError: in every process, when the budget leaves no time to train.
    """
    from accelerate.utils import broadcast_object_list

    from kasp.training.budget import steps_for_budget

    cfg, accelerator = st.cfg, st.accelerator
    plan: list[Any] = [None]
    st.hooks.on_phase(f"timing a few steps to fit the {cfg.time_budget:g}-minute budget")
    if st.main:
        try:
            plan[0] = steps_for_budget(cfg, st.student, st.teacher, st.train_data, st.dev_data, st.pad_id,
                                       time.time() - st.t0, st.task.is_regression, lambda m: _optimizer(m, cfg),
                                       device=accelerator.device, processes=accelerator.num_processes)
        except KaspError as e:
            plan[0] = {"error": str(e)}
    if accelerator.num_processes > 1:
        broadcast_object_list(plan)  # every process trains the same T, or stops with the same error
    if "error" in plan[0]:
        raise KaspError(plan[0]["error"])
    return plan[0]


def _prepare(st: TrainState) -> None:
    """Optimizer and learning-rate schedule over T, device placement, the pruner on its schedule and the
    keep-mask, the weights' story, the loss (:meth:`kasp.core.distill.KaspLoss.from_config`) with its teacher
    cache, and, for a resumed run, the saved weights, optimizer, schedules and loop counters."""
    from kasp.training import resume

    cfg, accelerator, total = st.cfg, st.accelerator, st.total
    optimizer = _optimizer(st.student, cfg)
    scheduler = _lr_scheduler(optimizer, cfg, total)
    st.student, st.optimizer, st.loader, st.scheduler = accelerator.prepare(st.student, optimizer, st.loader, scheduler)
    st.raw_student = accelerator.unwrap_model(st.student)
    if st.teacher is not None:
        st.teacher.to(accelerator.device).eval()
        for p in st.teacher.parameters():
            p.requires_grad_(False)
    st.pruner = MagnitudePruner(st.raw_student, cfg.pruning_target(), total, cfg.pruning_events, cfg.scope,
                                initial=cfg.initial_sparsity, ramp=ramp_steps(total, cfg.recovery))
    st.keeper = _keep_mask_setup(cfg, st.raw_student, st.main)  # before a resume loads weights: the start's zeros
    recorder = st.hooks.story_recorder(cfg, st.pruner)
    if recorder is not None:
        st.events.append(recorder)
    st.kasp_loss = KaspLoss.from_config(cfg, st.raw_student, st.teacher, regression=st.task.is_regression)
    st.cache = _teacher_cache(cfg, st.kasp_loss, st.teacher_path, st.task, st.train_data, total, len(st.batches),
                              accelerator)
    st.loop = resume.LoopState()
    if st.resume_from:
        st.loop, st.restore_rng = resume.load(st.resume_from, model=st.raw_student, optimizer=st.optimizer,
                                              scheduler=st.scheduler, pruner=st.pruner)
        st.batches.skip = st.loop.batch_in_epoch
        if recorder is not None:
            # the story counts the mask updates it saw as "prune" records: a first pruning step (before the start
            # snapshot) is not one, so that the resumed run's stride stays on the uninterrupted run's events
            recorder.resume(st.loop.step, st.pruner.events - int(st.pruner.has_first_step))


def _loop(st: TrainState, should_stop: Callable[[], bool], progress_bar: bool) -> float:
    """Train from the loop's step (0, or a resume's) to T, one :func:`kasp.training.step.training_step` a batch, with
    the mask updates of the schedule before a step and the bookkeeping of :class:`_StepLog` after it.

    Returns:
        the seconds spent training (a resumed run's earlier ones included).

    Raises:
        KaspError: a loss became NaN or infinite (found at a log or evaluation point, or at the end).
        Cancelled: ``should_stop()`` became true.
    """
    cfg, loop = st.cfg, st.loop
    st.student.train()
    if not st.resume_from:
        # a first pruning step (initial_sparsity) comes before the start snapshot: the student starts training
        # pruned, and the weights' story has one record per step (the Weights page steps by step number)
        if st.pruner.first_step():
            st.emit("prune", {"step": 0, "sparsity": st.pruner.current_sparsity})
        _emit_masks(st, 0, "start")
    log = _StepLog(st, progress_bar)
    step = loop.step
    st.hooks.on_train_start(step)  # the panel's measured rate counts from here (loading and set-up excluded)
    restore_rng = st.restore_rng
    while step < st.total:
        st.sampler.set_epoch(loop.epoch)
        if hasattr(st.loader, "set_epoch"):  # accelerate's loader counts epochs too
            st.loader.set_epoch(loop.epoch)
        for batch in st.loader:
            if step >= st.total:
                break
            if restore_rng:  # after the loader drew its seed: dropout continues where it stopped
                restore_rng()
                restore_rng = None
            if st.pruner.step(step):
                st.emit("prune", {"step": step, "sparsity": st.pruner.current_sparsity})
                _emit_masks(st, step, "prune")
            loss, terms = training_step(st.student, batch, st.kasp_loss, st.optimizer, scheduler=st.scheduler,
                                        pruner=st.pruner, keeper=st.keeper, max_grad_norm=cfg.max_grad_norm,
                                        accelerator=st.accelerator)
            step += 1
            log.count(step, loss, terms, batch)
            if should_stop():
                raise Cancelled(f"cancelled at step {step} of {st.total}")
        loop.epoch += 1
        loop.batch_in_epoch = 0
    return log.close(step)


class _StepLog:
    """The loop's bookkeeping after each step: the loss terms summed on the device since the last progress
    record, the first non-finite loss (:class:`_NonFinite`), the progress bar, and the clock of progress
    records, heartbeats and evaluation points (with the resume state)."""

    def __init__(self, st: TrainState, progress_bar: bool):
        from tqdm.auto import tqdm

        cfg, loop = st.cfg, st.loop
        self.st = st
        self.bar = tqdm(total=st.total, initial=loop.step, disable=not (progress_bar and st.main), dynamic_ncols=True,
                        mininterval=1.0, desc=f"{cfg.kind} {st.task.name}" + (f" {cfg.method} s={cfg.sparsity:g}" if cfg.kind == "prune" else ""))
        self.window = {k: torch.tensor(v) for k, v in loop.window.items()}  # loss sums since the last log point
        self.t_train = time.time() - loop.train_seconds
        self.last_beat = self.last_record = time.time()
        self.by_time = st.accelerator.num_processes == 1  # time-triggered records need every process to agree
        # the first step whose loss was NaN or infinite (total + 1: none), kept on the device (no host read per
        # step) and read at every log and evaluation point: the run stops there, before a state or checkpoint
        self.nonfinite = _NonFinite(st.total, loop.step, st.accelerator)

    def count(self, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor],
              batch: dict[str, torch.Tensor]) -> None:
        """After step ``step``: count its loss and examples, then write a progress record (every ``log_every``
        steps, at step 1 and T, or after :data:`LOG_SECONDS`) or a heartbeat, and evaluate at an evaluation
        point (every ``eval_every`` steps before T)."""
        st, cfg, loop = self.st, self.st.cfg, self.st.loop
        self.nonfinite.update(loss)
        loop.batch_in_epoch += 1
        loop.seen += batch["input_ids"].shape[0] * st.accelerator.num_processes
        terms["loss"] = loss
        for k, v in terms.items():  # summed as tensors: no host read per step
            v = v.detach().float()
            self.window[k] = self.window[k] + v if k in self.window else v
        loop.window_n += 1
        self.bar.update(1)
        now = time.time()
        if step % cfg.log_every == 0 or step == st.total or step == 1 or \
                (self.by_time and now - self.last_record >= LOG_SECONDS):  # step 1: the app shows progress at once
            self.last_record = self.last_beat = now
            self._record(step)
        elif now - self.last_beat >= HEARTBEAT_SECONDS:  # the step counter moves between records
            self.last_beat = now
            st.hooks.on_heartbeat(step, st.total)
        if cfg.eval_every and step % cfg.eval_every == 0 and step < st.total:
            self.nonfinite.check(step, cfg.lr)  # never a resume state of NaN weights
            metrics, selection = _evaluate(st, step)
            if cfg.select_best:
                st.best = BestPoint.offer(st.best, step, metrics, selection, st.raw_student, st.task.main_metric)
            st.student.train()
            st.hooks.on_eval(step, lambda folder: self._save_state(folder, step))

    def _record(self, step: int) -> None:
        """A progress record ("train" event): the means of the loss terms since the last one, sparsity, lr, speed."""
        st, cfg, loop = self.st, self.st.cfg, self.st.loop
        self.nonfinite.check(step, cfg.lr)
        means = _read_window(self.window, loop.window_n, st.accelerator)
        rec = {"step": step, "total_steps": st.total, "epoch": loop.epoch + 1, **means,
               "sparsity": st.pruner.current_sparsity,
               "scheduled_sparsity": st.pruner.scheduled(step) if cfg.pruning_target() else 0.0,
               "lr": st.scheduler.get_last_lr()[0], "elapsed": time.time() - st.t0,
               "examples_per_s": loop.seen / max(time.time() - self.t_train, 1e-9)}
        if st.main:
            st.emit("train", rec)
        self.window, loop.window_n = {}, 0
        postfix = {k: f"{v:.3g}" for k, v in means.items()} | {"sparsity": f"{st.pruner.current_sparsity:.3f}"}
        self.bar.set_postfix(postfix, refresh=False)
        st.hooks.on_step(step, st.total)

    def _save_state(self, folder: Path, step: int) -> None:
        """The resume state after ``step`` (:func:`kasp.training.resume.save`) in ``folder``."""
        from kasp.training import resume

        st, loop = self.st, self.st.loop
        loop.step, loop.train_seconds = step, time.time() - self.t_train
        loop.window = {k: float(v) for k, v in self.window.items()}
        resume.save(folder, model=st.raw_student, optimizer=st.optimizer, scheduler=st.scheduler,
                    pruner=st.pruner, loop=loop, recipe=st.cfg.to_dict())

    def close(self, step: int) -> float:
        """Close the bar, check the last steps' losses; returns the seconds spent training.

        Raises:
            KaspError: a loss since the last check was NaN or infinite.
        """
        self.bar.close()
        self.nonfinite.check(step, self.st.cfg.lr)
        return time.time() - self.t_train


def _evaluate(st: TrainState, step: int) -> tuple[dict[str, float], dict[str, float] | None]:
    """(dev metrics, metrics on the held-out selection slice or None) of the student now; an "eval" event."""
    st.kasp_loss.set_capture(False)  # plain sdpa attention while evaluating
    m = evaluate_sharded(st.raw_student, st.dev_data, st.task, st.accelerator, st.cfg.eval_batch_size, st.pad_id)
    sel = (evaluate_sharded(st.raw_student, st.held_data, st.task, st.accelerator, st.cfg.eval_batch_size, st.pad_id)
           if st.held_data is not None else None)
    st.kasp_loss.set_capture(True)
    if st.main:
        st.emit("eval", {"step": step, "metrics": m, "sparsity": st.pruner.current_sparsity,
                         "elapsed": time.time() - st.t0} | ({"selection_metrics": sel} if sel is not None else {}))
    return m, sel


def _emit_masks(st: TrainState, step: int, phase: str) -> None:
    """A "masks" event (prune runs, main process): the weights' story records it."""
    if st.main and st.pruner.target > 0:
        st.emit("masks", {"step": step, "phase": phase, "sparsity": st.pruner.current_sparsity,
                          "linears": st.pruner.linears, "masks": st.pruner.masks})


def _finish(st: TrainState, train_seconds: float) -> TrainResult:
    """The exact target sparsity, the final evaluation and the report; then the run store's end
    (:meth:`RunStoreCallbacks.on_end`: checkpoint, report, model card, status "done", resume state deleted)."""
    st.pruner.finish()  # exact target sparsity
    _emit_masks(st, st.total, "end")
    st.kasp_loss.remove()
    final, final_selection = _evaluate(st, st.total)
    if st.cfg.select_best:
        final, final_selection = _select_best(st, final, final_selection)
    report = _report(st, final, final_selection, train_seconds)
    st.accelerator.wait_for_everyone()  # a collective: every process must reach it
    st.hooks.on_end(report, st.raw_student, st.tokenizer, st.cfg, st.total)
    report.setdefault("wall_seconds", time.time() - st.t0)
    return TrainResult(report, st.raw_student)


def _select_best(st: TrainState, final: dict[str, float],
                 final_selection: dict[str, float] | None) -> tuple[dict[str, float], dict[str, float] | None]:
    """``--select-best``: offer the last step too, put the best point's weights into the student (the checkpoint
    saved next), and return that point's dev and selection metrics (measured there, on those same weights)."""
    st.best = BestPoint.offer(st.best, st.total, final, final_selection, st.raw_student, st.task.main_metric)
    if st.best is None:  # no point had a defined selection metric: the last weights stay
        return final, final_selection
    if st.best.step != st.total:
        st.raw_student.load_state_dict(st.best.state)
        if st.main:
            print(f"kasp: --select-best kept step {st.best.step} of {st.total} (best {st.task.main_metric} on the "
                  f"{len(st.held_data)} held-out examples)", file=sys.stderr, flush=True)
    return st.best.metrics, st.best.selection


def _report(st: TrainState, final: dict[str, float], final_selection: dict[str, float] | None,
            train_seconds: float) -> dict[str, Any]:
    """The run's report (report.json without the store's checkpoint path and wall time); closes the teacher cache."""
    cfg, task, raw, loop, total = st.cfg, st.task, st.raw_student, st.loop, st.total
    report: dict[str, Any] = {
        "task": task.name, "kind": cfg.kind, "method": cfg.method, "target_sparsity": cfg.sparsity,
        "metrics": final, "main_metric": task.main_metric, "steps": total, "epochs": total / st.steps_per_epoch,
        "train_examples": len(st.train_data), "dev_examples": len(st.dev_data),
        "sparsity": sparsity_summary(raw), "per_matrix_sparsity": sparsity_table(raw),
        "parameters": count_parameters(raw), "pruning_events": st.pruner.events,
        "train_seconds": train_seconds, "examples_per_s": loop.seen / max(train_seconds, 1e-9),
        "processes": st.accelerator.num_processes, "device": str(st.accelerator.device),
        "teacher": {"path": st.teacher_path, "metrics": st.teacher_report.get("metrics")} if st.teacher_path else None,
        "input_length": st.lengths,
    }
    if st.budget is not None:
        report["time_budget"] = {"minutes": cfg.time_budget, "steps": st.budget["steps"],
                                 "estimated_step_seconds": st.budget["step_seconds"],
                                 "estimated_eval_seconds": st.budget["eval_seconds"],
                                 "calibration_seconds": st.budget["calibration_seconds"]}
    if st.held_data is not None:
        report["selection_metrics"] = final_selection
        report["holdout_examples"] = len(st.held_data)
    if cfg.select_best:
        report["selected"] = ({"step": st.best.step, "epoch": st.best.step / st.steps_per_epoch, "of_steps": total}
                              if st.best is not None else None)
    if st.small_dense is not None:
        report["small_dense"] = st.small_dense.to_dict()
    if st.cache is not None:
        st.cache.close()
        report["teacher_cache"] = {"folder": str(st.cache.folder), "hits": st.cache.hits, "misses": st.cache.misses,
                                   "cached_examples": st.cache.cached_examples, "examples": len(st.train_data),
                                   "stored_bytes": st.cache.stored_bytes}
    return report
