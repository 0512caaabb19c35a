"""``kasp sweep``: accuracy against sparsity for one task, resumable, into one compact results file.

A sweep reuses (or trains) the task's dense teacher, then runs KASP and the magnitude baseline at a
list of sparsities and the small-dense baseline (:mod:`kasp.small_dense`) at the sizes those
sparsities leave non-zero, for one or more seeds. After every finished run it rewrites the results
file atomically (``kasp.runs.atomic_write_json``): metric per run, per-matrix sparsity, a thinned
progress history, a retention summary (:mod:`kasp.retention`), the full recipe, the machine and the
wall time; never weights.

Resuming: started again with the same command, a sweep skips every run whose entry is in the
results file with the same recipe and teacher, recovers a run that finished but was not yet
recorded from its run directory, and continues the run that was interrupted from its last
evaluation point (:mod:`kasp.resume`; from the start if it stopped before one). A recipe that
changed (new step budget, new default recipe, another teacher) makes its runs run again.

Each run's directory lives in ``<runs-dir>/sweeps/<task>/`` (out of the app's run list: the
results file is what the app reads); its checkpoint is deleted once recorded unless
``--keep-checkpoints``.

One sweep per task and store at a time: a sweep holds ``<runs-dir>/sweeps/.sweep-<task>.lock``
(``filelock``, released when the process ends, however it ends) while it runs, and a second one of
the same task and store stops at once, naming the holder (:func:`sweep_lock`). Its variants
(``--augment``, ``--set``) share the lock: they share the task's teacher and run store.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

from kasp.errors import KaspError

FORMAT = "kasp-sweep"
SCHEMA_VERSION = 1
DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97)
METHODS = ("kasp", "magnitude", "small-dense")

#: Per-task CPU budgets of a sweep (MiniLM-L6 on 2 cores): teacher fine-tuning steps, steps per
#: pruned / small-dense run, and the length limit. SST-2 keeps the default recipe (README: about
#: 13 min per prune run); the small tasks (train sets of 2.5k-8.5k examples) get about 2 epochs per
#: run (CoLA 1.5) so that the 13 runs of scripts/run_sweeps.sh plus the teacher fit in about 45
#: minutes (pairs at length 128 cost about twice an SST-2 step at 64; a small-dense step about half
#: a KASP step). Estimates from the README's per-step speeds, not yet measured: check them
#: against the first sweep's recorded wall times.
TASK_BUDGETS: dict[str, dict[str, int]] = {
    "sst2": {"teacher_steps": 1400, "max_steps": 2000, "max_seq_length": 64},
    "mrpc": {"teacher_steps": 350, "max_steps": 200, "max_seq_length": 128},
    "rte": {"teacher_steps": 240, "max_steps": 160, "max_seq_length": 128},
    "stsb": {"teacher_steps": 360, "max_steps": 240, "max_seq_length": 128},
    "cola": {"teacher_steps": 800, "max_steps": 400, "max_seq_length": 64},
}
#: dev evaluations per run (the progress history's metric points)
EVALS_PER_RUN = 4
#: train records kept per run in the results file (evenly spaced, last one always kept)
HISTORY_POINTS = 60


def shipped_sweep_path(task: str) -> Path:
    """Where the shipped sweep results of ``task`` live: repository ``assets/sweeps/<task>.json``, in the
    package ``kasp.assets`` (:mod:`kasp.resources`). The one place in the code that knows it.
    """
    from kasp.resources import assets_dir

    return assets_dir() / "sweeps" / f"{task}.json"


# --- the results file -------------------------------------------------------------------------
_NUM = {"type": "number"}
_METRIC = {"type": ["number", "null"]}  # null: undefined on these examples (kasp.metrics; the reason beside it)
_NOTES = {"type": "object", "additionalProperties": {"type": "string"}}  # metrics' "undefined" / "convention"
_RUN_SCHEMA = {
    "type": "object",
    "required": ["key", "method", "sparsity", "seed", "metric", "metrics", "measured_sparsity", "recipe",
                 "wall_seconds", "teacher_id"],
    "properties": {
        "key": {"type": "string"}, "method": {"enum": list(METHODS)}, "sparsity": _NUM,
        "seed": {"type": "integer"}, "metric": _METRIC,
        "metrics": {"type": "object", "additionalProperties": {"anyOf": [_METRIC, _NOTES]}},
        "measured_sparsity": _NUM, "recipe": {"type": "object"}, "wall_seconds": _NUM,
        "teacher_id": {"type": "string"},
        "per_matrix_sparsity": {"type": "object", "additionalProperties": _NUM},
        "progress": {"type": "object"}, "retention": {"type": ["object", "null"]},
        "small_dense": {"type": ["object", "null"]},
        "weights_story": {"type": ["array", "null"], "items": {"type": "object"}},  # kasp.weights_story records
    },
}
RESULTS_SCHEMA = {
    "type": "object",
    "required": ["format", "schema_version", "task", "model", "main_metric", "teacher", "runs"],
    "properties": {
        "format": {"const": FORMAT}, "schema_version": {"const": SCHEMA_VERSION}, "task": {"type": "string"},
        "model": {"type": "string"}, "main_metric": {"type": "string"},
        "teacher": {"type": ["object", "null"], "required": ["run_id", "metric"],
                    "properties": {"run_id": {"type": "string"}, "metric": _METRIC}},
        "plan": {"type": "object"}, "machine": {"type": "object"},
        "runs": {"type": "array", "items": _RUN_SCHEMA},
    },
}


def validate_results(data: Any, source: str = "results") -> dict[str, Any]:
    """Check a sweep results object: format, schema version, required fields and types.

    Returns:
        ``data`` unchanged.
    Raises:
        KaspError: naming the file, the first problem, and the fix.
    """
    from jsonschema import Draft202012Validator

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise KaspError(f"{source} is not a KASP sweep results file (it has no \"format\": \"{FORMAT}\"); "
                        "pass the file `kasp sweep` wrote, or another --results path")
    version = data.get("schema_version")
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise KaspError(f"{source} has schema version {version}, newer than this KASP reads ({SCHEMA_VERSION}): "
                        "upgrade KASP")
    err = next(iter(sorted(Draft202012Validator(RESULTS_SCHEMA).iter_errors(data), key=lambda e: list(e.path))), None)
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "top level"
        raise KaspError(f"{source} is a broken KASP sweep results file: at {where}: {err.message[:200]}. "
                        "Restore it from git, or move it aside and run the sweep again")
    return data


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a sweep results file.

    Raises:
        KaspError: missing, unreadable, not JSON, or not a valid results file (see :func:`validate_results`).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KaspError(f"sweep results file {p} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KaspError(f"cannot read sweep results file {p}: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise KaspError(f"{p} is not valid JSON ({e.msg}, line {e.lineno}): restore it from git, or move it "
                        "aside and run the sweep again") from None
    except (ValueError, RecursionError) as e:  # a number over 4,300 digits, arrays nested thousands deep
        why = "nested too deeply" if isinstance(e, RecursionError) else "a number too long to read"
        raise KaspError(f"{p} is not a results file KASP writes ({why}): restore it from git, or move it "
                        "aside and run the sweep again") from None
    return validate_results(data, str(p))


def shipped_gpu_sweep_path(task: str) -> Path:
    """Where the GPU route's results of ``task`` live (``scripts/gpu_sweep.py``): ``assets/sweeps/gpu/<task>.json``."""
    return shipped_sweep_path(task).parent / "gpu" / f"{task}.json"


