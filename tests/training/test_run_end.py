"""Issue 26: no finished run is lost. A run ends checkpoint -> report -> status "done" -> resume state
deleted; a kill between any two of them leaves a run that `--resume` continues or finishes, or a done
run; temporary copies never outlive the next save, resume or listing; a NaN loss stops the run at once.

The kills are real: the training process ends with ``os._exit`` at the named point (as SIGKILL would,
no exception handler runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kasp.cli import main
from kasp.ground.runs import RunDir, list_runs

from tests.helpers import ROOT

_KILL = r'''
import os, sys
from pathlib import Path
import kasp.training.resume, kasp.ground.runs, kasp.training.train
from kasp.spec.config import make_config
from kasp.ground.runs import RunDir

where, model, out = sys.argv[1:4]
if where == "mid-save":  # the final checkpoint is written to its temporary folder, not yet renamed
    replace = os.replace
    def killing_replace(src, dst):
        if Path(str(src)).name.startswith(".checkpoint-"):
            os._exit(9)
        return replace(src, dst)
    kasp.ground.runs.os.replace = killing_replace
elif where == "after-report":  # checkpoint and report saved, final status not yet written
    write_report = RunDir.write_report
    def killing_write_report(self, report):
        write_report(self, report)
        os._exit(9)
    RunDir.write_report = killing_write_report
elif where == "mid-card":  # checkpoint, report and config.json's kasp block written, README.md not yet
    atomic_write_text = kasp.ground.runs.atomic_write_text
    def killing_write_text(path, text):
        if Path(str(path)).name == "README.md":
            os._exit(9)
        return atomic_write_text(path, text)
    kasp.ground.runs.atomic_write_text = killing_write_text
elif where == "before-discard":  # status "done" written, resume state not yet deleted
    kasp.training.resume.discard = lambda path: os._exit(9)
cfg = make_config("finetune", task="sst2", model=model, max_steps=4, eval_every=2, log_every=1, max_train_samples=64,
                  max_eval_samples=16, batch_size=16)
kasp.training.train.train(cfg, RunDir.create(out), progress_bar=False)
os._exit(0)
'''


def _killed_run(tmp_path: Path, model: Path, where: str) -> RunDir:
    out = tmp_path / "store" / f"killed-{where}"
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", _KILL, where, str(model), str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]  # it was killed where the test said
    return RunDir(out)


def _files(run: RunDir) -> list[str]:
    """The run folder's entries but the status lock (``.status.lock``, written with every status since issue 27)."""
    return sorted(p.name for p in run.path.iterdir() if p.name != ".status.lock")


def _hidden(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.path.iterdir() if p.name.startswith((".checkpoint-", ".resume-")))


