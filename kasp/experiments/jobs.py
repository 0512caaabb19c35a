"""Background jobs for the app: each run is a subprocess of the ``kasp`` CLI writing into the store.

The store on disk is the only state: a launch writes a run directory with status "queued", the
options it was given (``status["job"] = {"kind": "prune", "options": {field: value}}``, never a
command line: what :func:`job_command` starts) and the validated recipe with its defaults filled in
(``config.json``'s ``recipe``, as a started run writes it: what the app shows); :func:`pump` starts
queued runs while fewer than :func:`max_jobs` are running; cancel sends SIGTERM (the CLI then stops
after the current step and marks the run cancelled). So a job survives a browser reload, a page
switch and a restart of the app, and anything the app does the CLI can do.

What a queued run may start is never read from the store: :func:`job_command` builds the ``kasp``
argument list itself (``python -P -m kasp <kind> --field=value ... --out=<the run's folder>``: no
shell, no module of the working directory) from the stored recipe, after checking every option
against :class:`kasp.spec.config.RunConfig` (known field, right type, safe text, valid recipe). A run
directory copied into the store with anything else (a ``command`` list, an unknown option, a value
with shell characters) is marked failed with a one-line reason and nothing is executed.

The queue advances without any browser: every ``kasp finetune`` / ``kasp prune`` process pumps the
queue of its store when it ends (done, failed or cancelled), and ``kasp worker`` pumps until the
queue is empty (for a run that was killed, which cannot pump). The Prune page's fragment pumps too.
Every pump holds the store's file lock (``<store>/.queue.lock``, ``filelock``) while it reads the
states and starts runs, so two pumps at once (two browser sessions, a finishing run and the page)
never start the same queued run twice.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.ground.finite import is_finite_number
from kasp.ground.runs import RunDir, list_runs, new_run_id, runs_dir

_CHILDREN: dict[int, subprocess.Popen] = {}  # reaped by pump(); the module outlives Streamlit reruns


JOB_KINDS = ("finetune", "prune")
#: characters a text option of a queued run may not hold: control characters, and those a shell or a
#: glob would give a meaning (no shell ever sees them, but a recipe holding them was not written by KASP)
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f`$;|&<>\\\"'*?!{}()\[\]]")
_MAX_TEXT = 4096
#: the largest whole number a queued run's option may hold (a step or sample count beyond it is no recipe)
_MAX_INT = 2**31 - 1


def max_jobs() -> int:
    """How many runs may run at once: ``$KASP_MAX_JOBS`` (default 1; 0: none starts), read at each call."""
    return settings.get().max_jobs


def max_queued() -> int:
    """How many runs may wait in the queue beside the running ones: ``$KASP_MAX_QUEUED`` (default 2)."""
    return settings.get().max_queued


def _unsafe_char(v: str) -> str | None:
    """The first character of ``v`` a queued run's text may not hold: :data:`_UNSAFE_TEXT`, or any Unicode
    control, format (bidirectional overrides, zero-width), line/paragraph separator, private-use or
    surrogate character (text that shows other than it is)."""
    import unicodedata

    bad = _UNSAFE_TEXT.search(v)
    if bad:
        return bad.group()
    return next((ch for ch in v if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Co", "Cs")), None)


def _field_types() -> dict[str, type]:
    """Recipe field -> the Python type its value must have (bool, int, float or str; None always allowed)."""
    import typing

    from kasp.spec.config import RunConfig

    out: dict[str, type] = {}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) is typing.Literal:
            out[name] = str
        else:
            base = args[0] if args else hint
            out[name] = base if base in (bool, int, float, str) else str
    return out


def validate_job(kind: Any, options: Any) -> dict[str, Any]:
    """Check the recipe of a queued run option by option; return the options to run (None values dropped).

    ``kind`` must be "finetune" or "prune"; ``options`` a dict of :class:`kasp.spec.config.RunConfig` field
    names (not ``kind``; a finetune run takes no prune-only field) to values of the field's type
    (bool, int, float, str; floats finite), text without control or shell characters, not starting
    with "-" and at most 4,096 characters; together a recipe that :func:`kasp.spec.config.config_from_options`
    accepts.

    Raises:
        KaspError: one line naming the first bad entry.
    """
    from kasp.spec.config import FINETUNE_ONLY_FIELDS, PRUNE_ONLY_FIELDS, config_from_options

    if not isinstance(kind, str) or kind not in JOB_KINDS:
        raise KaspError(f"unknown kind of run {str(kind)[:40]!r}: a queued run is `kasp finetune` or `kasp prune`")
    if not isinstance(options, dict):
        raise KaspError(f"the options of a queued run must be a JSON object of recipe fields, not {type(options).__name__}")
    types = _field_types()
    allowed = set(types) - {"kind"} - set(PRUNE_ONLY_FIELDS if kind == "finetune" else FINETUNE_ONLY_FIELDS)
    clean: dict[str, Any] = {}
    for k, v in options.items():
        if not isinstance(k, str) or k not in allowed:
            raise KaspError(f"unknown option {str(k)[:40]!r} for `kasp {kind}`: a queued run takes only recipe fields "
                            f"(see `kasp {kind} --help`)")
        if v is None:
            continue
        want = types[k]
        ok = (isinstance(v, bool) if want is bool else
              isinstance(v, int) and not isinstance(v, bool) if want is int else
              is_finite_number(v) if want is float else
              isinstance(v, str))
        if ok and want is int and abs(v) > _MAX_INT:
            raise KaspError(f"option {k} of a queued run is a whole number over {_MAX_INT:,}, which no recipe needs: "
                            "use a smaller value and launch the run again")
        if not ok:
            what = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}[want]
            raise KaspError(f"option {k} of a queued run must be {what}, got {_short(v)}; launch the run again")
        if isinstance(v, str):
            bad = _unsafe_char(v)
            why = ("is empty" if not v else f"is longer than {_MAX_TEXT} characters" if len(v) > _MAX_TEXT else
                   "starts with '-'" if v.startswith("-") else f"holds the character {bad!r}" if bad else None)
            if why:
                raise KaspError(f"option {k} of a queued run ({v[:40]!r}) {why}, which a queued run may not hold: "
                                "use a value without it and launch the run again")
        clean[k] = v
    config_from_options(kind, clean)  # the recipe as a whole: ranges, choices, task (KaspError "invalid recipe")
    return clean


def _short(v: Any) -> str:
    """``repr`` of a value cut to 40 characters (a huge int is not even turned into text)."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _MAX_INT:
        return "a huge whole number"
    if isinstance(v, (dict, list)):
        return f"a JSON {'object' if isinstance(v, dict) else 'list'}"
    return repr(str(v)[:40])


