"""The run store: one directory per run, the only channel between a running job and the UI.

Layout of ``<store>/<run-id>/``::

    config.json      the full recipe (RunConfig) plus provenance (versions, data checksums, command)
    status.json      {"state": queued|running|done|failed|cancelled, "error", "pid", times, step}; written
                     by the app and by the run's process, each write under .status.lock (RunDir.update_status)
    progress.jsonl   one JSON object per line: step, loss terms, sparsity, lr, periodic dev metric
    checkpoint/      the final model, masks folded (vanilla from_pretrained loads it; safetensors)
    report.json      final metrics, per-matrix sparsity, sizes, wall time
    resume.json, resume-<step>/   the resume state of an unfinished run (kasp.training.resume)

JSON files are written atomically (temporary name, then ``os.replace``); the checkpoint directory
is written under a temporary name and renamed when complete, so nothing half-written looks finished.
A run ends in this order: checkpoint, report, status "done", then its resume state is deleted; what
a kill (SIGKILL) in between leaves is removed by the next listing (:meth:`RunDir.remove_leftovers`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from kasp.ground.errors import KaspError

STATES = ("queued", "running", "done", "failed", "cancelled")
#: the state a run reads as when its status.json is damaged (never written; see RunDir._stored_status)
DAMAGED = "damaged"
FINAL_STATES = ("done", "failed", "cancelled")
_TMP_CHECKPOINT = ".checkpoint-"  # RunDir.save_checkpoint's temporary directory
_TMP_RESUME = ".resume-"  # kasp.training.resume.save's temporary directory
_RESUME_POINTER = "resume.json"  # kasp.training.resume.POINTER
_STATUS_LOCK = ".status.lock"  # RunDir.status_lock
#: how long a status write waits for another process's (a write holds the lock for milliseconds)
STATUS_LOCK_SECONDS = 30.0


def runs_dir() -> Path:
    """The run store: ``$KASP_RUNS_DIR``, else ``./runs``."""
    from kasp.ground import settings

    return settings.get().runs_dir


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


_WARNED: set[tuple[str, str]] = set()
#: why a run file that is a symbolic link is not read (it could point at any file of the server)
_SPECIAL = "is a pipe, socket or device, not a file (reading it could wait for ever), so it is not read"


def _special(p: Path) -> bool:
    """Whether ``p`` exists and is neither a regular file nor a directory (a FIFO would block a read)."""
    import stat

    try:
        mode = os.stat(p).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


_LINK = "is a link, which KASP never writes (it could point at any file of this machine), so it is not read"


def warn_damaged(path: str | Path, why: str) -> str:
    """Say once per process, in one line on stderr, that a run-store file is damaged and skipped; return
    the line's text (without the "kasp: warning: " prefix) for a page or a table to show.

    ``path`` is the damaged file (``<store>/<run-id>/status.json``): the line names the run and the file."""
    p = Path(path)
    text = f"damaged run {p.parent.name}: {p.name} {why}; it is skipped (restore or delete {p})"
    if (str(p), why) not in _WARNED:
        _WARNED.add((str(p), why))
        print(f"kasp: warning: {text}", file=sys.stderr, flush=True)
    return text


def json_problem(path: str | Path, kind: type | None = dict) -> tuple[Any, str | None]:
    """(value, None) for a readable JSON file of the expected ``kind``, (None, None) when it does not
    exist, else (None, why it is damaged): not a regular file (a directory), unreadable, not UTF-8,
    empty, NUL bytes, not JSON, or JSON of another shape (a list where a dict belongs)."""
    p = Path(path)
    if p.is_symlink():  # KASP writes files in place (os.replace), never links: a planted link is not followed
        return None, _LINK
    if _special(p):
        return None, _SPECIAL
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        return None, "is a directory, not a file"
    except OSError as e:  # permission, ENAMETOOLONG, I/O error
        return None, f"cannot be read ({e.strerror or type(e).__name__})"
    if not raw.strip():
        return None, "is empty"
    if b"\x00" in raw:
        return None, "holds NUL bytes"
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"is not valid JSON ({e.msg} at line {e.lineno})"
    except (ValueError, RecursionError) as e:  # a number of over 4,300 digits; arrays nested thousands deep
        return None, f"is not JSON that KASP writes ({_json_limit(e)})"
    if kind is not None and not isinstance(value, kind):
        return None, f"holds a JSON {type(value).__name__}, not a {kind.__name__}"
    return value, None


def _json_limit(e: BaseException) -> str:
    """What a JSON parser's limit error means, in a few words."""
    return "nested too deeply" if isinstance(e, RecursionError) else "a number too long to read"