def load_shipped_gpu(task: str) -> dict[str, Any] | None:
    """The shipped GPU-route sweep of ``task`` (its own labelled source, ``results["source"]``, e.g. "GPU sweep,
    12 epochs"), or None when none ships.

    Raises:
        KaspError: a shipped file that is broken (see :func:`load_results`).
    """
    return _load_if_shipped(shipped_gpu_sweep_path(task))


def _load_if_shipped(p: Path) -> dict[str, Any] | None:
    """A shipped results file, cached while unchanged, or None when it is not there."""
    if not p.is_file():
        return None
    return _load_cached(str(p), p.stat().st_mtime_ns)


def load_shipped(task: str) -> dict[str, Any] | None:
    """The shipped sweep results of ``task``, or None when none ship (cached while the file is unchanged;
    treat the result as read-only).

    Raises:
        KaspError: a shipped file that is broken (see :func:`load_results`).
    """
    return _load_if_shipped(shipped_sweep_path(task))


def shipped_status(task: str) -> str | None:
    """One line on how complete the shipped sweep of ``task`` is, for the pages (None when none ships,
    it is broken, or every planned run is in it): e.g. "The shipped MRPC sweep holds 7 of its 13
    planned runs so far (budget: 200 steps a run); the curve fills in as the rest are run."
    """
    try:
        res = load_shipped(task)
    except KaspError:
        return None
    if not res:
        return None
    plan = res.get("plan") or {}
    planned = plan.get("runs")
    try:  # count only the runs of this plan (a results file keeps older plans' runs too)
        keys = {r.key for r in plan_runs(plan["sparsities"], plan["methods"], plan["seeds"],
                                         plan.get("small_dense_sparsities"), plan.get("multi_seed_sparsities"))}
        done = sum(1 for e in res.get("runs", []) if e.get("key") in keys)
    except (KeyError, TypeError, KaspError):
        done = len(res.get("runs", []))
    if not planned or done >= planned:
        return None
    from kasp.tasks import task_name

    steps = ((res.get("plan") or {}).get("budget") or {}).get("max_steps")
    return (f"The shipped {task_name(task)} sweep holds {done} of its {planned} planned runs so far"
            + (f" (budget: {steps} steps a run)" if steps else "") + "; the curve fills in as the rest are run "
            "(`scripts/run_sweeps.sh`).")


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> dict[str, Any]:
    return load_results(path)


