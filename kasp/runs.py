"""The run store: one directory per run, the only channel between a running job and the UI.

Layout of ``<store>/<run-id>/``::

    config.json      the full recipe (RunConfig) plus provenance (versions, data checksums, command)
    status.json      {"state": queued|running|done|failed|cancelled, "error", "pid", times, step}
    progress.jsonl   one JSON object per line: step, loss terms, sparsity, lr, periodic dev metric
    checkpoint/      the final model, masks folded (vanilla from_pretrained loads it; safetensors)
    report.json      final metrics, per-matrix sparsity, sizes, wall time
    resume.json, resume-<step>/   the resume state of an unfinished run (kasp.resume)

JSON files are written atomically (temporary name, then ``os.replace``); the checkpoint directory
is written under a temporary name and renamed when complete, so nothing half-written looks finished.
A run ends in this order: checkpoint, report, status "done", then its resume state is deleted; what
a kill (SIGKILL) in between leaves is removed by the next listing (:meth:`RunDir.remove_leftovers`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from kasp.errors import KaspError

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
_TMP_CHECKPOINT = ".checkpoint-"  # RunDir.save_checkpoint's temporary directory
_TMP_RESUME = ".resume-"  # kasp.resume.save's temporary directory
_RESUME_POINTER = "resume.json"  # kasp.resume.POINTER


def runs_dir() -> Path:
    """The run store: ``$KASP_RUNS_DIR``, else ``./runs``."""
    return Path(os.environ.get("KASP_RUNS_DIR", "runs"))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file that a live run may be appending to: [] when the file does not
    exist; a line that does not parse (the one being written right now) is skipped."""
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    except FileNotFoundError:
        pass
    return out


def measured_sparsity(report: dict[str, Any]) -> float | None:
    """Where a finished run sits on a sparsity axis (fraction of the encoder linear weights): the measured
    sparsity of a pruned run; for a small-dense run, which has no zeros, the sparsity its size equals
    (``report["small_dense"]["equivalent_sparsity"]``, kasp/small_dense.py). None when not reported."""
    small = report.get("small_dense") or {}
    if "equivalent_sparsity" in small:
        return small["equivalent_sparsity"]
    return (report.get("sparsity") or {}).get("pruned_sparsity")