def read_json(path: str | Path, default: Any = None, kind: type | None = None) -> Any:
    """A JSON file's value, or ``default`` when it is missing or damaged (a damaged file is named once
    on stderr: :func:`warn_damaged`). ``kind`` (e.g. dict) also treats another JSON shape as damaged."""
    value, why = json_problem(path, kind)
    if why:
        warn_damaged(path, why)
    return default if value is None else value


def jsonl_problem(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """(records, None) of a JSON-lines file, or (the records that could be read, why it is damaged):
    a directory, unreadable, NUL bytes, or lines that are not JSON objects or not UTF-8. A missing file
    gives ([], None); an unfinished last line (a live writer's, or a file cut short) is skipped silently."""
    out: list[dict[str, Any]] = []
    p = Path(path)
    if p.is_symlink():
        return out, _LINK
    if _special(p):
        return out, _SPECIAL
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return out, None
    except IsADirectoryError:
        return out, "is a directory, not a file"
    except OSError as e:
        return out, f"cannot be read ({e.strerror or type(e).__name__})"
    if b"\x00" in raw:
        return out, "holds NUL bytes"
    lines = raw.split(b"\n")
    bad = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # ValueError: JSONDecodeError, huge numbers
            rec = None
        if isinstance(rec, dict):
            out.append(rec)
        elif i < len(lines) - 1:  # the torn last line of a live writer is expected; others are damage
            bad += 1
    return out, (f"has {bad} damaged line(s) (not a JSON object, or not UTF-8)" if bad else None)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records (JSON objects) of a JSON-lines file that a live run may be appending to: [] when
    the file does not exist; a line that does not parse (the one being written right now) or is not a
    JSON object is skipped. A damaged file (:func:`jsonl_problem`) gives the records that can be read,
    and is named once on stderr (:func:`warn_damaged`)."""
    out, why = jsonl_problem(path)
    if why:
        warn_damaged(path, why)
    return out


def measured_sparsity(report: dict[str, Any]) -> float | None:
    """Where a finished run sits on a sparsity axis (fraction of the encoder linear weights): the measured
    sparsity of a pruned run; for a small-dense run, which has no zeros, the sparsity its size equals
    (``report["small_dense"]["equivalent_sparsity"]``, kasp/core/small_dense.py). None when not reported."""
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
        the app, or already marked running with this process's pid; when the folder already holds a
        recipe, as a run queued by the app does in its config.json, it must equal ``recipe``). Anything
        else that exists is refused: a file, a finished or foreign run, any other non-empty folder (a
        user's checkpoint, say), so that nothing of the user's is overwritten.

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

    def set_status(self, state: str, when: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Set the run's state and ``fields`` in status.json (other fields kept), through :meth:`update_status`.

        ``when``: write only if the stored state is one of these (checked under the same lock as the write),
        e.g. ``when=("queued",)`` to mark a run started unless its process has already written its own state.

        Returns:
            whether it was written (always, without ``when``).

        Raises:
            ValueError: for an unknown state.
            KaspError: the run's status lock cannot be had (:meth:`status_lock`).
        """
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}")
        written = False

        def change(status: dict[str, Any]) -> dict[str, Any] | None:
            nonlocal written
            if when is not None and status.get("state") not in when:
                return None
            written = True
            return {**status, **fields, "state": state}

        self.update_status(change)
        return written

    def status_lock(self, timeout: float = STATUS_LOCK_SECONDS):
        """The run's status lock: a ``filelock.FileLock`` on ``<run>/.status.lock`` (a plain file, left in place).

        Raises:
            KaspError: when the lock file is a link (KASP never writes one; it is not followed).
        """
        from filelock import FileLock

        lock = self.path / _STATUS_LOCK
        if lock.is_symlink():
            raise KaspError(f"{lock} is a link, which KASP never writes: the status of run {self.id} is not written; "
                            f"remove the link ({lock}) and try again")
        return FileLock(str(lock), timeout=timeout)

    def update_status(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """The one read-modify-write of status.json: under the run's :meth:`status_lock`, read the stored status
        ({} when there is none; a damaged one reads as state "damaged"), give it to ``change``, and write what
        it returns (with ``updated`` set to now) atomically; ``change`` returning None writes nothing.

        The app (queue, cancel, dismiss) and the run's own process both write the status; the lock keeps one
        writer's fields (a cancel request, a step) from being lost to the other's write.

        Returns:
            the status as written, or as stored when nothing was written.

        Raises:
            KaspError: the lock cannot be had within :data:`STATUS_LOCK_SECONDS` seconds, or is a link.
        """
        from filelock import Timeout

        try:
            with self.status_lock():
                status = self._stored_status()
                new = change(dict(status))
                if new is None:
                    return status
                new = dict(new, updated=time.time())
                atomic_write_json(self.path / "status.json", new)
                return new
        except Timeout:
            raise KaspError(f"the status of run {self.id} is locked by another process ({self.path / _STATUS_LOCK}) "
                            f"for over {STATUS_LOCK_SECONDS:g} s; try again") from None

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
        if self.path.is_symlink():  # a folder linked in from elsewhere: nothing outside the store is removed
            return []
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
        """config.json ({} when missing or damaged: a damaged file is named once on stderr)."""
        return read_json(self.path / "config.json", {}, kind=dict)

    def recipe(self) -> dict[str, Any]:
        rec = self.config().get("recipe", {})
        return rec if isinstance(rec, dict) else {}

    def damage(self) -> list[str]:
        """One line per damaged file of the run (status.json, config.json, report.json, progress.jsonl,
        weights.jsonl): "damaged run <id>: report.json is not UTF-8 text; ...". [] when all are
        readable or absent. Each line is also said once on stderr."""
        out = []
        for name in ("status.json", "config.json", "report.json"):
            _, why = json_problem(self.path / name)
            if why:
                out.append(warn_damaged(self.path / name, why))
        for name in ("progress.jsonl", "weights.jsonl"):
            _, why = jsonl_problem(self.path / name)
            if why:
                out.append(warn_damaged(self.path / name, why))
        return out

    def status(self) -> dict[str, Any]:
        """status.json as written; a "running" run whose process is gone reads as ended (see :meth:`state`),
        with an ``error`` saying so when it was not cancelled."""
        status = self._stored_status()
        if status.get("state") in ("queued", "running") and self.path.is_symlink():
            # a folder linked in from elsewhere: the queue never starts it, nothing waits for it
            return dict(status, state="failed", error=f"not started: its folder is a link to {_target(self.path)}, "
                        "outside the run store; the queue starts only runs inside the store (copy the run instead)")
        if status.get("state") == "running" and not _valid_pid(status.get("pid")):
            return dict(status, state="failed", error=f"its status says running but names no valid process id "
                        f"({str(status.get('pid'))[:20]!r}): not written by KASP, nothing waits for it")
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
        """status.json as stored; a damaged one reads as state "damaged" with the reason in ``error``
        (such a run is listed and named, never started, resumed or trusted)."""
        value, why = json_problem(self.path / "status.json")
        if not why and value and "state" in value and (not isinstance(value["state"], str) or value["state"] not in STATES):
            why = f"holds an unknown state {str(value['state'])[:40]!r} (one of {', '.join(STATES)})"
        if why:
            return {"state": DAMAGED, "error": warn_damaged(self.path / "status.json", why)}
        return value or {}

    def state(self) -> str:
        """The run's state; a "running" run whose process died without writing a final state is
        "cancelled" when a cancel was requested (killed while still starting up), else "failed"."""
        return self.status().get("state", "unknown")

    def report(self) -> dict[str, Any]:
        """report.json ({} when missing or damaged: a damaged file is named once on stderr)."""
        return read_json(self.path / "report.json", {}, kind=dict)

    def progress(self) -> list[dict[str, Any]]:
        """progress.jsonl's records that have a numeric ``step`` (an eval record also a ``metrics``
        object); damaged lines are skipped and named once on stderr (:func:`read_jsonl`)."""
        out = []
        for r in read_jsonl(self.path / "progress.jsonl"):
            step = r.get("step")
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                continue
            if r.get("type") == "eval" and not isinstance(r.get("metrics"), dict):
                continue
            out.append(r)
        return out


def _target(path: Path) -> str:
    try:
        return str(os.readlink(path))[:200]
    except OSError:
        return "elsewhere"


def _valid_pid(pid: Any) -> bool:
    """A process id KASP writes: a whole number above 0 (never a bool, 0 or -1, which ``kill`` reads as the
    process group or every process); 1 only when process 1 is a ``kasp`` command (a container's only process),
    never the system's init."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 1:
        return False
    return pid != 1 or is_kasp_process(1)


def is_kasp_process(pid: Any) -> bool:
    """Whether ``pid`` is a running ``kasp`` command (``python -P -m kasp ...``, the ``kasp`` script), read from
    /proc; where there is no /proc, any whole number above 0 passes."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 1:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return any(a == b"kasp" or a.endswith(b"/kasp") or b"run_module('kasp'" in a for a in argv[:6])


def _pid_alive(pid: Any) -> bool:
    if not _valid_pid(pid):
        return True  # unknown: trust the recorded state (RunDir.status reads a running run without one as failed)
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
    try:
        if not root.is_dir():
            return []
        runs = [RunDir(p) for p in root.iterdir()
                if p.is_dir() and not p.name.startswith(".") and ((p / "status.json").exists() or (p / "config.json").exists())]
    except OSError as e:  # unreadable store, a name over the system's limit: one line, never a traceback
        print(f"kasp: warning: cannot read the run store {str(root)[:200]}: {e.strerror or type(e).__name__}",
              file=sys.stderr, flush=True)
        return []
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