def _python_m_kasp() -> list[str]:
    """``python -m kasp`` that never imports a ``kasp`` folder of the working directory (a run directory
    named ``kasp`` when the run store is the working directory): ``-P`` (Python 3.11+), else the same by hand."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", "-m", "kasp"]
    return [sys.executable, "-c", "import runpy, sys; del sys.path[0]; runpy.run_module('kasp', run_name='__main__', "
            "alter_sys=True)"]


def _argv(kind: str, options: dict[str, Any], out: Path, store: Path) -> list[str]:
    """``python -P -m kasp <kind> --field=value ... --out=... --runs-dir=... --no-progress`` for validated options.

    ``--flag=value`` keeps every value one argument that argparse never reads as another flag.
    """
    args = [*_python_m_kasp(), kind]
    for k, v in options.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            args.append(flag if v else "--no-" + k.replace("_", "-"))
        else:
            args.append(f"{flag}={v!r}" if isinstance(v, float) else f"{flag}={v}")
    return args + [f"--out={out}", f"--runs-dir={store}", "--no-progress"]


def queued_job(status: Any) -> tuple[str, dict[str, Any]]:
    """The (kind, options) stored in a queued run's status, validated by :func:`validate_job`.

    Raises:
        KaspError: when the status holds no recipe (for example a ``command`` line written by an older
            KASP or planted in the store) or one that does not validate; one line saying why.
    """
    job = status.get("job") if isinstance(status, dict) else None
    if job is None:
        if isinstance(status, dict) and "command" in status:
            raise KaspError("its status holds a command line instead of a KASP recipe (an older KASP's queue, or "
                            "a copied run): nothing was run; launch it again from the Prune page")
        raise KaspError("queued without a recipe: nothing was run; launch it again from the Prune page")
    if not isinstance(job, dict):
        raise KaspError("its queued recipe is not a JSON object: nothing was run; launch it again from the Prune page")
    return job.get("kind"), validate_job(job.get("kind"), job.get("options"))


def queued_config(status: Any):
    """The :class:`kasp.spec.config.RunConfig` a queued run will run (the recipe's defaults filled in), or None
    when its status holds no valid recipe (:func:`queued_job`). For tables and estimates."""
    from kasp.spec.config import config_from_options

    try:
        kind, options = queued_job(status)
        return config_from_options(kind, options)
    except KaspError:
        return None


def job_command(run: RunDir) -> list[str]:
    """The argument list that starts a queued run: built here from its validated recipe, with ``--out``
    the run's own folder and ``--runs-dir`` the store it lies in; nothing of it is read from the store.

    Raises:
        KaspError: as :func:`queued_job`, or when the run's folder holds anything but plain files (a link, a
            folder: a queued run holds only its status.json and config.json, and a link would have the run
            write elsewhere).
    """
    kind, options = queued_job(run.status())
    _check_queued_folder(run)
    return _argv(kind, options, run.path, run.path.parent)


def _check_queued_folder(run: RunDir) -> None:
    """Refuse a queued run whose folder is a link or holds a link or a folder (what :func:`launch` writes is
    status.json and config.json, plain files; a planted ``log.txt`` or ``progress.jsonl`` link would have the
    run append to a file elsewhere, a planted ``resume-*`` folder would be trained from). A config.json whose
    recipe is not the one the queued options make is refused by the run itself (:meth:`kasp.ground.runs.RunDir.create`)."""
    if run.path.is_symlink():
        raise KaspError("its folder is a link to elsewhere: nothing was run; copy the run into the store instead")
    try:
        entries = list(os.scandir(run.path))
    except OSError as e:
        raise KaspError(f"its folder cannot be read ({e.strerror or type(e).__name__}): nothing was run") from None
    for e in entries:
        if e.is_symlink() or not e.is_file(follow_symlinks=False):
            what = "a link" if e.is_symlink() else "a folder" if e.is_dir(follow_symlinks=False) else "not a plain file"
            raise KaspError(f"its folder holds {e.name[:60]!r}, {what}, which a queued run never has: nothing was run; "
                            "launch it again from the Prune page")


def active_runs(store: str | Path | None = None) -> list[RunDir]:
    """Runs that are queued or running (oldest first)."""
    return sorted((r for r in list_runs(store) if r.state() in ("queued", "running")), key=lambda r: r.id)


def run_recipe(run: RunDir) -> dict[str, Any]:
    """A run's recipe: its config.json (written when the run is queued, :func:`launch`, and again when it
    starts); for a run queued by an older KASP, which wrote no config.json, the options it was queued with
    (:func:`queued_config`, defaults filled in); {} when it has neither, or a queued recipe that does not
    validate (the queue refuses it)."""
    rec = run.recipe()
    if rec:
        return rec
    cfg = queued_config(run.status())
    return cfg.to_dict() if cfg is not None else {}


def active_teacher(task: str, model: str, store: str | Path | None = None) -> RunDir | None:
    """The fine-tuning run (the teacher) of ``task`` and ``model`` that is queued or running, or None.

    One teacher serves every session's prune runs of a task and model, so the queue holds at most one
    at a time (:func:`launch` refuses a second)."""
    from kasp.spec.tasks import get_task

    def same_task(other: Any) -> bool:
        try:
            return isinstance(other, str) and get_task(other).name == get_task(task).name
        except KaspError:  # a task this KASP does not know: not the same
            return False

    for r in active_runs(store):
        rec = run_recipe(r)
        if rec.get("kind") == "finetune" and same_task(rec.get("task")) \
                and (rec.get("model") or "default") == (model or "default"):
            return r
    return None


def duplicate_teacher_message(run: RunDir, task: str, model: str, session: str | None = None) -> str:
    """Why a second teacher of the same task and model is not queued, naming the one that is."""
    from kasp.spec.tasks import task_name

    who = ("your session" if session and owner(run) == session else "another browser session" if owner(run)
           else "the command line")
    return (f"A teacher for {task_name(task)} and model `{model or 'default'}` is already {run.state()}: {run.id}, "
            f"launched by {who}. One teacher serves every session's prune runs of this task and model, so no second "
            "one is queued; when it has finished, launch your prune run on it.")


def launch(kind: str, options: dict[str, Any], store: str | Path | None = None, owner: str | None = None) -> RunDir:
    """Queue a run of ``kasp <kind>`` with ``options`` (flag name -> value) and start it if a slot is free.

    ``owner`` (the launching browser session's token, see :func:`can_control`) is stored in the
    run's status; only that session, or an operator, may cancel or delete the run from the app.

    The queue check and the creation of the queued run hold the store's :func:`queue_lock`, so two
    sessions launching at once cannot both take the last place.

    Raises:
        KaspError: when the options do not validate (:func:`validate_job`), when a teacher (finetune run)
            of the same task and model is queued or running already (:func:`active_teacher`), when ``max_jobs`` runs are
            running and :func:`max_queued` more are waiting already, or the queue lock cannot be had within a minute.
    """
    from filelock import Timeout

    from kasp.spec.config import config_from_options

    options = validate_job(kind, options)
    for k in ("model", "teacher"):  # a relative folder means the app's working directory, not the worker's
        v = options.get(k)
        if isinstance(v, str) and v != "default" and not os.path.isabs(v) and Path(v).exists():
            options[k] = str(Path(v).resolve())
    cfg = config_from_options(kind, options)
    store = Path(store or runs_dir())
    store.mkdir(parents=True, exist_ok=True)
    try:
        with queue_lock(store):  # the check and the new queued run are one step: two sessions cannot both pass
            active = active_runs(store)
            running = [r for r in active if r.state() == "running"]
            queued = [r for r in active if r.state() == "queued"]
            if kind == "finetune":  # one teacher per task and model in the queue (a second session's is a duplicate)
                busy = active_teacher(cfg.task, cfg.model, store)
                if busy is not None:
                    raise KaspError(duplicate_teacher_message(busy, cfg.task, cfg.model, owner))
            if len(running) >= max_jobs() and len(queued) >= max_queued():
                raise KaspError(f"{len(running)} run(s) running and {len(queued)} queued already, the most this machine "
                                "takes; wait for one to finish or cancel one")
            run_id = new_run_id(cfg.task, cfg.method, cfg.sparsity)
            path = store / run_id
            n = 1
            while path.exists():
                n += 1
                path = store / f"{run_id}-{n}"
            run = RunDir.create(path)
            now = time.time()
            run.set_status("queued", job={"kind": kind, "options": options}, queued_at=now, source="app",
                           owner=owner)
            # the recipe as the run will run it, where a started run keeps it (config.json, kasp.ground.runs): tables,
            # estimates and the live panel read it there; the started run checks that its own recipe equals it
            run.write_config(cfg.to_dict(), {"queued": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                                              "source": "app"})
    except Timeout:
        raise KaspError(f"the run queue of {store} is locked by another process ({store / '.queue.lock'}); "
                        "try again in a moment") from None
    except IsADirectoryError:
        raise _lock_is_a_folder(store) from None
    pump(store)
    return run


def _lock_is_a_folder(store: Path) -> KaspError:
    return KaspError(f"the run queue's lock file {store / '.queue.lock'} is a folder: nothing was started; remove it "
                     f"(rmdir {store / '.queue.lock'}) and try again")


def queue_lock(store: str | Path, timeout: float = 60):
    """The store's queue lock (a ``filelock.FileLock`` on ``<store>/.queue.lock``; not reentrant across objects)."""
    from filelock import FileLock

    return FileLock(str(Path(store) / ".queue.lock"), timeout=timeout)


def pump(store: str | Path | None = None) -> list[RunDir]:
    """Start queued runs, oldest first, while fewer than :func:`max_jobs` run. Returns those started.

    Holds the store's :func:`queue_lock` throughout, so concurrent pumps (other sessions, other
    processes) start each queued run exactly once.

    Raises:
        KaspError: when the lock cannot be had within a minute.
    """
    from filelock import Timeout

    store = Path(store or runs_dir())
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            del _CHILDREN[pid]
    if not store.is_dir():
        return []
    try:
        with queue_lock(store):
            return _start_queued(store)
    except Timeout:
        raise KaspError(f"the run queue of {store} is locked by another process ({store / '.queue.lock'}); "
                        "try again in a moment") from None
    except IsADirectoryError:
        raise _lock_is_a_folder(store) from None


def advance_queue(store: str | Path | None = None) -> list[RunDir]:
    """Called by a finishing ``kasp finetune`` / ``prune``: start the next queued runs of its store.

    Never raises (a run's own result must not be lost to a queue problem); returns those started.
    """
    try:
        store = Path(store or runs_dir())
        if not any(r.state() == "queued" for r in list_runs(store)):
            return []
        return pump(store)
    except Exception as e:  # noqa: BLE001
        print(f"kasp: could not start the next queued run: {e}", file=sys.stderr)
        return []


def work(store: str | Path | None = None, poll_seconds: float = 2.0, stop=lambda: False) -> int:
    """Pump the queue every ``poll_seconds`` until no run is queued or running (``kasp worker``).

    Returns:
        the number of runs this worker started.
    """
    started = 0
    while not stop():
        started += len(pump(store))
        if not active_runs(store):
            break
        time.sleep(poll_seconds)
    return started


def _start_queued(store: Path) -> list[RunDir]:
    """Under the queue lock: refuse every queued run whose recipe does not validate (marked failed,
    nothing run), then start valid ones, oldest first, while slots are free."""
    active = active_runs(store)
    free = max_jobs() - sum(r.state() == "running" for r in active)
    started = []
    for run in (r for r in active if r.state() == "queued"):
        try:
            cmd = job_command(run)
        except KaspError as e:
            run.set_status("failed", error=f"not started: {e}", finished=time.time())
            continue
        if free <= 0:
            continue
        fd = os.open(run.path / "log.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        log = os.fdopen(fd, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
        log.close()
        _CHILDREN[proc.pid] = proc
        # unless the child has already written its own state (checked and written under the run's status lock)
        run.set_status("running", when=("queued",), pid=proc.pid, started=time.time())
        started.append(run)
        free -= 1
    return started


def cancel(run: RunDir) -> None:
    """Cancel a queued run at once, or ask a running one to stop (SIGTERM: it stops after the current step)."""
    state = run.state()
    if state == "queued":
        if run.set_status("cancelled", when=("queued",), error="cancelled before it started", finished=time.time()):
            return
        state = run.state()  # started in the meantime: stop it as a running run
    if state == "running":
        pid = run.status().get("pid")
        if not _is_kasp_process(pid):  # a reused or planted pid: never signal a process that is not a KASP run
            run.set_status("cancelled", error=f"its process (pid {pid}) is not a KASP run any more: nothing was "
                           "signalled", finished=time.time())
            return
        run.set_status("running", cancel_requested=True)
        try:
            os.kill(int(pid), signal.SIGTERM)
        except (ProcessLookupError, TypeError, ValueError):
            run.set_status("cancelled", error="the process had already exited", finished=time.time())


def _is_kasp_process(pid: Any) -> bool:
    """Whether ``pid`` is a running ``kasp`` command (:func:`kasp.ground.runs.is_kasp_process`)."""
    from kasp.ground.runs import is_kasp_process

    return is_kasp_process(pid)


def delete(run: RunDir) -> None:
    """Delete a finished run's directory.

    Raises:
        KaspError: if the run is still queued or running (cancel it first).
    """
    if run.state() in ("queued", "running"):
        raise KaspError(f"{run.id} is {run.state()}: cancel it before deleting it")
    if run.path.is_symlink():  # a folder linked in from elsewhere: remove the link, never what it points to
        run.path.unlink()
        return
    shutil.rmtree(run.path)


def log_tail(run: RunDir, lines: int = 20) -> str:
    """The last lines of a run's subprocess output (for the error panel of a failed run)."""
    p = run.path / "log.txt"
    if p.is_symlink() or (p.exists() and not p.is_file()):  # never a server file through a link, never a FIFO
        return "(log.txt is a link or not a plain file, which KASP never writes: not shown)"
    try:
        text = (run.path / "log.txt").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])


