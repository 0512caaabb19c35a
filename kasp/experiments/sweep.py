"""``kasp sweep``: accuracy against sparsity for one task, resumable, into one compact results file.

A sweep reuses (or trains) the task's dense teacher, then runs KASP and the magnitude baseline at a
list of sparsities and the small-dense baseline (:mod:`kasp.core.small_dense`) at the sizes those
sparsities leave non-zero, for one or more seeds. After every finished run it rewrites the results
file atomically (``kasp.ground.runs.atomic_write_json``): metric per run, per-matrix sparsity, a thinned
progress history, a retention summary (:mod:`kasp.analysis.retention`), the full recipe, the machine and the
wall time; never weights.

Resuming: started again with the same command, a sweep skips every run whose entry is in the
results file with the same recipe and teacher, recovers a run that finished but was not yet
recorded from its run directory, and continues the run that was interrupted from its last
evaluation point (:mod:`kasp.training.resume`; from the start if it stopped before one). A recipe that
changed (new step budget, new default recipe, another teacher) makes its runs run again.

Each run's directory lives in ``<runs-dir>/sweeps/<task>/`` (out of the app's run list: the
results file is what the app reads); its checkpoint is deleted once recorded unless
``--keep-checkpoints``.

One sweep per task and store at a time: a sweep holds ``<runs-dir>/sweeps/.sweep-<task>.lock``
(``filelock``, released when the process ends, however it ends) while it runs, and a second one of
the same task and store stops at once, naming the holder (:func:`sweep_lock`). Its variants
(``--augment``, ``--set``) share the lock: they share the task's teacher and run store.

Runs at once (``--jobs N``): the sweep's process keeps the lock, the results file and the retention
summaries; up to N runs train at the same time, each in a process of its own (``spawn``) with
``--num-threads`` threads (default: the usable CPUs divided by N). Measured on 2 cores: two 1-thread
runs do 1.30x the steps of one 2-thread run (``bench/teacher_cache.md``). A run's result does not
depend on N, only on its recipe (its seed, its thread count); a stop reaches every run in progress,
and each resumes from its last evaluation point.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from kasp.ground.errors import KaspError
from kasp.spec.methods import SWEPT_METHODS, shrinks_student
from kasp.experiments.results import DEFAULT_SPARSITIES, FORMAT, METHODS, SCHEMA_VERSION, PlannedRun, load_results, plan_runs


#: Per-task CPU budgets of a sweep (MiniLM-L6 on 2 cores): teacher fine-tuning and pruned / small-dense runs, in
#: steps (SST-2, whose 67k sentences make an epoch about 2,100 steps: the teacher 1,400, the runs 2,000, the
#: baselines' default; README: about 13 min a prune run) or in epochs (the small tasks since 2026-12-03, issue 29:
#: 5 epochs a run and 5 for the teacher, the CLI's defaults; at 1 to 2 epochs, the budgets until then, no method
#: learnt MRPC, RTE, STS-B or CoLA at 90 %), and the length limit. ``--max-steps`` / ``--epochs`` replace them.
TASK_BUDGETS: dict[str, dict[str, float | int]] = {
    "sst2": {"teacher_steps": 1400, "max_steps": 2000, "max_seq_length": 64},
    "mrpc": {"teacher_epochs": 5.0, "epochs": 5.0, "max_seq_length": 128},
    "rte": {"teacher_epochs": 5.0, "epochs": 5.0, "max_seq_length": 128},
    "stsb": {"teacher_epochs": 5.0, "epochs": 5.0, "max_seq_length": 128},
    "cola": {"teacher_epochs": 5.0, "epochs": 5.0, "max_seq_length": 64},
}
#: dev evaluations per run (the progress history's metric points)
EVALS_PER_RUN = 4
#: train records kept per run in the results file (evenly spaced, last one always kept)
HISTORY_POINTS = 60


def budget_for(task: str, max_steps: int | None = None, teacher_steps: int | None = None,
               max_seq_length: int | None = None) -> dict[str, int | None]:
    """The step budgets and length limit of a task's sweep: :data:`TASK_BUDGETS`' steps and length, overridden where
    given (a task whose budget is in epochs has no steps here: :meth:`SweepOptions.budget` converts them)."""
    t = TASK_BUDGETS.get(task, {})
    b = {k: t.get(k) for k in ("teacher_steps", "max_steps", "max_seq_length")}
    for k, v in (("max_steps", max_steps), ("teacher_steps", teacher_steps), ("max_seq_length", max_seq_length)):
        if v is not None:
            b[k] = v
    return b


def steps_for_epochs(task: str, epochs: float, batch_size: int | None = None, holdout: int = 0,
                     max_train_samples: int | None = None) -> int:
    """Optimizer steps of ``epochs`` passes over a task's training examples, as a run counts them
    (:func:`kasp.training.train._plan_steps`: ceil(epochs x ceil(examples / batch))).

    The examples are the shipped training split less the held-out slice (``holdout``), at most
    ``max_train_samples``; ``batch_size`` defaults to the recipe's (32).

    Raises:
        KaspError: ``epochs`` not above 0, an unknown task or an unreadable split, or a slice that leaves
            no example.
    """
    from kasp.data.files import load_split
    from kasp.spec.config import RunConfig

    if not isinstance(epochs, (int, float)) or isinstance(epochs, bool) or not epochs > 0 or epochs != epochs:
        raise KaspError(f"--epochs {epochs!r}: give the passes over the training set, above 0 (e.g. 5 or 12)")
    n = len(load_split(task, "train")) - (holdout or 0)
    if n <= 0:
        raise KaspError(f"--holdout {holdout} leaves no {task} training example for --epochs")
    if max_train_samples:
        n = min(n, max_train_samples)
    batch = batch_size or RunConfig.__dataclass_fields__["batch_size"].default
    return max(1, math.ceil(epochs * -(-n // batch)))


# --- helpers ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the sweep ran on: CPU model and count, memory, torch threads, versions, platform (the versions
    and platform as a run's provenance writes them, :func:`kasp.training.provenance.versions`)."""
    import torch

    from kasp.training.provenance import versions

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # psutil missing or unreadable /proc
        mem = None
    v = versions()
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": mem, "torch_threads": v["threads"],
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            **{k: v[k] for k in ("platform", "python", "torch", "transformers", "kasp")}}


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_round(x) for x in v]
    return v