# --- the plan -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: a method at a sparsity (small-dense: the sparsity it stands for) and a seed."""

    method: str
    sparsity: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.method}@{self.sparsity:g}/seed{self.seed}"

    @property
    def dirname(self) -> str:
        return f"{self.method}-s{self.sparsity * 100:g}-seed{self.seed}"


def plan_runs(sparsities: Iterable[float] = DEFAULT_SPARSITIES, methods: Iterable[str] = METHODS,
              seeds: Iterable[int] = (42,), small_dense_sparsities: Iterable[float] | None = None,
              multi_seed_sparsities: Iterable[float] | None = None) -> list[PlannedRun]:
    """The ordered runs of a sweep: every method at every sparsity for the first seed, then the other seeds.

    Args:
        sparsities: for KASP and magnitude (fractions in (0, 1)).
        methods: a subset of :data:`METHODS`.
        seeds: the first runs everything; the others only at ``multi_seed_sparsities``.
        small_dense_sparsities: the sizes of the small-dense runs (default: ``sparsities``).
        multi_seed_sparsities: where seeds after the first run (default: every sparsity).

    Raises:
        KaspError: an unknown method, a sparsity outside (0, 1), or no seed.
    """
    methods, seeds = list(methods), list(seeds)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise KaspError(f"unknown sweep method(s) {bad}: choose from {', '.join(METHODS)}")
    if not seeds:
        raise KaspError("--seeds needs at least one seed")
    sp = sorted(set(float(s) for s in sparsities))
    sd = sorted(set(float(s) for s in (sp if small_dense_sparsities is None else small_dense_sparsities)))
    for s in sp + sd:
        if not 0.0 < s < 1.0:
            raise KaspError(f"sweep sparsity {s} is outside (0, 1): give fractions, e.g. 0.9 for 90 % zeros")
    multi = None if multi_seed_sparsities is None else {float(s) for s in multi_seed_sparsities}
    out = []
    for i, seed in enumerate(seeds):
        for s in sorted(set(sp) | set(sd)):
            if i > 0 and multi is not None and s not in multi:
                continue
            for m in methods:
                if s in (sd if m == "small-dense" else sp):
                    out.append(PlannedRun(m, s, int(seed)))
    return out


