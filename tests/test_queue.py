"""Issue 11: the run store never overwrites a user's folder, a killed run says so, the sparsity rule
is one stated rule, and the job queue advances without a browser, each queued run starting exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kasp import jobs
from kasp.cli import build_parser, main
from kasp.config import make_config
from kasp.runs import RunDir

from conftest import ROOT


def test_out_on_a_users_folder_is_refused_before_writing(tmp_path, tiny_store, capsys):
    user = tmp_path / "my-checkpoint"
    shutil.copytree(tiny_store / "teacher" / "checkpoint", user)
    before = {p.name: p.read_bytes() for p in user.iterdir()}
    rc = main(["finetune", "--task", "sst2", "--max-steps", "1", "--out", str(user), "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "not a KASP run" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in user.iterdir()} == before  # config.json untouched, nothing added
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["finetune", "--task", "sst2", "--out", str(f), "--runs-dir", str(tmp_path)]) == 2
    assert f.read_text() == "x"
    # a finished run is refused; an unfinished run of another recipe too
    assert main(["finetune", "--task", "sst2", "--out", str(tiny_store / "teacher"), "--runs-dir", str(tmp_path)]) == 2
    assert "already holds a run (done)" in capsys.readouterr().err
    other = RunDir.create(tmp_path / "queued")
    other.set_status("queued", command=["x"])
    other.write_config(make_config("finetune", task="rte").to_dict(), {})
    with pytest.raises(Exception, match="another recipe"):
        RunDir.create(other.path, recipe=make_config("finetune", task="sst2").to_dict())
    assert RunDir.create(other.path, recipe=make_config("finetune", task="rte").to_dict()).path == other.path
    (tmp_path / "empty").mkdir()
    assert RunDir.create(tmp_path / "empty").path.is_dir()


def test_a_sigkilled_run_says_it_ended_without_a_final_status(tmp_path):
    run = RunDir.create(tmp_path / "killed")
    proc = subprocess.Popen(["sleep", "60"])
    run.set_status("running", pid=proc.pid, step=3)
    assert run.state() == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.state() == "failed"
    assert "ended without writing a final status" in run.status()["error"]
    from kasp.views import runs_frame

    row = runs_frame(tmp_path).set_index("id").loc["killed"]
    assert "ended without writing a final status" in row["error"]


def test_sparsity_rule_is_one_stated_rule(capsys):
    assert make_config("prune", "kasp", "sst2", sparsity=0.0).sparsity == 0.0  # [0, 1): 0 is accepted
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"0 <= s < 1"):
            make_config("prune", "kasp", "sst2", sparsity=bad)
    assert main(["prune", "--task", "sst2", "--sparsity", "1.0"]) == 2
    assert "0 <= s < 1" in capsys.readouterr().err
    assert main(["prune", "--task", "sst2"]) == 2
    assert "--sparsity is required" in capsys.readouterr().err
    help_text = build_parser()._subparsers._group_actions[0].choices["prune"].format_help()
    assert "0 <= s < 1" in " ".join(help_text.split()) and "at most n - 1" in " ".join(help_text.split())


def test_sparsity_0_9999_never_zeroes_a_whole_matrix():
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from kasp.masks import MagnitudePruner, sparsity_table

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16))
    MagnitudePruner(model, 0.9999, total_steps=1).finish()
    table = sparsity_table(model)
    assert all(v < 1.0 for v in table.values())
    assert table["0.Q"] == pytest.approx(63 / 64)  # 8x8: round(0.9999 * 64) = 64 capped at 63


# --- the queue ------------------------------------------------------------------------------------

def _queue_fake(store: Path, n: int, log: Path) -> list[RunDir]:
    """n queued runs whose command only appends the run id to ``log`` (a start is a line)."""
    runs = []
    for i in range(n):
        run = RunDir.create(store / f"20260101-00000{i}-sst2-finetune")
        code = "import sys, time; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n'); time.sleep(1)"
        run.set_status("queued", command=[sys.executable, "-c", code, str(log), run.id], queued_at=time.time())
        runs.append(run)
    return runs


def test_two_pumps_at_once_start_each_queued_run_exactly_once(tmp_path):
    log = tmp_path / "starts.log"
    store = tmp_path / "store"
    runs = _queue_fake(store, 4, log)
    start_at = time.time() + 3
    code = ("import sys, time; from kasp import jobs; t = float(sys.argv[2])\n"
            "while time.time() < t: pass\n"
            "print(len(jobs.pump(sys.argv[1])))")
    env = dict(os.environ, KASP_MAX_JOBS="8")
    pumps = [subprocess.Popen([sys.executable, "-c", code, str(store), str(start_at)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    started = [int(p.communicate(timeout=120)[0].strip()) for p in pumps]
    assert sum(started) == 4, started  # the two pumps together started each run once
    end = time.time() + 30
    while time.time() < end and len(log.read_text().split() if log.exists() else []) < 4:
        time.sleep(0.2)
    time.sleep(1.5)
    ids = log.read_text().split()
    assert sorted(ids) == sorted(r.id for r in runs)  # each exactly once
    assert all(r.state() != "queued" for r in runs)


def test_queue_advances_when_a_run_ends_with_no_browser(tmp_path, tiny_pretrained, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_JOBS", 1)
    monkeypatch.setattr(jobs, "MAX_QUEUED", 2)
    opts = {"task": "sst2", "model": str(tiny_pretrained), "max_steps": 1, "max_train_samples": 16,
            "max_eval_samples": 8, "eval_every": 0}
    first = jobs.launch("finetune", opts, tmp_path)
    second = jobs.launch("finetune", opts, tmp_path)
    assert first.state() == "running" and second.state() == "queued"
    end = time.time() + 240  # nobody pumps from here on: the finishing first run starts the second
    while time.time() < end and second.state() != "done":
        time.sleep(0.5)
    assert first.state() == "done", jobs.log_tail(first)
    assert second.state() == "done", (second.status(), jobs.log_tail(second))
    assert json.loads((second.path / "status.json").read_text())["pid"] != json.loads(
        (first.path / "status.json").read_text())["pid"]


def test_kasp_worker_drains_the_queue(tmp_path):
    log = tmp_path / "w.log"
    runs = _queue_fake(tmp_path, 2, log)
    env = dict(os.environ, KASP_MAX_JOBS="1")
    out = subprocess.run([sys.executable, "-m", "kasp", "worker", "--runs-dir", str(tmp_path), "--poll", "0.2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "started 2 queued run(s)" in out.stdout
    assert sorted(log.read_text().split()) == sorted(r.id for r in runs)


def test_launch_checks_the_queue_under_the_queue_lock(tmp_path, monkeypatch):
    """The queue check and the new queued run are one step under the store's lock: another process
    (here a thread with its own lock object) cannot take the lock while launch() counts the runs."""
    import threading

    from filelock import Timeout

    from kasp import jobs

    seen = []
    counted = jobs.active_runs

    def counting(store):
        def other():
            try:
                jobs.queue_lock(store, timeout=0).acquire()
                seen.append("free")
            except Timeout:
                seen.append("held")
        t = threading.Thread(target=other)
        t.start()
        t.join()
        return counted(store)

    monkeypatch.setattr(jobs, "active_runs", counting)
    monkeypatch.setattr(jobs, "pump", lambda store=None: [])  # nothing is started in this test
    run = jobs.launch("finetune", {"task": "sst2", "max_steps": 1}, store=tmp_path, owner="me")
    assert seen == ["held"] and run.state() == "queued"
