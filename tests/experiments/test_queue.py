"""Issue 11: the run store never overwrites a user's folder, a killed run says so, the sparsity rule
is one stated rule, and the job queue advances without a browser, each queued run starting exactly once."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kasp.experiments import jobs
from kasp.cli import build_parser, main
from kasp.spec.config import make_config
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir

from tests.helpers import ROOT


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
    other.set_status("queued", job={"kind": "finetune", "options": {"task": "rte"}})
    other.write_config(make_config("finetune", task="rte").to_dict(), {})
    with pytest.raises(Exception, match="another recipe"):
        RunDir.create(other.path, recipe=make_config("finetune", task="sst2").to_dict())
    assert RunDir.create(other.path, recipe=make_config("finetune", task="rte").to_dict()).path == other.path
    (tmp_path / "empty").mkdir()
    assert RunDir.create(tmp_path / "empty").path.is_dir()
    shutil.rmtree(other.path)  # a real queued RTE fine-tune: never leave it for a later pump of this store to start


def test_a_sigkilled_run_says_it_ended_without_a_final_status(tmp_path):
    run = RunDir.create(tmp_path / "killed")
    proc = subprocess.Popen(["sleep", "60"])
    run.set_status("running", pid=proc.pid, step=3)
    assert run.state() == "running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert run.state() == "failed"
    assert "ended without writing a final status" in run.status()["error"]
    from kasp.ui.tables import runs_frame

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

    from kasp.core.masks import MagnitudePruner, sparsity_table

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16))
    MagnitudePruner(model, 0.9999, total_steps=1).finish()
    table = sparsity_table(model)
    assert all(v < 1.0 for v in table.values())
    assert table["0.Q"] == pytest.approx(63 / 64)  # 8x8: round(0.9999 * 64) = 64 capped at 63


# --- the queue ------------------------------------------------------------------------------------

def _queue_fake(store: Path, n: int) -> list[RunDir]:
    """n queued fine-tunes of a model that does not exist: each child process starts (its log.txt says
    "kasp: run directory" once per start), fails within seconds and leaves its run failed."""
    runs = []
    for i in range(n):
        run = RunDir.create(store / f"20260101-00000{i}-sst2-finetune")
        run.set_status("queued", job={"kind": "finetune", "options": {"task": "sst2", "model": str(store / "no-model")}},
                       queued_at=time.time())
        runs.append(run)
    return runs


def _starts(run: RunDir) -> int:
    """How many processes ran for ``run`` (each appends its output to the run's log.txt)."""
    p = run.path / "log.txt"
    return p.read_text(errors="replace").count("kasp: run directory") if p.exists() else 0


def _wait_ended(runs: list[RunDir], timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end and any(r.state() in ("queued", "running") for r in runs):
        time.sleep(0.3)


@pytest.mark.slow
def test_two_pumps_at_once_start_each_queued_run_exactly_once(tmp_path):
    store = tmp_path / "store"
    runs = _queue_fake(store, 4)
    start_at = time.time() + 3
    code = ("import sys, time; from kasp.experiments import jobs; t = float(sys.argv[2])\n"
            "while time.time() < t: pass\n"
            "print(len(jobs.pump(sys.argv[1])))")
    env = dict(os.environ, KASP_MAX_JOBS="8")
    pumps = [subprocess.Popen([sys.executable, "-c", code, str(store), str(start_at)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    started = [int(p.communicate(timeout=120)[0].strip()) for p in pumps]
    assert sum(started) == 4, started  # the two pumps together started each run once
    _wait_ended(runs)
    assert [_starts(r) for r in runs] == [1, 1, 1, 1], [jobs.log_tail(r) for r in runs]  # each exactly once
    # each failed for the reason planted (the status is written before the child's last stderr line reaches
    # its log, so the status's error is the one to read; the log may still be a line short)
    assert [(r.state(), "no-model" in (r.status().get("error") or "") + jobs.log_tail(r)) for r in runs] == \
        [("failed", True)] * 4, \
        [(r.status(), jobs.log_tail(r)) for r in runs]


@pytest.mark.slow
def test_queue_advances_when_a_run_ends_with_no_browser(tmp_path, tiny_pretrained, monkeypatch):
    monkeypatch.setenv("KASP_MAX_JOBS", "1")
    monkeypatch.setenv("KASP_MAX_QUEUED", "2")
    opts = {"task": "sst2", "model": str(tiny_pretrained), "max_steps": 1, "max_train_samples": 16,
            "max_eval_samples": 8, "eval_every": 0}
    first = jobs.launch("finetune", opts, tmp_path)
    # one teacher per task and model in the queue: the run behind it is a prune run on that teacher
    second = jobs.launch("prune", opts | {"sparsity": 0.5, "pruning_events": 1}, tmp_path)
    assert first.state() == "running" and second.state() == "queued"
    end = time.time() + 240  # nobody pumps from here on: the finishing first run starts the second
    while time.time() < end and second.state() != "done":
        time.sleep(0.5)
    assert first.state() == "done", jobs.log_tail(first)
    assert second.state() == "done", (second.status(), jobs.log_tail(second))
    assert json.loads((second.path / "status.json").read_text())["pid"] != json.loads(
        (first.path / "status.json").read_text())["pid"]


@pytest.mark.slow
def test_kasp_worker_drains_the_queue(tmp_path):
    runs = _queue_fake(tmp_path, 2)
    env = dict(os.environ, KASP_MAX_JOBS="1")
    out = subprocess.run([sys.executable, "-m", "kasp", "worker", "--runs-dir", str(tmp_path), "--poll", "0.2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    # the worker starts the first; the second is started by the worker or by the first as it ends
    assert re.search(r"started [12] queued run\(s\); no run is queued or running", out.stdout), out.stdout
    assert all(r.state() == "failed" for r in runs)  # the worker returned once nothing was queued or running
    assert [_starts(r) for r in runs] == [1, 1]


def test_launch_checks_the_queue_under_the_queue_lock(tmp_path, monkeypatch):
    """The queue check and the new queued run are one step under the store's lock: another process
    (here a thread with its own lock object) cannot take the lock while launch() counts the runs."""
    import threading

    from filelock import Timeout

    from kasp.experiments import jobs

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
    assert seen and set(seen) == {"held"} and run.state() == "queued"  # every count (teacher check too) under the lock


# --- the queue runs only what KASP builds (issue 26) ----------------------------------------------

def _plant(store: Path, marker: Path) -> dict[str, str]:
    """Queued runs copied into the store by hand, each of which would write ``marker`` if anything of it
    were executed; returns run id -> the words its refusal must contain."""
    store.mkdir(parents=True, exist_ok=True)
    sh = ["/bin/sh", "-c", f"touch {marker}"]
    evil = store.parent / "evil.json"
    evil.write_text(json.dumps({"sparsity": 0.5}))
    sst2 = {"task": "sst2", "sparsity": 0.5}
    planted = {
        "a-command": ({"command": sh}, "command line instead of a KASP recipe"),
        "b-command-and-bad-job": ({"command": sh, "job": {"kind": "/bin/sh", "options": {}}}, "unknown kind"),
        "c-shell-teacher": ({"job": {"kind": "prune", "options": {**sst2, "teacher": f"t; touch {marker}"}}},
                            "holds the character ';'"),
        "d-subshell-model": ({"job": {"kind": "prune", "options": {**sst2, "model": f"$(touch {marker})"}}},
                             "holds the character '$'"),
        "e-flag-in-value": ({"job": {"kind": "prune", "options": {**sst2, "model": f"--recipe={evil}"}}},
                            "starts with '-'"),
        "f-unknown-option": ({"job": {"kind": "prune", "options": {**sst2, "recipe": str(evil)}}},
                             "unknown option 'recipe'"),
        "g-prune-only-on-finetune": ({"job": {"kind": "finetune", "options": {"teacher": "x"}}},
                                     "unknown option 'teacher' for `kasp finetune`"),
        "h-options-as-argv": ({"job": {"kind": "prune", "options": ["--teacher", f"x; touch {marker}"]}},
                              "must be a JSON object"),
        "i-wrong-type": ({"job": {"kind": "prune", "options": {"task": "sst2", "sparsity": "0.5; touch x"}}},
                         "sparsity of a queued run must be a finite number"),
        "j-bad-recipe": ({"job": {"kind": "prune", "options": {"task": "sst2", "sparsity": 1.5}}}, "0 <= s < 1"),
        "k-job-not-an-object": ({"job": sh}, "not a JSON object"),
        "l-nothing": ({}, "queued without a recipe"),
    }
    for name, (status, _) in planted.items():
        (store / name).mkdir()
        (store / name / "status.json").write_text(json.dumps({"state": "queued", "queued_at": 1.0, **status}))
    return {name: words for name, (_, words) in planted.items()}


def _assert_refused(store: Path, expected: dict[str, str], marker: Path) -> None:
    assert not marker.exists()
    for name, words in expected.items():
        st = RunDir(store / name).status()
        assert st["state"] == "failed", (name, st)
        assert st["error"].startswith("not started: ") and words in st["error"], (name, st["error"])
        assert "\n" not in st["error"] and not (store / name / "log.txt").exists()


def test_pump_never_runs_a_planted_command_or_a_hostile_recipe(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    expected = _plant(tmp_path / "store", marker)
    calls = []
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: calls.append(a) or pytest.fail(f"executed {a}"))
    monkeypatch.setenv("KASP_MAX_JOBS", "4")
    assert jobs.pump(tmp_path / "store") == []
    assert calls == []
    _assert_refused(tmp_path / "store", expected, marker)
    from kasp.ui.tables import runs_frame

    frame = runs_frame(tmp_path / "store").set_index("id")  # the table names each refusal
    assert "command line instead of a KASP recipe" in frame.loc["a-command", "error"]


@pytest.mark.slow
def test_kasp_worker_never_runs_a_planted_command(tmp_path):
    marker = tmp_path / "marker"
    expected = _plant(tmp_path / "store", marker)
    out = subprocess.run([sys.executable, "-m", "kasp", "worker", "--runs-dir", str(tmp_path / "store"), "--poll", "0.2"],
                         cwd=ROOT, env=dict(os.environ, KASP_MAX_JOBS="4"), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "started 0 queued run(s)" in out.stdout
    time.sleep(0.5)  # what a shell would have done, it would have done by now
    _assert_refused(tmp_path / "store", expected, marker)


@pytest.mark.slow
@pytest.mark.parametrize("page", ["overview.py", "prune.py", "results.py", "attention.py", "inspect.py", "weights.py",
                                  "predict.py"])
def test_opening_a_page_never_runs_a_planted_command(tmp_path, monkeypatch, page):
    from tests.helpers import open_page

    marker = tmp_path / "marker"
    store = tmp_path / "store"
    expected = _plant(store, marker)
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail(f"executed {a}"))
    monkeypatch.setenv("KASP_MAX_JOBS", "4")
    open_page(page, store, monkeypatch)  # asserts the page raised nothing
    time.sleep(0.2)
    assert not marker.exists()
    if page == "prune.py":  # its live panel advances the queue: every planted run is refused
        _assert_refused(store, expected, marker)
    else:  # the other pages only read the store
        assert all(RunDir(store / name).status()["state"] == "queued" for name in expected)


def test_launch_stores_a_recipe_and_the_queue_builds_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("KASP_MAX_JOBS", "0")  # nothing starts
    opts = {"task": "sst2", "model": "default", "method": "magnitude", "sparsity": 0.7, "max_steps": 20, "lr": 2e-4,
            "time_budget": None, "bucket_batches": False, "max_train_samples": None}
    run = jobs.launch("prune", opts, tmp_path, owner="tab")
    status = json.loads((run.path / "status.json").read_text())
    assert "command" not in status
    assert status["job"] == {"kind": "prune", "options": {k: v for k, v in opts.items() if v is not None}}
    cmd = jobs.job_command(run)
    assert cmd[:5] == [sys.executable, "-P", "-m", "kasp", "prune"]
    assert cmd[-3:] == [f"--out={run.path}", f"--runs-dir={tmp_path}", "--no-progress"]
    args = build_parser().parse_args(cmd[4:])  # the CLI reads exactly the recipe back
    assert (args.task, args.model, args.method, args.sparsity, args.max_steps, args.lr, args.bucket_batches) == \
        ("sst2", "default", "magnitude", 0.7, 20, 2e-4, False)
    assert args.out == str(run.path) and args.time_budget is None and args.recipe is None
    # the app's launch refuses what the queue would refuse, before any run directory exists
    for bad, words in (({"task": "sst2", "sparsity": 0.5, "teacher": "a|b"}, "'|'"),
                       ({"task": "sst2", "sparsity": 0.5, "report_to": "all"}, "unknown option 'report_to'")):
        with pytest.raises(KaspError, match=re.escape(words)):
            jobs.launch("prune", bad, tmp_path)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [run.id]


@pytest.mark.slow
def test_a_kasp_folder_in_the_working_directory_is_never_imported(tmp_path, monkeypatch):
    """A store that is the working directory may hold a run folder named `kasp`: `python -m kasp` would
    import it; the queue's `python -P -m kasp` imports the installed package."""
    marker = tmp_path / "marker"
    (tmp_path / "kasp").mkdir()
    (tmp_path / "kasp" / "__init__.py").write_text("")
    (tmp_path / "kasp" / "__main__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "kasp" / "status.json").write_text('{"state": "done"}')  # it is listed as a run, too
    run = _queue_fake(tmp_path, 1)[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KASP_MAX_JOBS", "1")
    assert jobs.pump(".") == [RunDir(Path(".") / run.id)]
    _wait_ended([run])
    assert not marker.exists() and _starts(run) == 1 and run.state() == "failed"  # the real kasp ran, and failed


# --- further hostile stores (issue 26, kind 1, after it landed) -----------------------------------

def _plant_more(store: Path, victim: Path) -> dict[str, tuple[str, str]]:
    """Queued and running runs that KASP never writes: run id -> (the state they must read as, words of the
    reason). ``victim`` is a file outside the store that nothing may write to."""
    store.mkdir(parents=True, exist_ok=True)
    ok = {"state": "queued", "job": {"kind": "finetune", "options": {"task": "sst2"}}}
    elsewhere = store.parent / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "status.json").write_text(json.dumps(ok))
    os.symlink(elsewhere, store / "a-folder-link")
    sst2 = {"task": "sst2", "sparsity": 0.5}
    texts = {
        "b-huge-int-text": '{"state": "queued", "job": {"kind": "prune", "options": {"task": "sst2", "sparsity": 0.5, '
                           '"max_steps": ' + "9" * 5000 + "}}}",
        "c-nested": '{"state": "queued", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
    }
    statuses = {
        "d-huge-int": {"state": "queued", "job": {"kind": "prune", "options": {**sst2, "max_steps": 10**300}}},
        "e-bidi": {"state": "queued", "job": {"kind": "prune", "options": {**sst2, "model": "runs/\u202egpj.x"}}},
        "f-c1-control": {"state": "queued", "job": {"kind": "prune", "options": {**sst2, "teacher": "a\x85b"}}},
        "g-state-list": {"state": ["queued"]},
        "h-running-no-pid": {"state": "running"},
        "i-running-pid-minus-1": {"state": "running", "pid": -1},
        "j-running-pid-0": {"state": "running", "pid": 0},
        "k-running-pid-true": {"state": "running", "pid": True},
        "o-running-pid-1": {"state": "running", "pid": 1},  # the system's init (alive for ever), not a kasp run
        "l-log-link": ok, "m-progress-link": ok, "n-resume-folder": ok,
    }
    for name, text in texts.items():
        (store / name).mkdir()
        (store / name / "status.json").write_text(text)
    for name, st in statuses.items():
        (store / name).mkdir()
        (store / name / "status.json").write_text(json.dumps(st))
    os.symlink(victim, store / "l-log-link" / "log.txt")
    os.symlink(victim, store / "m-progress-link" / "progress.jsonl")
    (store / "n-resume-folder" / "resume-7").mkdir()
    return {
        "a-folder-link": ("failed", "its folder is a link to"),
        "b-huge-int-text": ("damaged", "a number too long to read"),
        "c-nested": ("damaged", "nested too deeply"),
        "d-huge-int": ("failed", "max_steps of a queued run is a whole number over 2,147,483,647"),
        "e-bidi": ("failed", "holds the character '\\u202e'"),
        "f-c1-control": ("failed", "holds the character '\\x85'"),
        "g-state-list": ("damaged", "unknown state"),
        "h-running-no-pid": ("failed", "names no valid process id"),
        "i-running-pid-minus-1": ("failed", "names no valid process id"),
        "j-running-pid-0": ("failed", "names no valid process id"),
        "k-running-pid-true": ("failed", "names no valid process id"),
        "o-running-pid-1": ("failed", "names no valid process id"),
        "l-log-link": ("failed", "holds 'log.txt', a link"),
        "m-progress-link": ("failed", "holds 'progress.jsonl', a link"),
        "n-resume-folder": ("failed", "holds 'resume-7', a folder"),
    }


def _assert_more_refused(store: Path, expected: dict[str, tuple[str, str]], victim: Path) -> None:
    assert victim.read_text() == "mine\n"
    assert json.loads((store.parent / "elsewhere" / "status.json").read_text())["state"] == "queued"  # untouched
    for name, (state, words) in expected.items():
        st = RunDir(store / name).status()
        assert (st["state"], words in st["error"], "\n" in st["error"]) == (state, True, False), (name, st)


def test_pump_refuses_huge_nested_linked_and_pidless_runs(tmp_path, monkeypatch):
    """Numbers past the parser's limit, arrays nested 100,000 deep, Unicode that shows other than it is, a
    state KASP never writes, a running run without a usable pid (which would hold a slot, keep `kasp worker`
    waiting for ever, and have Cancel signal every process: kill(-1)), and folders with links: nothing runs,
    nothing outside the store is written, and the queue does not wait for any of them."""
    victim = tmp_path / "bashrc"
    victim.write_text("mine\n")
    expected = _plant_more(tmp_path / "store", victim)
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail(f"executed {a}"))
    monkeypatch.setenv("KASP_MAX_JOBS", "8")
    assert jobs.pump(tmp_path / "store") == []
    _assert_more_refused(tmp_path / "store", expected, victim)
    assert jobs.active_runs(tmp_path / "store") == []  # nothing holds a slot or keeps a worker waiting
    from kasp.ui.tables import runs_frame

    frame = runs_frame(tmp_path / "store").set_index("id")
    assert "nested too deeply" in frame.loc["c-nested", "error"]
    jobs.delete(RunDir(tmp_path / "store" / "a-folder-link"))  # the link goes, never what it points to
    assert not (tmp_path / "store" / "a-folder-link").exists() and (tmp_path / "elsewhere" / "status.json").exists()


@pytest.mark.slow
def test_kasp_worker_and_runs_survive_further_hostile_stores(tmp_path):
    victim = tmp_path / "bashrc"
    victim.write_text("mine\n")
    expected = _plant_more(tmp_path / "store", victim)
    for cmd in (["worker", "--poll", "0.2"], ["runs"], ["runs", "--json"]):
        out = subprocess.run([sys.executable, "-m", "kasp", *cmd, "--runs-dir", str(tmp_path / "store")], cwd=ROOT,
                             env=dict(os.environ, KASP_MAX_JOBS="8"), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "Traceback" not in out.stderr, (cmd, out.stderr[-2000:])
    assert "started 0 queued run(s)" in subprocess.run(
        [sys.executable, "-m", "kasp", "worker", "--runs-dir", str(tmp_path / "store")], cwd=ROOT,
        capture_output=True, text=True, timeout=60).stdout
    _assert_more_refused(tmp_path / "store", expected, victim)


def test_cancel_never_signals_a_process_that_is_not_a_kasp_run(tmp_path):
    """A running run whose pid is another process (a reused pid, or a planted status): Cancel marks it
    cancelled and signals nothing."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        run = RunDir.create(tmp_path / "r")
        run.set_status("running", pid=proc.pid)
        assert run.state() == "running"
        jobs.cancel(run)
        time.sleep(0.2)
        assert proc.poll() is None, "the process was signalled"
        assert run.state() == "cancelled" and "not a KASP run" in run.status()["error"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_queue_lock_that_is_a_folder_is_named(tmp_path):
    (tmp_path / ".queue.lock").mkdir()
    _queue_fake(tmp_path, 1)
    with pytest.raises(KaspError, match=r"lock file .*\.queue\.lock is a folder: nothing was started; remove it"):
        jobs.pump(tmp_path)
    with pytest.raises(KaspError, match="is a folder"):
        jobs.launch("finetune", {"task": "sst2"}, tmp_path)
    out = subprocess.run([sys.executable, "-m", "kasp", "worker", "--runs-dir", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "is a folder" in out.stderr, out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("page", ["overview.py", "prune.py", "results.py", "attention.py", "inspect.py", "weights.py",
                                  "predict.py"])
def test_opening_a_page_survives_further_hostile_stores(tmp_path, monkeypatch, page):
    from tests.helpers import open_page

    victim = tmp_path / "bashrc"
    victim.write_text("mine\n")
    expected = _plant_more(tmp_path / "store", victim)
    monkeypatch.setattr(jobs.subprocess, "Popen", lambda *a, **k: pytest.fail(f"executed {a}"))
    monkeypatch.setenv("KASP_MAX_JOBS", "8")
    open_page(page, tmp_path / "store", monkeypatch)  # asserts the page raised nothing
    assert victim.read_text() == "mine\n"
    if page == "prune.py":
        _assert_more_refused(tmp_path / "store", expected, victim)


def test_launch_stores_a_relative_model_folder_as_an_absolute_path(tmp_path, monkeypatch):
    """`kasp worker` may run in another working directory than the app: a relative --model / --teacher folder
    is stored resolved, so the queued run reads the folder the user meant."""
    (tmp_path / "app" / "my-model").mkdir(parents=True)
    (tmp_path / "app" / "teachers" / "t").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "app")
    monkeypatch.setenv("KASP_MAX_JOBS", "0")  # nothing starts
    run = jobs.launch("prune", {"task": "sst2", "sparsity": 0.5, "model": "my-model", "teacher": "teachers/../teachers/t"},
                      tmp_path / "store")
    opts = json.loads((run.path / "status.json").read_text())["job"]["options"]
    assert opts["model"] == str(tmp_path / "app" / "my-model") and opts["teacher"] == str(tmp_path / "app" / "teachers" / "t")
    run = jobs.launch("finetune", {"task": "sst2", "model": "default"}, tmp_path / "store")  # not a folder: kept
    assert json.loads((run.path / "status.json").read_text())["job"]["options"]["model"] == "default"


# --- the run's status lock ---------------------------------------------------------------------------

_COUNT = """
import contextlib, sys, time
from kasp.ground.runs import RunDir
from pathlib import Path
run_dir, me, n, locked = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "locked"
if not locked:  # the same read-modify-write without the lock (what KASP did before)
    RunDir.status_lock = lambda self, timeout=0: contextlib.nullcontext()
run = RunDir(run_dir)
ready = Path(run_dir).parent
(ready / f"ready-{me}").touch()  # both start together, however long each took to start

def add_one(status):
    seen = status.get("count", 0)
    time.sleep(0.005)  # between the read and the write, as a process between two statements may be
    return dict(status, count=seen + 1)

while len(list(ready.glob("ready-*"))) < 2:
    time.sleep(0.001)
for _ in range(n):
    run.update_status(add_one)
"""


@pytest.mark.slow
@pytest.mark.parametrize("locked", [True, False])
def test_status_writes_of_two_processes_lose_nothing_under_the_lock(tmp_path, locked):
    """Two processes (the app and a run's own process, say) each add 1 to a status field 60 times, at once.
    Every read-modify-write holds the run's status lock, so all 120 additions count; the same updates without
    the lock (as before) lose some, which shows the race the lock closes."""
    run = RunDir.create(tmp_path / "run")
    run.set_status("running", count=0, pid=os.getpid())
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", _COUNT, str(run.path), str(i), str(n),
                               "locked" if locked else "unlocked"], cwd=ROOT) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    count = run.status()["count"]
    if locked:
        assert count == 2 * n
        assert run.status()["pid"] == os.getpid() and run.state() == "running"  # the other fields are kept
    else:
        assert count < 2 * n


def test_a_cancel_request_is_not_lost_to_the_runs_own_status_write(tmp_path):
    """set_status merges its fields into the stored status under the lock: the run's heartbeat (step) and the
    app's cancel request both survive; ``when`` writes only from the given states."""
    run = RunDir.create(tmp_path / "run")
    run.set_status("queued")
    assert run.set_status("running", when=("queued",), pid=os.getpid())
    assert not run.set_status("running", when=("queued",), pid=1)  # already running: not written
    run.set_status("running", cancel_requested=True)
    run.set_status("running", step=5)
    status = run.status()
    assert (status["pid"], status["cancel_requested"], status["step"]) == (os.getpid(), True, 5)
    assert (run.path / ".status.lock").is_file()


def test_a_linked_status_lock_is_not_followed(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.set_status("queued")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (run.path / ".status.lock").unlink()
    (run.path / ".status.lock").symlink_to(victim)
    with pytest.raises(KaspError, match="is a link"):
        run.set_status("cancelled")
    assert victim.read_text() == "keep" and run.state() == "queued"
