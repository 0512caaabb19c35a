"""Live runs people can follow (issue 25, item 5): the class recipe kept across pages, one teacher per task
and model in the queue, the first progress record at step 1 and steady updates, elapsed time and an ETA
from the measured rate, and the student's own run explained where it is drawn."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, open_page


def _app(store: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.slow
def test_the_class_recipe_toggle_survives_a_visit_to_another_page(tmp_path, monkeypatch):
    at = _app(tmp_path, monkeypatch)
    at.switch_page("pages/prune.py").run()
    assert at.toggle(key="prune_class").value is False
    at.toggle(key="prune_class").set_value(True).run()
    at.radio(key="prune_method").set_value("magnitude").run()
    assert at.query_params["recipe"] in ("class", ["class"])
    for page in ("pages/overview.py", "pages/weights.py"):
        at.switch_page(page).run()
        assert not at.exception
        at.switch_page("pages/prune.py").run()
        assert not at.exception
        assert at.toggle(key="prune_class").value is True, f"switched itself off after a visit to {page}"
        assert at.radio(key="prune_method").value == "magnitude"
        assert at.query_params["recipe"] in ("class", ["class"])
    at.toggle(key="prune_class").set_value(False).run()
    at.switch_page("pages/overview.py").run()
    at.switch_page("pages/prune.py").run()
    assert at.toggle(key="prune_class").value is False


# --- one teacher per task and model in the queue ------------------------------------------------

def test_a_second_teacher_of_the_same_task_and_model_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    from kasp.experiments import jobs
    from kasp.ground.errors import KaspError

    monkeypatch.setattr(jobs, "pump", lambda store=None: [])  # nothing is started in this test
    monkeypatch.setenv("KASP_MAX_QUEUED", "5")
    first = jobs.launch("finetune", {"task": "sst2", "max_steps": 300}, store=tmp_path, owner="tab-a")
    with pytest.raises(KaspError) as e:
        jobs.launch("finetune", {"task": "sst2", "max_steps": 50}, store=tmp_path, owner="tab-b")
    msg = str(e.value)
    assert first.id in msg and "SST-2" in msg and "another browser session" in msg and "already queued" in msg
    assert len(jobs.active_runs(tmp_path)) == 1  # no second job
    # the same session is told it is its own
    with pytest.raises(KaspError, match="launched by your session"):
        jobs.launch("finetune", {"task": "sst2"}, store=tmp_path, owner="tab-a")
    # another task, or another model, is another teacher
    jobs.launch("finetune", {"task": "rte", "max_steps": 5}, store=tmp_path, owner="tab-b")
    jobs.launch("finetune", {"task": "sst2", "model": str(tmp_path), "max_steps": 5}, store=tmp_path, owner="tab-c")
    # prune runs are never held back by the teacher rule
    jobs.launch("prune", {"task": "sst2", "sparsity": 0.9, "max_steps": 5}, store=tmp_path, owner="tab-d")
    assert jobs.active_teacher("sst2", "default", tmp_path).id == first.id
    # a running teacher (config.json written, no queued recipe read) counts as well
    first.write_config({"kind": "finetune", "task": "sst2", "model": "default"}, {})
    first.set_status("running", pid=__import__("os").getpid(), started=time.time())
    with pytest.raises(KaspError, match="already running"):
        jobs.launch("finetune", {"task": "sst2"}, store=tmp_path, owner="tab-e")
    # once it has finished, a new teacher may be queued
    first.set_status("done")
    assert jobs.active_teacher("sst2", "default", tmp_path) is None
    jobs.launch("finetune", {"task": "sst2", "max_steps": 5}, store=tmp_path, owner="tab-e")


@pytest.mark.slow
def test_prune_page_names_the_queued_teacher_and_offers_no_second(tmp_path, monkeypatch):
    from kasp.experiments import jobs

    monkeypatch.setattr(jobs, "pump", lambda store=None: [])
    # MRPC: no teacher ships for it, so the page offers fine-tuning (SST-2 would offer its shipped teacher)
    teacher = jobs.launch("finetune", {"task": "mrpc", "max_steps": 300}, store=tmp_path, owner="tab-a")
    at = open_page("prune.py", tmp_path, monkeypatch, owner="tab-b", task="mrpc")
    assert any(teacher.id in i.value and "already queued" in i.value for i in at.info)
    assert [b for b in at.button if b.label == "Fine-tune the teacher"][0].disabled
    # another task has no teacher in the queue: its button is free
    at = open_page("prune.py", tmp_path, monkeypatch, owner="tab-b", task="rte")
    assert not [b for b in at.button if b.label == "Fine-tune the teacher"][0].disabled


# --- the first record at step 1, steady updates, elapsed time and an ETA -------------------------

@pytest.mark.slow
def test_a_tiny_run_reports_its_phases_step_1_and_steady_updates(tiny_pretrained, tmp_path, monkeypatch):
    """Before step 1 the status names what the run is doing; step 1 writes a progress record at once;
    between records the status carries the step (heartbeat) and a record comes every LOG_SECONDS."""
    import kasp.training.train
    from kasp.spec.config import make_config
    from kasp.ground.runs import RunDir

    phases, beats = [], []
    orig = RunDir.set_status

    def spy(self, state, **fields):
        if "phase" in fields:
            phases.append(fields["phase"])
        if "step" in fields and state == "running":
            beats.append(fields["step"])
        return orig(self, state, **fields)

    monkeypatch.setattr(RunDir, "set_status", spy)
    monkeypatch.setattr(kasp.training.train, "HEARTBEAT_SECONDS", 0.0)  # every step between records
    monkeypatch.setattr(kasp.training.train, "LOG_SECONDS", 1e9)
    cfg = make_config("finetune", "finetune", "sst2", model=str(tiny_pretrained), max_steps=12, log_every=5,
                      max_train_samples=64, max_eval_samples=16, eval_every=0)
    run = RunDir.create(tmp_path / "ft")
    kasp.training.train.train(cfg, run, store=tmp_path, progress_bar=False)
    assert phases[0].startswith("loading the pre-trained model") and "tokenising the SST-2" in phases[1]
    assert phases[-1] == "training"
    steps = [r["step"] for r in run.progress() if r["type"] == "train"]
    assert steps == [1, 5, 10, 12]  # step 1 at once, then every log_every (time trigger off)
    assert [b for b in beats if b] == list(range(1, 13))  # the heartbeat moves the step counter at every step here
    status = run.status()
    assert status["train_step0"] == 0 and status["train_started"] >= status["started"]

    # the time trigger: with LOG_SECONDS 0 every step writes a record, whatever log_every says
    monkeypatch.setattr(kasp.training.train, "LOG_SECONDS", 0.0)
    run2 = RunDir.create(tmp_path / "ft2")
    kasp.training.train.train(cfg, run2, store=tmp_path, progress_bar=False)
    assert [r["step"] for r in run2.progress() if r["type"] == "train"] == list(range(1, 13))


def test_live_timing_measures_the_rate_on_the_run_and_says_so():
    from kasp.ui.launch import live_timing

    now = 10_000.0
    status = {"state": "running", "started": now - 100, "train_started": now - 80, "train_step0": 0,
              "step": 40, "total_steps": 100, "updated": now}
    t = live_timing(status, [], now=now)
    assert t["elapsed_s"] == 100 and t["per_step_s"] == pytest.approx(2.0) and t["eta_s"] == pytest.approx(120)
    assert "elapsed 1 min 40 s" in t["text"] and "2.00 s per step, measured on this run over steps 1-40" in t["text"]
    assert "about 2 min 00 s left for the remaining 60 steps" in t["text"]
    # a second later, the estimate counts down from the last status write
    assert live_timing(status, [], now=now + 1)["eta_s"] == pytest.approx(119)
    # a run that has written no step for long (a long evaluation, a stall): said, and no countdown to 0
    t = live_timing(status, [], now=now + 300)
    assert "no new step for 5 min 00 s" in t["text"] and t["eta_s"] == pytest.approx(120)
    # before step 1: the phase, no speed
    early = {"state": "running", "started": now - 20, "step": 0, "total_steps": 100, "updated": now,
             "phase": "reading and tokenising the sst2 training and dev data"}
    t = live_timing(early, [], now=now)
    assert t["per_step_s"] is None and t["eta_s"] is None and "now reading and tokenising" in t["text"]
    assert "elapsed 20 s" in t["text"]
    # after its first step only: no speed yet (one step measured 5x the steady time), and it says when
    first = dict(status, step=1, updated=now - 75)
    t = live_timing(first, [], now=now)
    assert t["per_step_s"] is None and t["eta_s"] is None and "once 10 steps are done (1 so far)" in t["text"]
    # a run of an older KASP: measured from its progress records
    old = {"state": "running", "started": now - 60, "step": 30, "total_steps": 60}
    recs = [{"type": "train", "step": 1, "elapsed": 10.0}, {"type": "train", "step": 21, "elapsed": 50.0}]
    t = live_timing(old, recs, now=now)
    assert t["per_step_s"] == pytest.approx(2.0) and t["measured"] == "steps 1-21"
    # an ended run: its run time, no estimate
    done = dict(status, state="done", finished=now - 10, step=100)
    t = live_timing(done, [], now=now)
    assert t["elapsed_s"] == 90 and "left" not in t["text"] and "(run time)" in t["text"]


def _running(store: Path, name: str, **status):
    import os

    from kasp.spec.config import make_config
    from kasp.ground.runs import RunDir

    run = RunDir.create(store / name)
    cfg = make_config("prune", "kasp", "sst2", sparsity=0.9, max_steps=100)
    run.write_config(cfg.to_dict(), {"command": ["kasp", "prune"]})
    run.set_status("running", pid=os.getpid(), owner="me", **status)
    return run


@pytest.mark.slow
def test_the_live_panel_shows_elapsed_time_and_an_eta_from_the_measured_rate(tmp_path, monkeypatch):
    now = time.time()
    run = _running(tmp_path, "20260101-000000-sst2-kasp-s90", started=now - 100, train_started=now - 80,
                   train_step0=0, step=40, total_steps=100)
    run.log({"type": "train", "step": 1, "total_steps": 100, "loss": 1.0, "attention": 0.5, "hidden": 0.3,
             "prediction": 0.2, "sparsity": 0.0, "elapsed": 22.0})
    run.log({"type": "train", "step": 40, "total_steps": 100, "loss": 0.8, "attention": 0.4, "hidden": 0.2,
             "prediction": 0.2, "sparsity": 0.5, "elapsed": 100.0})
    at = open_page("prune.py", tmp_path, monkeypatch, owner="me")
    line = next(c.value for c in at.caption if "s per step" in c.value)
    assert "Elapsed 1 min 4" in line and "measured on this run over steps 1-40" in line
    assert "left for the remaining 60 steps" in line and "UTC" in line
    # before step 1, the panel says what the run is doing and for how long
    _running(tmp_path, "20260101-000001-sst2-kasp-s90", started=now - 30, step=0, total_steps=100,
             phase="timing a few steps to fit the 5-minute budget")
    at = open_page("prune.py", tmp_path, monkeypatch, owner="me")
    assert any("now timing a few steps to fit the 5-minute budget" in c.value and "Elapsed 3" in c.value
               for c in at.caption)


# --- the student's own run, explained where it is drawn -----------------------------------------

def _finished_class_runs(store: Path):
    from kasp.spec.config import make_config
    from kasp.ground.runs import RunDir

    t = RunDir.create(store / "20260101-000000-sst2-finetune")
    t.write_config(make_config("finetune", "finetune", "sst2", max_steps=300).to_dict(), {})
    t.write_report({"steps": 300, "metrics": {"accuracy": 0.8509}, "main_metric": "accuracy"})
    t.set_status("done", owner="me")
    s = RunDir.create(store / "20260101-000100-sst2-kasp-s90")
    s.write_config(make_config("prune", "kasp", "sst2", sparsity=0.9, max_steps=500).to_dict(), {})
    s.write_report({"steps": 500, "metrics": {"accuracy": 0.7867}, "main_metric": "accuracy",
                    "sparsity": {"pruned_sparsity": 0.9}, "wall_seconds": 210.0, "train_seconds": 200.0,
                    "teacher": {"path": str(t.path / "checkpoint"), "metrics": {"accuracy": 0.8509}}})
    s.set_status("done", owner="me", step=500, total_steps=500, started=1.0, finished=211.0)
    s.log({"type": "train", "step": 1, "total_steps": 500, "loss": 1.0, "attention": 0.5, "hidden": 0.3,
           "prediction": 0.2, "sparsity": 0.0, "elapsed": 10.0})
    return t, s


def test_your_run_context_names_its_own_teacher_and_the_shipped_budget(tmp_path):
    from kasp.experiments.results import load_shipped
    from kasp.ground.runs import RunDir
    from kasp.ui.curves import your_run_context

    t, s = _finished_class_runs(tmp_path)
    ctx = your_run_context(s)
    sweep = load_shipped("sst2")
    assert ctx["teacher"] == {"id": t.id, "metric": 0.8509, "steps": 300}
    assert ctx["metric"] == 0.7867 and ctx["sparsity"] == 0.9 and ctx["steps"] == 500
    assert ctx["shipped"]["steps"] == 2000 and ctx["shipped"]["teacher_metric"] == sweep["teacher"]["metric"]
    cap = ctx["caption"]
    assert "**Your run** 20260101-000100-sst2-kasp-s90" in cap and "78.67 after 500 steps" in cap
    assert f"Its own teacher {t.id} scored 85.09, 92 % of it, after 300 fine-tuning steps" in cap
    assert "trained 2000 steps" in cap and "Runs of 500 and 2000 steps differ in budget" in cap
    assert f"from a teacher at {sweep['teacher']['metric'] * 100:.2f} (1400 steps)" in cap
    assert your_run_context(t) is None  # a teacher is not a student
    # SST-2's default KASP recipe is the study's since 2026-12-03; the shipped sweep ran the earlier one: said
    theirs = next(r["recipe"] for r in sweep["runs"] if r["method"] == "kasp")
    assert theirs["lr"] == 1e-4 and s.recipe()["lr"] == 4e-4
    assert ctx["shipped"]["recipe_diff"]["lr"] == (4e-4, 1e-4) and "initial_sparsity" in ctx["shipped"]["recipe_diff"]
    assert "Their recipe differs from your run's (learning rate 4e-4 against 1e-4" in cap
    same = RunDir.create(tmp_path / "20260101-000200-sst2-kasp-s90")   # the shipped recipe: nothing to say
    same.write_config({**theirs, "max_steps": 500}, {})
    same.write_report(s.report())
    same.set_status("done", owner="me", step=500, total_steps=500)
    assert your_run_context(same)["shipped"]["recipe_diff"] == {} and "differs" not in your_run_context(same)["caption"]


def test_a_teacher_trained_in_epochs_is_described_by_its_epochs():
    """A shipped grid's teacher ran 10 epochs kept at its best on the slice (max_steps None): the caption says so,
    instead of the step count it never had."""
    from kasp.experiments.results import load_shipped
    from kasp.ui.curves import teacher_budget_words

    mrpc = load_shipped("mrpc")["teacher"]["recipe"]
    assert mrpc["max_steps"] is None and mrpc["select_best"]
    assert teacher_budget_words(mrpc) == "10 epochs, kept at its best epoch on a held-out slice"
    assert teacher_budget_words({"max_steps": None, "epochs": 5.0}) == "5 epochs"
    assert teacher_budget_words({"max_steps": 350, "epochs": 3.0}) == "350 steps"
    assert teacher_budget_words({}) is None


@pytest.mark.slow
def test_the_live_panel_draws_your_run_with_its_own_teacher_line(tmp_path, monkeypatch):
    from tests.helpers import plotly_charts

    t, s = _finished_class_runs(tmp_path)
    at = open_page("prune.py", tmp_path, monkeypatch, owner="me")
    fig = next(c for c in plotly_charts(at) if "Where your run lands" in (c["layout"].get("title") or {}).get("text", ""))
    names = [tr.get("name") or "" for tr in fig["data"]]
    mine = next(tr for tr in fig["data"] if tr.get("name") == f"your run: {s.id}")
    assert list(mine["x"]) == [90.0] and list(mine["y"]) == [pytest.approx(78.67)]
    own = next(tr for tr in fig["data"] if (tr.get("name") or "").startswith("your run's teacher"))
    assert list(own["y"]) == [pytest.approx(85.09)] * 2 and t.id in own["name"]
    assert any(n.startswith("dense teacher") and "shipped sweep" in n for n in names)  # the sweep's teacher too
    lo, hi = fig["layout"]["yaxis"]["range"]
    assert lo < 78.67 < hi and lo < 85.09 < hi
    assert any("**Your run**" in c.value and "your run's teacher" in c.value for c in at.caption)
    # another session's finished run gets no "your run" figure
    at = open_page("prune.py", tmp_path, monkeypatch, owner="someone-else")
    assert not any("Where your run lands" in (c["layout"].get("title") or {}).get("text", "") for c in plotly_charts(at))


def test_a_live_runs_point_names_its_steps_and_its_own_teacher_on_the_overview_chart(tmp_path):
    from kasp.ui.curves import curve_data
    from kasp.ui.curves import curve_frame

    t, s = _finished_class_runs(tmp_path)
    cf = curve_frame("sst2", tmp_path)
    row = cf[(cf["source"] == "live run") & (cf["method"] == "kasp")].iloc[0]
    assert row["label"] == f"{s.id} (live run: 500 steps; its own teacher {t.id} scored 85.09)"
    pts = curve_data("sst2", tmp_path).points
    assert (pts["label"] == row["label"]).any()  # the hover text of the Overview's point