# --- ownership and the queue, as the app shows them ----------------------------------------------

def queue_full(store: str | Path | None = None) -> bool:
    """True when :func:`max_jobs` runs are running and :func:`max_queued` more wait: :func:`launch` would refuse."""
    active = active_runs(store)
    running = sum(r.state() == "running" for r in active)
    return running >= max_jobs() and len(active) - running >= max_queued()


def queue_position(run: RunDir, store: str | Path | None = None) -> dict[str, Any] | None:
    """Where a queued run stands: ``{"position": k, "of": n, "ahead": [queued ids before it],
    "running": [running ids]}`` (1-based position among the n queued runs, oldest first), or None
    when the run is not queued."""
    if run.state() != "queued":
        return None
    active = active_runs(store if store is not None else run.path.parent)
    queued = [r.id for r in active if r.state() == "queued"]
    if run.id not in queued:
        return None
    k = queued.index(run.id)
    return {"position": k + 1, "of": len(queued), "ahead": queued[:k],
            "running": [r.id for r in active if r.state() == "running"]}


def owner(run: RunDir) -> str | None:
    """The token of the app session that launched the run; None for a run started from the command line."""
    return run.status().get("owner")


def can_control(run: RunDir, session: str | None, operator: bool = False) -> bool:
    """Whether a browser session may cancel or delete ``run``: its own runs only, any run for an operator.

    Runs launched from the command line have no owner and are read-only unless ``operator``.
    """
    if operator:
        return True
    mine = owner(run)
    return session is not None and mine is not None and mine == session


def dismiss(run: RunDir) -> None:
    """Mark a finished, failed or cancelled run as dismissed from its owner's live panel (the run stays)."""
    state = run.state()
    if state in ("queued", "running"):
        raise KaspError(f"{run.id} is {state}: only a finished, failed or cancelled run can be dismissed")
    run.set_status(state, dismissed=True)