def thin_progress(records: list[dict[str, Any]], points: int = HISTORY_POINTS) -> dict[str, list[dict[str, Any]]]:
    """A compact progress history: at most ``points`` evenly spaced train records (the last always kept)
    and every eval record, floats to 6 significant digits."""
    train = [r for r in records if r.get("type") == "train"]
    if len(train) > points:
        idx = sorted({round(i * (len(train) - 1) / (points - 1)) for i in range(points)})
        train = [train[i] for i in idx]
    keep = ("step", "loss", "attention", "hidden", "prediction", "task", "sparsity", "lr", "elapsed")
    evals = [{"step": r["step"], "sparsity": r.get("sparsity"), "metrics": r.get("metrics"), "elapsed": r.get("elapsed")}
             for r in records if r.get("type") == "eval"]
    return _round({"train": [{k: r[k] for k in keep if k in r} for r in train], "eval": evals})


def _comparable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe without what may differ between machines for the same run (the teacher's path, threads)
    and without unset (None) fields or fields at their :class:`~kasp.spec.config.RunConfig` default, so that a
    recipe field added to KASP later (``freeze_word_embeddings=False``, say) does not make the runs recorded
    before it look outdated and run again. A changed default still does: the old runs hold the old value."""
    from kasp.spec.config import field_defaults

    defaults = field_defaults()
    return {k: v for k, v in recipe.items()
            if k not in ("teacher", "num_threads") and v is not None and not (k in defaults and defaults[k] == v)}


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


# --- running ------------------------------------------------------------------------------------
@dataclass
class SweepOptions:
    """Everything a sweep needs; the CLI fills it from its flags (``kasp sweep --help``)."""

    task: str
    model: str = "default"
    sparsities: tuple[float, ...] = DEFAULT_SPARSITIES
    small_dense_sparsities: tuple[float, ...] | None = None
    multi_seed_sparsities: tuple[float, ...] | None = None
    methods: tuple[str, ...] = SWEPT_METHODS
    seeds: tuple[int, ...] = (42,)
    max_steps: int | None = None
    teacher_steps: int | None = None
    max_seq_length: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    teacher: str | None = None
    runs_dir: str | None = None
    results: str | None = None
    keep_checkpoints: bool = False
    retention_samples: int = 256
    num_threads: int | None = None
    augment: int = 0
    augment_source: str = "words"
    overrides: tuple[tuple[str, Any], ...] = ()
    jobs: int = 1
    epochs: float | None = None
    teacher_epochs: float | None = None

    @property
    def variant(self) -> str:
        """``<task>``; ``-augment-<source><N>`` added for a sweep with augmented training data and
        ``-<field><value>`` for each recipe override (``--set``): its own run folder and default
        results file, so that it never touches the plain sweep's runs."""
        name = f"{self.task}-augment-{self.augment_source}{self.augment}" if self.augment else self.task
        return name + "".join(f"-{k}{v}" for k, v in self.overrides)

    def store(self) -> Path:
        from kasp.ground.runs import runs_dir

        return Path(self.runs_dir) if self.runs_dir else runs_dir()

    def results_path(self) -> Path:
        return Path(self.results) if self.results else self.store() / "sweeps" / f"{self.variant}.json"

    def sweep_dir(self) -> Path:
        """The runs' folder, ``<store>/sweeps/<name of the results file>``: two sweeps with different
        results files (other budgets, other settings) never share run directories."""
        return self.store() / "sweeps" / self.results_path().stem

    def budget(self) -> dict[str, int | None]:
        """Step budgets and length limit: :data:`TASK_BUDGETS` (its epochs converted to steps), replaced by
        ``max_steps`` / ``teacher_steps``, or by ``epochs`` / ``teacher_epochs`` converted to steps (:func:`steps_for_epochs`; a run's slice
        ``--set holdout=N`` and ``--set batch_size=N`` count, the teacher trains on the whole split). With
        epochs, the result also has ``epochs`` / ``teacher_epochs``.

        Raises:
            KaspError: both steps and epochs given for the runs or for the teacher, or bad epochs.
        """
        ov = dict(self.overrides)
        steps, t_steps, extra = self.max_steps, self.teacher_steps, {}
        if self.epochs is not None and self.max_steps is not None:
            raise KaspError("give --max-steps or --epochs, not both")
        if self.teacher_epochs is not None and self.teacher_steps is not None:
            raise KaspError("give --teacher-steps or --teacher-epochs, not both")
        task_budget = TASK_BUDGETS.get(self.task, {})
        epochs = self.epochs if self.epochs is not None else (task_budget.get("epochs") if steps is None else None)
        t_epochs = (self.teacher_epochs if self.teacher_epochs is not None
                    else (task_budget.get("teacher_epochs") if t_steps is None else None))
        if epochs is not None:
            steps = steps_for_epochs(self.task, epochs, ov.get("batch_size"), int(ov.get("holdout") or 0),
                                     self.max_train_samples)
            extra["epochs"] = epochs
        if t_epochs is not None:
            t_steps = steps_for_epochs(self.task, t_epochs, None, 0, self.max_train_samples)
            extra["teacher_epochs"] = t_epochs
        return budget_for(self.task, steps, t_steps, self.max_seq_length) | extra

    def plan(self, model_config: Any = None) -> list[PlannedRun]:
        """The planned runs. With the pre-trained model's config, a small-dense run whose shape equals
        that of a lower sparsity's (below one layer's attention weights every size is the smallest
        student, e.g. 95 % and 97 % on MiniLM-L6) is dropped: it would be the same run again."""
        plan = plan_runs(self.sparsities, self.methods, self.seeds, self.small_dense_sparsities,
                         self.multi_seed_sparsities)
        if model_config is None:
            return plan
        from kasp.core.small_dense import size_for_sparsity

        seen: dict[tuple[int, int], float] = {}
        out = []
        for r in plan:
            if shrinks_student(r.method):
                z = size_for_sparsity(model_config, r.sparsity)
                shape = (z.layers, z.ffn_width)
                if seen.setdefault(shape, r.sparsity) != r.sparsity:
                    continue
            out.append(r)
        return out

    def model_config(self):
        """The transformers config of the pre-trained model (for small-dense sizes)."""
        from kasp.models.modeling import load_config, resolve_model

        return load_config(resolve_model(self.model))

    def run_config(self, run: PlannedRun, teacher_ckpt: str):
        """The :class:`kasp.spec.config.RunConfig` of one planned run."""
        from kasp.spec.config import make_config

        b = self.budget()
        steps = b["max_steps"]
        return make_config("prune", run.method, self.task, sparsity=run.sparsity, seed=run.seed, model=self.model,
                           teacher=teacher_ckpt, max_steps=steps, max_seq_length=b["max_seq_length"],
                           eval_every=max(1, steps // EVALS_PER_RUN) if steps else None,
                           max_train_samples=self.max_train_samples, max_eval_samples=self.max_eval_samples,
                           num_threads=self.num_threads,
                           **({"augment": self.augment, "augment_source": self.augment_source} if self.augment else {}),
                           **dict(self.overrides))


_BUDGET_FIELDS = {"max_steps", "max_seq_length", "teacher", "task", "kind", "method", "sparsity", "seed", "model",
                  "augment", "augment_source", "max_train_samples", "max_eval_samples", "num_threads", "eval_every",
                  "time_budget", "epochs"}


def parse_overrides(items: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """``--set FIELD=VALUE`` items as (field, value) pairs of :class:`kasp.spec.config.RunConfig`, the value
    parsed as JSON where it can be (``lr=2e-4`` -> 0.0002, ``bucket_batches=false``), else a string.

    Raises:
        KaspError: an item without ``=``, a field that is not a recipe field, or a field that the sweep
            sets itself (steps, length, sparsity, seed, method, teacher, augmentation: use their flags).
    """
    from dataclasses import fields

    from kasp.spec.config import RunConfig

    known = {f.name for f in fields(RunConfig)}
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise KaspError(f"--set {item!r}: write FIELD=VALUE, e.g. --set temperature=2")
        if key not in known:
            raise KaspError(f"--set {key}: not a recipe field; the fields are listed by `kasp prune --help`")
        if key in _BUDGET_FIELDS:
            raise KaspError(f"--set {key}: the sweep sets {key} itself; use its own flag (kasp sweep --help)")
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON (a plain word), or JSON beyond the parser's limits
            value = raw
        out.append((key, value))
    return tuple(out)


def check_settings(opt: "SweepOptions", plan: list[PlannedRun]) -> None:
    """Build the teacher's and every planned run's recipe once, before anything trains, so that a bad
    budget (e.g. ``--max-steps -5``, a length beyond the model's limit) is refused at once, not after
    the teacher has been fine-tuned.

    Raises:
        KaspError: naming the invalid setting.
    """
    from kasp.spec.config import make_config

    if isinstance(opt.jobs, bool) or not isinstance(opt.jobs, int) or opt.jobs < 1:
        raise KaspError(f"invalid sweep settings: --jobs {opt.jobs!r}: give the number of runs to train at once, 1 or more")
    b = opt.budget()
    try:
        make_config("finetune", "finetune", opt.task, model=opt.model, max_steps=b["teacher_steps"],
                    max_seq_length=b["max_seq_length"], max_train_samples=opt.max_train_samples,
                    max_eval_samples=opt.max_eval_samples, num_threads=opt.num_threads)
        for r in plan:
            opt.run_config(r, opt.teacher or "teacher")
    except (TypeError, ValueError) as e:
        raise KaspError(f"invalid sweep settings: {e}") from None


@contextlib.contextmanager
def sweep_lock(task: str, store: str | Path):
    """Hold the sweep lock of ``task`` on the run store ``store`` for the ``with`` block, or fail at once.

    The lock is ``<store>/sweeps/.sweep-<task>.lock`` (a ``filelock.FileLock``, never waited for);
    beside it ``.sweep-<task>.holder.json`` records the holder (pid, start time, host, command) for
    the message a second sweep prints. The operating system releases the lock when the holder's
    process ends, even on SIGKILL; a stale holder file is overwritten by the next holder.

    Raises:
        KaspError: when another process holds the lock: one line naming its pid and start time.
    """
    import socket

    from filelock import FileLock, Timeout

    from kasp.ground.runs import atomic_write_json, read_json

    folder = Path(store) / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / f".sweep-{task}.lock"), timeout=0)
    holder = folder / f".sweep-{task}.holder.json"
    try:
        lock.acquire()
    except Timeout:
        who = read_json(holder, {}) or {}
        who = who if isinstance(who, dict) else {}
        host = f" on {who['host']}" if who.get("host") else ""
        raise KaspError(f"another kasp sweep of {task} is running on the run store {store} (pid {who.get('pid', '?')}"
                        f"{host}, started {who.get('started', 'at an unknown time')}): wait for it to end, or stop it "
                        "and run this command again to resume; nothing was started") from None
    try:
        atomic_write_json(holder, {"pid": os.getpid(), "host": socket.gethostname(), "command": sys.argv,
                                   "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        yield
    finally:
        holder.unlink(missing_ok=True)  # before the release: the next holder's file is never removed
        lock.release()


def _say(msg: str) -> None:
    print(f"kasp sweep: {msg}", file=sys.stderr, flush=True)


def _ensure_teacher(opt: SweepOptions, should_stop: Callable[[], bool]) -> tuple[str, dict[str, Any]]:
    """(checkpoint path, teacher summary). Reuses --teacher, or the newest finished finetune run of the
    store with the sweep's teacher budget; else fine-tunes one into the store."""
    from kasp.spec.config import make_config
    from kasp.ground.runs import RunDir, iter_done, new_run_id
    from kasp.training.train import resolve_teacher, train

    b = opt.budget()
    if opt.teacher:
        ckpt, rep = resolve_teacher(make_config("prune", "kasp", opt.task, teacher=opt.teacher, sparsity=0.5), None)
        src = Path(opt.teacher)
        rid, recipe, trained = src.name, RunDir(src).recipe() if (src / "config.json").is_file() else {}, False
    else:
        match = {"kind": "finetune", "task": opt.task, "model": opt.model, "max_train_samples": opt.max_train_samples}
        if b["teacher_steps"]:
            match["max_steps"] = b["teacher_steps"]
        if b["max_seq_length"]:
            match["max_seq_length"] = b["max_seq_length"]
        run = next(iter_done(opt.store(), **match), None)
        trained = run is None
        if run is None:
            cfg = make_config("finetune", "finetune", opt.task, model=opt.model, max_steps=b["teacher_steps"],
                              max_seq_length=b["max_seq_length"], max_train_samples=opt.max_train_samples,
                              max_eval_samples=opt.max_eval_samples, num_threads=opt.num_threads)
            run = RunDir.create(opt.store() / new_run_id(opt.task, "finetune", 0.0))
            _say(f"no matching teacher in {opt.store()}: fine-tuning one ({cfg.max_steps or 'default'} steps) into {run.path}")
            train(cfg, run, should_stop=should_stop, store=opt.store(), progress_bar=False)
        ckpt, rep, rid, recipe = str(run.checkpoint), run.report(), run.id, run.recipe()
    main = rep.get("main_metric")
    metrics = rep.get("metrics") or {}
    if main is None or main not in metrics:
        from kasp.training.evaluate import evaluate_checkpoint

        res = evaluate_checkpoint(ckpt, opt.task, None, opt.max_eval_samples, b["max_seq_length"] or 128, 64)
        metrics = {k: v for k, v in res["metrics"].items()}
        from kasp.data.glue import get_task

        main = get_task(opt.task).main_metric
    return ckpt, _round({"run_id": rid, "path": ckpt, "metric": metrics[main], "metrics": metrics, "recipe": recipe,
                         "wall_seconds": rep.get("wall_seconds"), "trained_by_sweep": trained})


def _entry(run: PlannedRun, run_dir, teacher_id: str, teacher_ckpt: str, opt: SweepOptions) -> dict[str, Any]:
    """The results-file entry of a finished run directory (computes the retention summary)."""
    from kasp.analysis.retention import compare
    from kasp.training.weights_story import story_records

    rep, rec = run_dir.report(), run_dir.recipe()
    main = rep["main_metric"]
    retention = None
    if opt.retention_samples > 0:
        r = compare(teacher_ckpt, str(run_dir.checkpoint), opt.task, samples=opt.retention_samples,
                    max_seq_length=rec.get("max_seq_length", 128))
        retention = {"mean_similarity": r.mean_similarity, "mean_cka": r.mean_cka, "agreement": r.agreement,
                     "kl": r.kl, "prediction_mse": r.prediction_mse, "samples": r.samples,
                     "similarity_per_layer": [sum(row) / len(row) for row in r.similarity], "cka": r.cka}
    params = rep.get("parameters") or {}
    sp = rep["sparsity"]
    return _round({
        "key": run.key, "method": run.method, "sparsity": run.sparsity, "seed": run.seed, "run_id": run_dir.id,
        "teacher_id": teacher_id, "main_metric": main, "metric": rep["metrics"][main], "metrics": rep["metrics"],
        "measured_sparsity": sp["pruned_sparsity"], "overall_sparsity": sp["overall_sparsity"],
        "nonzero_encoder_linear": sp["pruned_params"] - sp["pruned_zeros"], "parameters": params,
        "small_dense": rep.get("small_dense"), "per_matrix_sparsity": rep["per_matrix_sparsity"],
        "progress": thin_progress(run_dir.progress()), "retention": retention, "recipe": rec,
        "steps": rep["steps"], "train_seconds": rep["train_seconds"], "wall_seconds": rep["wall_seconds"],
        "selection_metrics": rep.get("selection_metrics"), "teacher_cache": rep.get("teacher_cache"),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {k: v for k, v in machine().items() if k in ("cpu", "cpus", "torch_threads", "gpu")},
    }) | {"recipe": rec,  # the recipe exactly as run (not rounded): resuming compares it
          "weights_story": story_records(run_dir.path) or None}  # the weights' pictures (kasp.training.weights_story)


def _eta(todo: list[PlannedRun], done: list[dict[str, Any]], opt: SweepOptions) -> tuple[float, str]:
    """Seconds left for ``todo``: the mean wall time of this sweep's recorded runs of each method, else
    the store-based estimate of :func:`kasp.training.estimate.estimate_seconds`."""
    from kasp.training.estimate import estimate_seconds

    per = {m: _mean([e["wall_seconds"] for e in done if e["method"] == m]) for m in METHODS}
    any_mean = _mean([e["wall_seconds"] for e in done])
    total, measured = 0.0, True
    for r in todo:
        s = per.get(r.method) or any_mean
        if s is None:
            measured = False
            s, _ = estimate_seconds(r.method, opt.budget()["max_steps"] or 2000,
                                    evals=EVALS_PER_RUN, model=opt.model, store=opt.store(), task=opt.task)
        total += s
    return total, ("from this sweep's finished runs" if measured else "estimated from the run store / platform notes")


def _fmt_duration(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min"


def run_sweep(opt: SweepOptions, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
    """Run (or resume) a sweep; return the results object, which is also in ``opt.results_path()``.

    Raises:
        KaspError: at once when another sweep of the same task runs on the same store (:func:`sweep_lock`);
            an existing results file that is broken or belongs to another task or model (it is left
            untouched), no training data for the task, or any run's own KaspError.
        kasp.training.train.Cancelled: when ``should_stop()`` turned true; finished runs stay recorded.
    """
    from kasp.data.glue import get_task

    task = get_task(opt.task)
    opt.task = task.name
    plan = opt.plan(opt.model_config() if any(shrinks_student(m) for m in opt.methods) else None)
    check_settings(opt, plan)
    with sweep_lock(task.name, opt.store()):  # one sweep per task and store: no run is trained twice at once
        return _run_locked(opt, plan, should_stop)


def _results_header(opt: SweepOptions, plan: list[PlannedRun], task, teacher: dict[str, Any],
                    old: dict[str, Any] | None) -> dict[str, Any]:
    """A results object with no runs yet: format, task, teacher, machine, the plan and the times so far. With
    ``--teacher`` the plan's teacher budget is that teacher's, as its recipe records it (``teacher_steps``, or
    ``teacher_epochs`` for a teacher trained in epochs; both None when it records neither), not the default budget
    of a teacher the sweep never trained."""
    from kasp.spec.metrics import METRIC_NAMES

    b = opt.budget()
    if opt.teacher:
        recipe = teacher.get("recipe") or {}
        b = {k: v for k, v in b.items() if k != "teacher_epochs"} | {"teacher_steps": recipe.get("max_steps")}
        if not recipe.get("max_steps") and recipe.get("epochs"):
            b["teacher_epochs"] = recipe["epochs"]
    return {
        "format": FORMAT, "schema_version": SCHEMA_VERSION, "task": task.name, "model": opt.model,
        "main_metric": task.main_metric, "metric_name": METRIC_NAMES.get(task.main_metric, task.main_metric),
        "teacher": teacher, "machine": machine(),
        "plan": {"sparsities": list(opt.sparsities), "small_dense_sparsities": list(opt.small_dense_sparsities or opt.sparsities),
                 "multi_seed_sparsities": None if opt.multi_seed_sparsities is None else list(opt.multi_seed_sparsities),
                 "methods": list(opt.methods), "seeds": list(opt.seeds), "budget": b,
                 "max_train_samples": opt.max_train_samples, "max_eval_samples": opt.max_eval_samples,
                 "augment": opt.augment, "augment_source": opt.augment_source if opt.augment else None,
                 "overrides": dict(opt.overrides),
                 "runs": len(plan)},
        "started": (old or {}).get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sweep_seconds": float((old or {}).get("sweep_seconds") or 0.0), "runs": [],
        "paper": "Xu et al., Rethinking Network Pruning - under the Pre-train and Fine-tune Paradigm, NAACL 2021",
    }


def _run_one(r: PlannedRun, cfg, d, opt: SweepOptions, should_stop: Callable[[], bool]):
    """Run (or finish) planned run ``r`` in its directory ``d`` and return the run directory that holds it:
    a run that finished but was not recorded is recorded as it is; one interrupted after an evaluation
    point is resumed (:mod:`kasp.training.resume`); anything else runs from the start."""
    from kasp.ground.runs import RunDir
    from kasp.training import resume
    from kasp.training.train import train

    # the same run as planned: same recipe and the very teacher this sweep distils from now
    same = (d.path.is_dir() and _comparable(d.recipe()) == _comparable(cfg.to_dict())
            and d.recipe().get("teacher") == cfg.teacher)
    resumed = False
    # done, or killed after its checkpoint and report were saved (kasp.training.resume.finish_complete marks it done)
    if same and (d.state() == "done" or resume.finish_complete(d.path) is not None) and d.checkpoint.is_dir():
        _say(f"{r.key} finished before the last stop but was not recorded: recording it")
        resumed = True
    elif same and resume.latest(d.path) is not None:  # interrupted after an evaluation point: continue it
        try:
            _, state = resume.prepare_run(d.path)  # also drops the progress written after that point
            _say(f"{r.key} was interrupted: resuming it from {state.name}")
            train(cfg, d, should_stop=should_stop, store=opt.store(), progress_bar=False, resume_from=state)
            resumed = True
        except KaspError as e:  # a damaged resume state: run it again from the start
            _say(f"{r.key} could not resume ({e}): running it again from the start")
    if not resumed:
        if d.path.exists():
            shutil.rmtree(d.path)  # an interrupted (or outdated) run of this sweep: redo it
        d = RunDir.create(d.path)
        train(cfg, d, should_stop=should_stop, store=opt.store(), progress_bar=False)
    return d


def _run_locked(opt: SweepOptions, plan: list[PlannedRun], should_stop: Callable[[], bool]) -> dict[str, Any]:
    """:func:`run_sweep` once it holds the sweep lock (the results file is read under the lock)."""
    from kasp.data.glue import get_task
    from kasp.ground.runs import RunDir, atomic_write_json

    task = get_task(opt.task)
    path = opt.results_path()
    old = load_results(path) if path.exists() else None
    if old is not None and (old["task"] != task.name or old["model"] != opt.model):
        raise KaspError(f"{path} holds the sweep of task {old['task']} and model {old['model']!r}, not "
                        f"{task.name} / {opt.model!r}: pass another --results")
    t_start = time.time()
    teacher_ckpt, teacher = _ensure_teacher(opt, should_stop)
    results = _results_header(opt, plan, task, teacher, old)
    # keep every old entry whose recipe and teacher still match; unplanned ones stay too (not lost)
    recorded: dict[str, dict[str, Any]] = {}
    for e in (old or {}).get("runs", []):
        recorded[e["key"]] = e

    def valid(e: dict[str, Any] | None, cfg) -> bool:
        return e is not None and e["teacher_id"] == teacher["run_id"] and _comparable(e["recipe"]) == _comparable(cfg.to_dict())

    def gather() -> None:
        planned = [recorded[r.key] for r in plan if r.key in recorded]
        extra = [e for k, e in recorded.items() if k not in {r.key for r in plan}]
        results["runs"] = planned + extra

    def save() -> None:
        gather()
        results["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, results)

    sweep_dir = opt.sweep_dir()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cfgs = {r.key: opt.run_config(r, teacher_ckpt) for r in plan}
    todo = [r for r in plan if not valid(recorded.get(r.key), cfgs[r.key])]
    for r in plan:
        if r.key in recorded and r not in todo:
            continue
        recorded.pop(r.key, None)  # stale: other recipe or teacher
    if len(todo) < len(plan):
        _say(f"{len(plan) - len(todo)} of {len(plan)} runs already in {path}: not redone")
    if not todo and old is not None:  # nothing to run: the file stays as it is (no new timestamp)
        gather()
        results["updated"] = old.get("updated")
        return results
    save()
    base = results["sweep_seconds"]

    def record(r: PlannedRun, d) -> None:
        """Put finished run ``r`` (its directory ``d``) into the results file at once."""
        from kasp.spec.metrics import format_metric_value

        recorded[r.key] = _entry(r, d, teacher["run_id"], teacher_ckpt, opt)
        results["sweep_seconds"] = base + time.time() - t_start
        save()
        if not opt.keep_checkpoints:
            shutil.rmtree(d.checkpoint, ignore_errors=True)
        m = recorded[r.key]
        _say(f"finished {r.key}: {results['metric_name']} {format_metric_value(m['metrics'], results['main_metric'])}, sparsity "
             f"{m['measured_sparsity'] * 100:.2f} %, {m['wall_seconds'] / 60:.1f} min")

    if opt.jobs > 1 and len(todo) > 1:
        if opt.num_threads is None:  # each job gets its share of the CPUs (the thread count is not part of a recipe match)
            per_job = dataclasses.replace(opt, num_threads=threads_per_job(opt.jobs))
            cfgs = {r.key: per_job.run_config(r, teacher_ckpt) for r in todo}
        _run_parallel(todo, cfgs, plan, recorded, opt, should_stop, record)
    else:
        for i, r in enumerate(todo):
            done_before = [recorded[p.key] for p in plan if p.key in recorded]
            eta, how = _eta(todo[i:], done_before, opt)
            _say(f"{len(done_before)}/{len(plan)} runs done; about {_fmt_duration(eta)} left ({how}); "
                 f"starting {r.key}")
            record(r, _run_one(r, cfgs[r.key], RunDir(sweep_dir / r.dirname), opt, should_stop))
    results["sweep_seconds"] = base + time.time() - t_start
    save()
    _say(f"{len(plan)}/{len(plan)} runs done; results in {path}")
    return results


# --- runs at once (--jobs) ---------------------------------------------------------------------------
def threads_per_job(jobs: int) -> int:
    """Torch threads for each of ``jobs`` runs at once: the CPUs this process may use, divided by
    ``jobs`` (at least 1)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_JOB_STOP: Any = None  # in a job process: the sweep's stop event (multiprocessing.Event)
_JOB_SIGNALLED = False  # in a job process: SIGINT or SIGTERM was received


def _job_init(stop_event: Any) -> None:
    """Initializer of a job process: the sweep's stop event, and SIGINT/SIGTERM (Ctrl-C and
    ``kill -- -PGID`` reach every process of the group) stop the run after its step instead of
    killing the process, as in the sweep's own process."""
    global _JOB_STOP
    _JOB_STOP = stop_event

    def handler(signum, frame) -> None:
        global _JOB_SIGNALLED
        _JOB_SIGNALLED = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if hasattr(signal, "pthread_sigmask"):  # blocked by the sweep while it started this process: a signal that
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # came meanwhile is handled now, not fatal


def _job_should_stop() -> bool:
    return _JOB_SIGNALLED or (_JOB_STOP is not None and _JOB_STOP.is_set())


def _job(r: PlannedRun, cfg, path: str, opt: SweepOptions) -> str:
    """One run in a job process (:func:`_run_one`); returns its run directory's path.

    Raises:
        kasp.training.train.Cancelled: when the sweep was stopped, before the run starts or during it.
    """
    from kasp.ground.runs import RunDir
    from kasp.training.train import Cancelled

    if _job_should_stop():  # queued before the stop: touch nothing
        raise Cancelled("stopped before it started")
    _say(f"starting {r.key} (process {os.getpid()}, {cfg.num_threads} thread{'s' if cfg.num_threads != 1 else ''})")
    return str(_run_one(r, cfg, RunDir(path), opt, _job_should_stop).path)


def _run_parallel(todo: list[PlannedRun], cfgs: dict[str, Any], plan: list[PlannedRun], recorded: dict[str, Any],
                  opt: SweepOptions, should_stop: Callable[[], bool], record: Callable[[PlannedRun, Any], None]) -> None:
    """Train ``todo`` with up to ``opt.jobs`` runs at once, each in a ``spawn`` process of its own;
    record each as it finishes (in this process: the results file has one writer).

    Raises:
        kasp.training.train.Cancelled: when ``should_stop()`` turned true (the stop is passed to every
            job; runs that finished before are recorded).
        KaspError: a job's own error (the other runs in progress finish and are recorded first), or a
            job process that died.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from kasp.ground.runs import RunDir
    from kasp.training.train import Cancelled

    done_before = [recorded[p.key] for p in plan if p.key in recorded]
    eta, how = _eta(todo, done_before, opt)
    if how.startswith("from this sweep"):  # measured on runs that ran this many at once: divide by the runs at once
        left = f"about {_fmt_duration(eta / min(opt.jobs, len(todo)))} left ({how})"
    else:  # estimated for one run at a time; how much runs at once save depends on the machine
        left = (f"about {_fmt_duration(eta)} of one-run-at-a-time work ({how}); runs at once finish sooner "
                "(about 1.3x on 2 cores: docs/cpu.md)")
    _say(f"{len(done_before)}/{len(plan)} runs done; {len(todo)} to run, {opt.jobs} at a time; {left}")
    import torch

    torch.set_num_threads(cfgs[todo[0].key].num_threads or threads_per_job(opt.jobs))  # retention, beside the jobs
    ctx = multiprocessing.get_context("spawn")
    stop_event = ctx.Event()
    cancelled, failure = False, None
    with ProcessPoolExecutor(max_workers=opt.jobs, mp_context=ctx, initializer=_job_init,
                             initargs=(stop_event,)) as pool:
        # the job processes start during submit: they inherit a mask that blocks SIGINT/SIGTERM until _job_init has
        # installed their handlers, so that a stop while they import torch stops them cleanly instead of killing them
        blocked = hasattr(signal, "pthread_sigmask")
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            futures = {pool.submit(_job, r, cfgs[r.key], str(opt.sweep_dir() / r.dirname), opt): r for r in todo}
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            if should_stop() and not stop_event.is_set():
                stop_event.set()  # every job stops after its step; queued ones never start
                for f in pending:
                    f.cancel()
            for f in finished:
                if f.cancelled():
                    continue
                exc = f.exception()
                if exc is None:
                    record(futures[f], RunDir(f.result()))
                elif isinstance(exc, Cancelled):
                    cancelled = True
                else:
                    if failure is None:
                        failure = exc
                        _say(f"{futures[f].key} failed ({exc}); the runs in progress finish, no new one starts")
                    for g in pending:
                        g.cancel()
    if isinstance(failure, BrokenProcessPool) and (stop_event.is_set() or should_stop()):
        failure, cancelled = None, True  # a job ended by the stop's signal itself: a stop, not a failure
    if failure is not None:
        if isinstance(failure, BrokenProcessPool):
            raise KaspError("a sweep job process died (killed, or out of memory); finished runs are recorded: "
                            "run the same command to resume") from None
        raise failure
    if cancelled or stop_event.is_set():
        raise Cancelled("stopped")