def budget_for(task: str, max_steps: int | None = None, teacher_steps: int | None = None,
               max_seq_length: int | None = None) -> dict[str, int | None]:
    """The step budgets and length limit of a task's sweep: :data:`TASK_BUDGETS`, overridden where given."""
    b = dict(TASK_BUDGETS.get(task, {"teacher_steps": None, "max_steps": None, "max_seq_length": None}))
    for k, v in (("max_steps", max_steps), ("teacher_steps", teacher_steps), ("max_seq_length", max_seq_length)):
        if v is not None:
            b[k] = v
    return b


# --- helpers ------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the sweep ran on: CPU model and count, memory, torch threads, versions, platform (the versions
    and platform as a run's provenance writes them, :func:`kasp.provenance.versions`)."""
    import torch

    from kasp.provenance import versions

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
    and without unset (None) fields, so that a recipe field added to KASP later (None by default)
    does not make the runs recorded before it look outdated and run again."""
    return {k: v for k, v in recipe.items() if k not in ("teacher", "num_threads") and v is not None}


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
    methods: tuple[str, ...] = METHODS
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

    @property
    def variant(self) -> str:
        """``<task>``; ``-augment-<source><N>`` added for a sweep with augmented training data and
        ``-<field><value>`` for each recipe override (``--set``): its own run folder and default
        results file, so that it never touches the plain sweep's runs."""
        name = f"{self.task}-augment-{self.augment_source}{self.augment}" if self.augment else self.task
        return name + "".join(f"-{k}{v}" for k, v in self.overrides)

    def store(self) -> Path:
        from kasp.runs import runs_dir

        return Path(self.runs_dir) if self.runs_dir else runs_dir()

    def results_path(self) -> Path:
        return Path(self.results) if self.results else self.store() / "sweeps" / f"{self.variant}.json"

    def sweep_dir(self) -> Path:
        """The runs' folder, ``<store>/sweeps/<name of the results file>``: two sweeps with different
        results files (other budgets, other settings) never share run directories."""
        return self.store() / "sweeps" / self.results_path().stem

    def budget(self) -> dict[str, int | None]:
        return budget_for(self.task, self.max_steps, self.teacher_steps, self.max_seq_length)

    def plan(self, model_config: Any = None) -> list[PlannedRun]:
        """The planned runs. With the pre-trained model's config, a small-dense run whose shape equals
        that of a lower sparsity's (below one layer's attention weights every size is the smallest
        student, e.g. 95 % and 97 % on MiniLM-L6) is dropped: it would be the same run again."""
        plan = plan_runs(self.sparsities, self.methods, self.seeds, self.small_dense_sparsities,
                         self.multi_seed_sparsities)
        if model_config is None:
            return plan
        from kasp.small_dense import size_for_sparsity

        seen: dict[tuple[int, int], float] = {}
        out = []
        for r in plan:
            if r.method == "small-dense":
                z = size_for_sparsity(model_config, r.sparsity)
                shape = (z.layers, z.ffn_width)
                if seen.setdefault(shape, r.sparsity) != r.sparsity:
                    continue
            out.append(r)
        return out

    def model_config(self):
        """The transformers config of the pre-trained model (for small-dense sizes)."""
        from kasp.modeling import load_config, resolve_model

        return load_config(resolve_model(self.model))

    def run_config(self, run: PlannedRun, teacher_ckpt: str):
        """The :class:`kasp.config.RunConfig` of one planned run."""
        from kasp.config import make_config

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
    """``--set FIELD=VALUE`` items as (field, value) pairs of :class:`kasp.config.RunConfig`, the value
    parsed as JSON where it can be (``lr=2e-4`` -> 0.0002, ``bucket_batches=false``), else a string.

    Raises:
        KaspError: an item without ``=``, a field that is not a recipe field, or a field that the sweep
            sets itself (steps, length, sparsity, seed, method, teacher, augmentation: use their flags).
    """
    from dataclasses import fields

    from kasp.config import RunConfig

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
    from kasp.config import make_config

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

    from kasp.runs import atomic_write_json, read_json

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
    from kasp.config import make_config
    from kasp.runs import RunDir, iter_done, new_run_id
    from kasp.train import resolve_teacher, train

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
        from kasp.evaluate import evaluate_checkpoint

        res = evaluate_checkpoint(ckpt, opt.task, None, opt.max_eval_samples, b["max_seq_length"] or 128, 64)
        metrics = {k: v for k, v in res["metrics"].items()}
        from kasp.data import get_task

        main = get_task(opt.task).main_metric
    return ckpt, _round({"run_id": rid, "path": ckpt, "metric": metrics[main], "metrics": metrics, "recipe": recipe,
                         "wall_seconds": rep.get("wall_seconds"), "trained_by_sweep": trained})


