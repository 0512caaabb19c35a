"""App jobs: a launched run is a real `kasp` subprocess; queueing, the concurrency limit and SIGTERM cancel."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from kasp.experiments import jobs
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir


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


@pytest.mark.slow
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


@pytest.mark.parametrize("kind, options", [
    ("prune", {"task": "sst2", "sparsity": 0.37, "max_steps": 7, "lr": 3.3e-05, "eval_every": 0,
               "teacher_cache": False}),
    ("prune", {"task": "mrpc", "method": "magnitude", "sparsity": 0.9, "time_budget": 2.5}),
    ("finetune", {"task": "rte", "epochs": 1.5, "seed": 7}),
])
def test_a_queued_run_keeps_its_recipe_on_disk(tmp_path, tiny_pretrained, monkeypatch, kind, options):
    """Launch writes the validated recipe (defaults filled in) into config.json, as a started run does; the
    run that the queue starts computes the very same recipe from its argument list, so the check of
    RunDir.create (an unfinished run's folder must hold the same recipe) passes."""
    import json

    from kasp.cli import build_parser, config_from_args
    from kasp.spec.config import config_from_options

    monkeypatch.setenv("KASP_MAX_JOBS", "0")  # nothing starts
    options = dict(options, model=str(tiny_pretrained))
    run = jobs.launch(kind, options, tmp_path)
    stored = json.loads((run.path / "config.json").read_text())
    assert stored["recipe"] == config_from_options(kind, options).to_dict()
    assert stored["provenance"]["source"] == "app"
    assert run.recipe() == jobs.run_recipe(run) == stored["recipe"]
    args, _ = build_parser().parse_known_args(jobs.job_command(run)[len(jobs._python_m_kasp()):])
    assert config_from_args(args).to_dict() == stored["recipe"]
    RunDir.create(run.path, recipe=config_from_args(args).to_dict())  # what the started run does: accepted
    other = dict(stored["recipe"], seed=stored["recipe"]["seed"] + 1)
    with pytest.raises(KaspError, match="another recipe"):
        RunDir.create(run.path, recipe=other)


def test_a_run_queued_by_an_older_kasp_has_no_config_json(tmp_path, tiny_pretrained, monkeypatch):
    """An older store: a queued run with only status.json still shows its recipe (from the queued options)
    and still starts."""
    monkeypatch.setenv("KASP_MAX_JOBS", "0")
    options = {"task": "sst2", "model": str(tiny_pretrained), "sparsity": 0.5, "max_steps": 3}
    run = jobs.launch("prune", options, tmp_path)
    (run.path / "config.json").unlink()
    assert run.recipe() == {}
    rec = jobs.run_recipe(run)
    assert (rec["kind"], rec["task"], rec["method"], rec["sparsity"], rec["max_steps"]) == ("prune", "sst2", "kasp", 0.5, 3)
    assert jobs.job_command(run)[-3:] == [f"--out={run.path}", f"--runs-dir={tmp_path}", "--no-progress"]
