"""App jobs: a launched run is a real `kasp` subprocess; queueing, the concurrency limit and SIGTERM cancel."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from kasp import jobs
from kasp.errors import KaspError
from kasp.runs import RunDir


def _wait(run: RunDir, states: tuple[str, ...], timeout: float = 120) -> str:
    end = time.time() + timeout
    while time.time() < end:
        jobs.pump(run.path.parent)
        if run.state() in states:
            return run.state()
        time.sleep(0.3)
    raise AssertionError(f"{run.id} stayed {run.state()}: {jobs.log_tail(run)}")


@pytest.fixture
def store(tmp_path, tiny_store) -> Path:
    shutil.copytree(tiny_store / "teacher", tmp_path / "teacher")
    return tmp_path


def test_queue_limit_and_sigterm_cancel(store, tiny_pretrained, monkeypatch):
    monkeypatch.setenv("KASP_MAX_JOBS", "1")
    monkeypatch.setenv("KASP_MAX_QUEUED", "1")
    long = {"task": "sst2", "model": str(tiny_pretrained), "method": "kasp", "sparsity": 0.5, "max_steps": 100000,
            "max_train_samples": 256, "eval_every": 0, "log_every": 1}
    first = jobs.launch("prune", long, store)
    second = jobs.launch("prune", long, store)
    assert second.state() == "queued"  # one slot: the second waits
    with pytest.raises(KaspError, match="wait for one to finish or cancel one"):
        jobs.launch("prune", long, store)
    # wait until the first one trains, then cancel it with SIGTERM like the Cancel button does
    end = time.time() + 120
    while not first.progress() and time.time() < end:
        time.sleep(0.3)
    assert first.progress(), jobs.log_tail(first)
    jobs.cancel(first)
    assert _wait(first, ("cancelled", "failed")) == "cancelled", first.status()
    assert not first.checkpoint.exists()
    # the queued run starts once the slot is free; cancel it too
    assert _wait(second, ("running",)) == "running"
    jobs.cancel(second)
    assert _wait(second, ("cancelled", "failed")) == "cancelled"
    with pytest.raises(KaspError, match="cancel it before"):
        _delete_running(store)
    jobs.delete(first)
    assert not first.path.exists()


def _delete_running(store: Path) -> None:
    run = RunDir.create(store / "fake-running")
    run.set_status("running", pid=__import__("os").getpid())
    jobs.delete(run)


def test_cancel_queued_run_is_immediate(store, monkeypatch, tiny_pretrained):
    monkeypatch.setenv("KASP_MAX_JOBS", "0")  # nothing may start
    run = jobs.launch("prune", {"task": "sst2", "model": str(tiny_pretrained), "sparsity": 0.5}, store)
    assert run.state() == "queued"
    jobs.cancel(run)
    assert run.state() == "cancelled"