def _entry(run: PlannedRun, run_dir, teacher_id: str, teacher_ckpt: str, opt: SweepOptions) -> dict[str, Any]:
    """The results-file entry of a finished run directory (computes the retention summary)."""
    from kasp.retention import compare
    from kasp.weights_story import story_records

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
          "weights_story": story_records(run_dir.path) or None}  # the weights' pictures (kasp.weights_story)


def _eta(todo: list[PlannedRun], done: list[dict[str, Any]], opt: SweepOptions) -> tuple[float, str]:
    """Seconds left for ``todo``: the mean wall time of this sweep's recorded runs of each method, else
    the store-based estimate of :func:`kasp.views.estimate_seconds`."""
    from kasp.views import estimate_seconds

    per = {m: _mean([e["wall_seconds"] for e in done if e["method"] == m]) for m in METHODS}
    any_mean = _mean([e["wall_seconds"] for e in done])
    total, measured = 0.0, True
    for r in todo:
        s = per.get(r.method) or any_mean
        if s is None:
            measured = False
            s, _ = estimate_seconds("kasp" if r.method == "small-dense" else r.method, opt.budget()["max_steps"] or 2000,
                                    evals=EVALS_PER_RUN, model=opt.model, store=opt.store())
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
        kasp.train.Cancelled: when ``should_stop()`` turned true; finished runs stay recorded.
    """
    from kasp.data import get_task

    task = get_task(opt.task)
    opt.task = task.name
    plan = opt.plan(opt.model_config() if "small-dense" in opt.methods else None)
    check_settings(opt, plan)
    with sweep_lock(task.name, opt.store()):  # one sweep per task and store: no run is trained twice at once
        return _run_locked(opt, plan, should_stop)


def _run_locked(opt: SweepOptions, plan: list[PlannedRun], should_stop: Callable[[], bool]) -> dict[str, Any]:
    """:func:`run_sweep` once it holds the sweep lock (the results file is read under the lock)."""
    from kasp import resume
    from kasp.data import get_task
    from kasp.metrics import METRIC_NAMES
    from kasp.runs import RunDir, atomic_write_json
    from kasp.train import train

    task = get_task(opt.task)
    path = opt.results_path()
    old = load_results(path) if path.exists() else None
    if old is not None and (old["task"] != task.name or old["model"] != opt.model):
        raise KaspError(f"{path} holds the sweep of task {old['task']} and model {old['model']!r}, not "
                        f"{task.name} / {opt.model!r}: pass another --results")
    t_start = time.time()
    teacher_ckpt, teacher = _ensure_teacher(opt, should_stop)
    b = opt.budget()
    results: dict[str, Any] = {
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
    for i, r in enumerate(todo):
        cfg = cfgs[r.key]
        d = RunDir(sweep_dir / r.dirname)
        done_before = [recorded[p.key] for p in plan if p.key in recorded]
        eta, how = _eta(todo[i:], done_before, opt)
        _say(f"{len(done_before)}/{len(plan)} runs done; about {_fmt_duration(eta)} left ({how}); "
             f"starting {r.key}")
        # the same run as planned: same recipe and the very teacher this sweep distils from now
        same = (d.path.is_dir() and _comparable(d.recipe()) == _comparable(cfg.to_dict())
                and d.recipe().get("teacher") == cfg.teacher)
        resumed = False
        # done, or killed after its checkpoint and report were saved (kasp.resume.finish_complete marks it done)
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
        recorded[r.key] = _entry(r, d, teacher["run_id"], teacher_ckpt, opt)
        results["sweep_seconds"] = base + time.time() - t_start
        save()
        if not opt.keep_checkpoints:
            shutil.rmtree(d.checkpoint, ignore_errors=True)
        m = recorded[r.key]
        from kasp.metrics import format_metric_value

        _say(f"finished {r.key}: {results['metric_name']} {format_metric_value(m['metrics'], results['main_metric'])}, sparsity "
             f"{m['measured_sparsity'] * 100:.2f} %, {m['wall_seconds'] / 60:.1f} min")
    results["sweep_seconds"] = base + time.time() - t_start
    save()
    _say(f"{len(plan)}/{len(plan)} runs done; results in {path}")
    return results


# --- reading for the app ----------------------------------------------------------------------
def sweep_points(results: dict[str, Any], source: str = "precomputed sweep"):
    """Mean and seed spread of each (method, sparsity) of a results object, as a DataFrame.

    Columns: method, nominal (the planned sparsity; for small-dense the sparsity it stands for),
    sparsity (x position: measured sparsity, for small-dense its equivalent sparsity
    1 - its weights / the full model's), metric (mean over seeds, fraction), spread (half the
    max - min range over seeds, so mean +- spread spans the seeds; 0 for one seed), n (seeds),
    wall_min (mean), source, label, note (why a seed's metric is undefined, or the convention its value
    follows, with how many seeds: "constant predictions: GLUE's convention (2 of 2 seeds)"; None when
    plain). A seed whose metric is undefined is left out of the mean; with none left, metric is NaN
    (a gap, never 0).
    """
    import pandas as pd

    from kasp.metrics import metric_note, metric_value

    rows = []
    main = results.get("main_metric")
    for e in results["runs"]:
        x = e["measured_sparsity"]
        if e["method"] == "small-dense" and e.get("small_dense"):
            x = e["small_dense"]["equivalent_sparsity"]
        rows.append({"method": e["method"], "nominal": e["sparsity"], "x": x, "metric": metric_value(e, "metric"),
                     "wall": e["wall_seconds"] / 60, "note": metric_note(e.get("metrics"), main) if main else None})
    cols = ["method", "nominal", "sparsity", "metric", "spread", "n", "wall_min", "source", "label", "note"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["metric"] = df["metric"].astype(float)

    def _note(notes):
        said = [n for n in notes if isinstance(n, str) and n]  # pandas holds a missing note as NaN (truthy)
        if not said:
            return None
        return "; ".join(f"{n} ({said.count(n)} of {len(notes)} seeds)" for n in dict.fromkeys(said))

    g = df.groupby(["method", "nominal"], as_index=False).agg(
        sparsity=("x", "mean"), metric=("metric", "mean"), lo=("metric", "min"), hi=("metric", "max"),
        n=("metric", "size"), wall_min=("wall", "mean"), note=("note", _note))
    g["spread"] = (g["hi"] - g["lo"]) / 2
    steps = (results.get("plan") or {}).get("budget", {}).get("max_steps")
    g["source"] = source
    g["label"] = f"kasp sweep --task {results['task']}" + (f" ({steps} steps per run)" if steps else "")
    return g[cols]


class CurveData(NamedTuple):
    """What :func:`curve_data` returns: the chart's points, the teacher line, the published figures,
    and the one-line message of a broken shipped sweep file (None when fine)."""

    points: Any
    teacher: tuple[float, str] | None
    published: Any
    error: str | None


def curve_data(task: str, store: str | Path | None = None, runs=None) -> CurveData:
    """Everything the accuracy-against-sparsity chart of a task shows, from where each number came.

    Args:
        task: GLUE task name.
        store: the run store for live runs (default: $KASP_RUNS_DIR or ./runs).
        runs: optional DataFrame in :func:`kasp.views.curve_frame`'s layout to use instead of the
            store's live and precomputed runs (the Results page passes the selected runs).

    Returns:
        :class:`CurveData` (points, teacher, published, error): points as :func:`sweep_points` (the shipped sweep, mean and
        seed spread, source "precomputed sweep", plus single runs with spread 0 and source "live
        run" / "precomputed run"); teacher = (metric, source) of the dense teacher (the sweep's
        teacher first; else the precomputed teacher when precomputed runs are drawn; else the
        newest live one) or None; published = the paper's
        BERT-base figures (method, sparsity, metric); error = the message of a broken shipped sweep
        file, which is then left out (never raised: the pages show it with st.error).
    """
    import pandas as pd

    from kasp.views import curve_frame, published_frame

    cf = curve_frame(task, store) if runs is None else runs
    pub = published_frame(task).rename(columns={"measured_sparsity": "sparsity"})[["method", "sparsity", "metric"]]
    singles = cf[(cf["source"] != "published") & (cf["method"] != "dense teacher")]
    teachers = cf[(cf["source"] != "published") & (cf["method"] == "dense teacher")]
    parts = []
    teacher = None
    error = None
    try:
        shipped = load_shipped(task)
    except KaspError as e:
        shipped, error = None, str(e)
    if shipped is not None:
        parts.append(sweep_points(shipped))
        if shipped.get("teacher") and shipped["teacher"].get("metric") is not None:  # undefined: no line, never 0
            teacher = (shipped["teacher"]["metric"], f"teacher of the shipped sweep, {shipped['teacher']['run_id']}")
    try:
        gpu = load_shipped_gpu(task)
    except KaspError as e:
        gpu, error = None, "; ".join(x for x in (error, str(e)) if x)
    if gpu is not None and gpu.get("runs"):
        parts.append(sweep_points(gpu, source=str(gpu.get("source") or "GPU sweep")))
    if teacher is None and len(teachers):
        # the teacher of the points shown: the shipped one when shipped runs are drawn (a short live
        # teacher, e.g. a class-preset one, would otherwise stretch the axis and misplace the reference)
        pre = teachers[teachers["source"] == "precomputed run"]
        live = teachers[teachers["source"] != "precomputed run"]
        use = pre if len(pre) and (singles["source"] == "precomputed run").any() else (live if len(live) else pre)
        t = use.iloc[0]
        if t["metric"] == t["metric"]:  # an undefined teacher metric draws no line (never one at 0)
            teacher = (float(t["metric"]), f"{t['source']} {t['label']}")
    if len(singles):
        parts.append(pd.DataFrame({"method": singles["method"], "nominal": float("nan"), "sparsity": singles["sparsity"],
                                   "metric": singles["metric"], "spread": 0.0, "n": 1, "wall_min": float("nan"),
                                   "source": singles["source"], "label": singles["label"],
                                   "note": singles["note"] if "note" in singles else None}))
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["method", "nominal", "sparsity", "metric", "spread", "n", "wall_min", "source", "label", "note"])
    return CurveData(points, teacher, pub.reset_index(drop=True), error)