def new_run_id(task: str, method: str, sparsity: float) -> str:
    """e.g. ``20261129-183000-sst2-kasp-s90`` (UTC time; sparsity in percent)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    tag = method if method == "finetune" else f"{method}-s{round(sparsity * 100):g}"
    return f"{stamp}-{task}-{tag}"


@dataclass
class RunDir:
    """Reader and writer of one run directory."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    # --- writing (the training process) -----------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, exist_ok: bool = False, recipe: dict[str, Any] | None = None) -> "RunDir":
        """Create the run directory, refusing before anything is written to reuse a folder that is
        not this run's own.

        Accepted: a new path, an empty directory, or an unfinished run of the same recipe (queued by
        the app with this command, or already marked running with this process's pid; when the
        folder already holds a recipe it must equal ``recipe``). Anything else that exists is
        refused: a file, a finished or foreign run, any other non-empty folder (a user's checkpoint,
        say), so that nothing of the user's is overwritten.

        Raises:
            KaspError: naming the folder and what is in it (unless ``exist_ok``).
        """
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise KaspError(f"--out {p} is a file; give a new directory for the run")
        if p.is_dir() and any(p.iterdir()) and not exist_ok:
            status = read_json(p / "status.json", {}) or {}
            state = status.get("state")
            # a run queued by the app, possibly already marked running by the launcher with our own pid
            ours = state == "queued" or (state == "running" and status.get("pid") == os.getpid())
            if state is None:
                raise KaspError(f"--out {p} exists and is not empty, and it is not a KASP run (no status.json); "
                                "nothing was written. Choose a new directory.")
            if not ours:
                raise KaspError(f"{p} already holds a run ({state}); choose another --out or delete it")
            stored = (read_json(p / "config.json", {}) or {}).get("recipe")
            if recipe is not None and stored and stored != recipe:
                diff = sorted(k for k in set(stored) | set(recipe) if stored.get(k) != recipe.get(k))
                raise KaspError(f"{p} holds an unfinished run of another recipe (differs in {', '.join(diff[:5])}); "
                                "choose another --out")
        p.mkdir(parents=True, exist_ok=True)
        return cls(p)

    def write_config(self, config: dict[str, Any], provenance: dict[str, Any]) -> None:
        atomic_write_json(self.path / "config.json", {"recipe": config, "provenance": provenance})

    def set_status(self, state: str, **fields: Any) -> None:
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        status = self._stored_status()
        status.update(fields)
        status["state"] = state
        status["updated"] = time.time()
        atomic_write_json(self.path / "status.json", status)

    def log(self, record: dict[str, Any]) -> None:
        """Append one progress record (one write call per line; readers skip a torn last line)."""
        with open(self.path / "progress.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def write_report(self, report: dict[str, Any]) -> None:
        atomic_write_json(self.path / "report.json", report)

    def save_checkpoint(self, model, tokenizer) -> Path:
        """``save_pretrained`` into a temporary sibling directory, then rename it to ``checkpoint/``.

        The temporary directory is removed on every exception (and any a killed earlier save left is
        removed first); only a kill (SIGKILL, power loss) mid-save can leave one, which
        :meth:`remove_leftovers` removes later.
        """
        for old in self.path.glob(_TMP_CHECKPOINT + "*"):  # a killed earlier save of this run
            shutil.rmtree(old, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=_TMP_CHECKPOINT))
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            if self.checkpoint.exists():
                shutil.rmtree(self.checkpoint)
            os.replace(tmp, self.checkpoint)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.checkpoint

    def remove_leftovers(self) -> list[str]:
        """Remove what a killed process left in this run's folder, once no process writes to it.

        For a run that is done, failed or cancelled (never a queued or running one): the hidden
        temporary copies of a save that never finished (``.checkpoint-*``: a full copy of the weights;
        ``.resume-*``), and the resume states that can no longer be resumed from: all of them once the
        run is done (``resume.json``, ``resume-<step>/``), else those ``resume.json`` does not name.
        Errors (a read-only store) are ignored.

        Returns:
            the names removed (empty when there was nothing to remove).
        """
        try:
            names = [e.name for e in os.scandir(self.path)]
        except OSError:
            return []
        temps = [n for n in names if n.startswith((_TMP_CHECKPOINT, _TMP_RESUME))]
        states = [n for n in names if n.startswith("resume-") or n == _RESUME_POINTER]
        if not temps and not states:
            return []
        state = self.state()
        if state not in FINAL_STATES:
            return []
        if state == "done":
            gone = temps + states
        else:
            named = (read_json(self.path / _RESUME_POINTER, {}) or {}).get("dir") if _RESUME_POINTER in names else None
            gone = temps + [n for n in states if n != _RESUME_POINTER and n != named]
        removed = []
        for n in gone:
            p = self.path / n
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(n)
            except OSError:
                pass
        return removed

    # --- reading (the UI, the CLI) ----------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return read_json(self.path / "config.json", {}) or {}

    def recipe(self) -> dict[str, Any]:
        return self.config().get("recipe", {})

    def status(self) -> dict[str, Any]:
        """status.json as written; a "running" run whose process is gone reads as ended (see :meth:`state`),
        with an ``error`` saying so when it was not cancelled."""
        status = self._stored_status()
        if status.get("state") == "running" and not _pid_alive(status.get("pid")):
            status = dict(status)
            if status.get("cancel_requested"):
                status["state"] = "cancelled"
                status.setdefault("error", "cancelled")
            else:
                status["state"] = "failed"
                if not status.get("error"):
                    status["error"] = (f"the process (pid {status.get('pid')}) ended without writing a final status: "
                                       "it was killed (for example SIGKILL, or out of memory) or crashed hard; "
                                       "see log.txt for its last output")
        return status

    def _stored_status(self) -> dict[str, Any]:
        return read_json(self.path / "status.json", {}) or {}

    def state(self) -> str:
        """The run's state; a "running" run whose process died without writing a final state is
        "cancelled" when a cancel was requested (killed while still starting up), else "failed"."""
        return self.status().get("state", "unknown")

    def report(self) -> dict[str, Any]:
        return read_json(self.path / "report.json", {}) or {}

    def progress(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "progress.jsonl")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # unknown: trust the recorded state
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def list_runs(store: str | Path | None = None) -> list[RunDir]:
    """Every run directory in the store (those with a status or config), newest first.

    Also removes what killed processes left in runs that have ended (:meth:`RunDir.remove_leftovers`).
    """
    root = Path(store or runs_dir())
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and ((p / "status.json").exists() or (p / "config.json").exists())]
    for r in runs:
        r.remove_leftovers()
    return sorted(runs, key=lambda r: r.id, reverse=True)


def iter_done(store: str | Path | None = None, **match: Any) -> Iterator[RunDir]:
    """Finished (state done) runs whose recipe matches every ``key=value`` in ``match``."""
    for r in list_runs(store):
        if r.state() != "done" or not r.checkpoint.is_dir():
            continue
        rec = r.recipe()
        if all(rec.get(k) == v for k, v in match.items()):
            yield r


def find_teacher(task: str, model: str, store: str | Path | None = None) -> RunDir:
    """The newest finished finetune run for ``task`` and ``model`` in the store.

    Raises:
        KaspError: if there is none, naming the command that makes one.
    """
    for r in iter_done(store, kind="finetune", task=task, model=model):
        return r
    model_flag = "" if model == "default" else f" --model {model}"
    raise KaspError(f"no fine-tuned teacher for task {task} and model {model!r} in the run store "
                    f"{Path(store or runs_dir())}. Make one with `kasp finetune --task {task}{model_flag}`, "
                    "or pass --teacher RUN_OR_CHECKPOINT_DIR.")