@pytest.mark.slow
def test_a_run_killed_after_its_report_is_finished_by_resume(tmp_path, tiny_pretrained, capsys):
    run = _killed_run(tmp_path, tiny_pretrained, "after-report")
    assert run.state() == "failed" and run.report()["metrics"] and (run.checkpoint / "config.json").is_file()
    progress = (run.path / "progress.jsonl").read_bytes()
    assert main(["finetune", "--resume", str(run.path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "marked done, nothing retrained" in captured.err and "sst2 finetune: accuracy" in captured.out
    assert run.state() == "done" and run.status()["error"] is None
    assert (run.path / "progress.jsonl").read_bytes() == progress  # nothing trained again
    assert not list(run.path.glob("resume*")) and not _hidden(run)
    assert RunDir(run.path) in list_runs(tmp_path / "store")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["after-report", "mid-card"])
def test_a_run_killed_before_its_model_card_gets_it_from_resume(tmp_path, tiny_pretrained, capsys, where):
    """The card comes after the report: a run killed before or while writing it is finished by --resume with
    the card that every checkpoint KASP writes carries (issue 28), built from the same report."""
    import json

    run = _killed_run(tmp_path, tiny_pretrained, where)
    assert run.state() == "failed" and not (run.checkpoint / "README.md").exists()
    assert main(["finetune", "--resume", str(run.path), "--no-progress"]) == 0
    capsys.readouterr()
    assert run.state() == "done"
    facts = json.loads((run.checkpoint / "config.json").read_text())["kasp"]
    assert facts["metric"]["value"] == run.report()["metrics"]["accuracy"] and facts["task"] == "sst2"
    assert "sst2" in (run.checkpoint / "README.md").read_text() and not list(run.path.glob(".README.md.*"))


@pytest.mark.slow
def test_a_run_killed_after_its_done_status_stays_done_and_its_leftovers_go(tmp_path, tiny_pretrained, capsys):
    run = _killed_run(tmp_path, tiny_pretrained, "before-discard")
    assert run.state() == "done" and run.report()["metrics"] and run.checkpoint.is_dir()
    assert (run.path / "resume.json").is_file() and list(run.path.glob("resume-*"))  # the kill left them
    assert main(["runs", "--runs-dir", str(tmp_path / "store")]) == 0  # the next listing removes them
    assert "killed-before-discard" in capsys.readouterr().out
    assert not list(run.path.glob("resume*")) and run.state() == "done" and run.checkpoint.is_dir()
    assert main(["finetune", "--resume", str(run.path), "--no-progress"]) == 2
    assert "already finished" in capsys.readouterr().err  # the right reason


@pytest.mark.slow
def test_a_killed_final_save_leaves_no_copy_of_the_weights(tmp_path, tiny_pretrained, capsys):
    run = _killed_run(tmp_path, tiny_pretrained, "mid-save")
    hidden = _hidden(run)
    assert len(hidden) == 1 and (run.path / hidden[0] / "model.safetensors").is_file()  # a full copy, hidden
    assert run.state() == "failed" and not run.checkpoint.exists()
    list_runs(tmp_path / "store")  # any listing (kasp runs, every app page) removes it
    assert not _hidden(run)
    assert (run.path / "resume.json").is_file()  # the resume state of an unfinished run stays
    assert main(["finetune", "--resume", str(run.path), "--no-progress"]) == 0, capsys.readouterr().err
    assert run.state() == "done" and (run.checkpoint / "model.safetensors").is_file()
    assert not _hidden(run) and not list(run.path.glob("resume*"))


@pytest.mark.slow
def test_resume_names_a_final_checkpoint_left_without_report_or_resume_state(tmp_path, capsys):
    """What the old order (resume state deleted before the report) left after a kill: the reason is said."""
    from kasp.spec.config import make_config

    run = RunDir.create(tmp_path / "old-kill")
    run.write_config(make_config("finetune", task="sst2").to_dict(), {})
    run.set_status("running", pid=2 ** 22 + 12345)  # a process that no longer exists
    run.checkpoint.mkdir()
    (run.checkpoint / "config.json").write_text("{}")
    assert main(["finetune", "--resume", str(run.path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "saved its final checkpoint but was stopped before it wrote its report" in err
    assert f"kasp evaluate {run.path}" in err and err.count("\n") == 1


def test_leftovers_of_a_running_run_are_never_touched(tmp_path):
    run = RunDir.create(tmp_path / "live")
    run.set_status("running", pid=os.getpid())  # this process: alive
    for name in (".checkpoint-abc", ".resume-4-xyz", "resume-2"):
        (run.path / name).mkdir()
    (run.path / "resume.json").write_text('{"dir": "resume-2", "step": 2}')
    assert run.remove_leftovers() == [] and len(_files(run)) == 5
    run.set_status("failed", error="x")  # ended: the temporary copies go, the named resume state stays
    (run.path / "resume-1").mkdir()  # an older state resume.json no longer names
    assert sorted(run.remove_leftovers()) == [".checkpoint-abc", ".resume-4-xyz", "resume-1"]
    assert _files(run) == ["resume-2", "resume.json", "status.json"]


class _Saver:
    def __init__(self, fail: bool = False):
        self.fail = fail

    def save_pretrained(self, path, **kw):
        (Path(path) / ("tokenizer.json" if not kw else "model.safetensors")).write_text("x")
        if self.fail:
            raise OSError(28, "No space left on device")


def test_save_checkpoint_removes_its_temporary_copy_on_error_and_an_earlier_one(tmp_path):
    run = RunDir.create(tmp_path / "r")
    (run.path / ".checkpoint-from-a-killed-save").mkdir()
    with pytest.raises(OSError, match="No space"):
        run.save_checkpoint(_Saver(), _Saver(fail=True))
    assert sorted(p.name for p in run.path.iterdir()) == []  # neither the failed copy nor the earlier one
    run.save_checkpoint(_Saver(), _Saver())
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint"]


@pytest.mark.slow
def test_a_nan_loss_stops_the_run_at_the_first_check_and_names_the_step(tmp_path, tiny_pretrained, monkeypatch):
    """The loss of step 3 is NaN: the run stops at the next log point (step 5), names step 3, saves nothing."""
    import torch

    from kasp.spec.config import make_config
    from kasp.core.distill import KaspLoss
    from kasp.ground.errors import KaspError
    from kasp.training.train import train

    calls = {"n": 0}
    real = KaspLoss.__call__

    def nan_at_3(self, *a, **kw):
        loss, terms, extra = real(self, *a, **kw)
        calls["n"] += 1
        return (loss * torch.tensor(float("nan")) if calls["n"] == 3 else loss), terms, extra

    monkeypatch.setattr(KaspLoss, "__call__", nan_at_3)
    cfg = make_config("finetune", task="sst2", model=str(tiny_pretrained), max_steps=40, eval_every=20, log_every=5,
                      max_train_samples=64, max_eval_samples=16, batch_size=8)
    run = RunDir.create(tmp_path / "nan")
    with pytest.raises(KaspError, match=r"became NaN or infinite at step 3 of 40 .* stopped at step 5 .* --lr"):
        train(cfg, run, progress_bar=False)
    assert calls["n"] == 5  # no step after the check
    assert run.state() == "failed" and "at step 3 of 40" in run.status()["error"]
    assert not run.checkpoint.exists() and not list(run.path.glob("resume*"))
    assert [r["step"] for r in run.progress()] == [1]  # the NaN window was never logged


@pytest.mark.slow
def test_kasp_stops_a_diverging_run_with_one_line(tmp_path, tiny_pretrained, capsys):
    """`--lr 1e30`: stopped within the first log interval, a one-line error naming the step and the fix."""
    out = tmp_path / "diverged"
    rc = main(["finetune", "--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "200", "--lr", "1e30",
               "--max-train-samples", "64", "--max-eval-samples", "16", "--batch-size", "8", "--eval-every", "50",
               "--out", str(out), "--runs-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("kasp: error:")]
    assert rc == 2 and len(line) == 1 and "Traceback" not in err
    assert "became NaN or infinite at step" in line[0] and "lower the learning rate (for example --lr 0.0001)" in line[0]
    run = RunDir(out)
    assert run.state() == "failed" and run.status()["error"] in line[0]
    assert max(r["step"] for r in run.progress()) < 10 and not run.checkpoint.exists()


@pytest.mark.slow
def test_resume_of_a_queued_or_damaged_run_says_what_it_is(tmp_path, capsys):
    """A run the app queued has a status and no config.json yet: --resume says it is queued (it said "not a
    KASP run directory"); a damaged status is named."""
    queued = RunDir.create(tmp_path / "queued")
    queued.set_status("queued", job={"kind": "finetune", "options": {"task": "sst2"}})
    assert main(["finetune", "--resume", str(queued.path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "the run is queued and has not started" in err and "not a KASP run" not in err
    assert queued.state() == "queued"  # untouched
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "status.json").write_text("[1]")
    assert main(["finetune", "--resume", str(tmp_path / "damaged"), "--no-progress"]) == 2
    assert "status.json holds a JSON list" in capsys.readouterr().err
