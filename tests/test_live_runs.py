"""Live runs people can follow (issue 25, item 5): the class recipe kept across pages, one teacher per task
and model in the queue, the first progress record at step 1 and steady updates, elapsed time and an ETA
from the measured rate, and the student's own run explained where it is drawn."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import ROOT, open_page


def _app(store: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


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
    from kasp import jobs
    from kasp.errors import KaspError

    monkeypatch.setattr(jobs, "pump", lambda store=None: [])  # nothing is started in this test
    monkeypatch.setattr(jobs, "MAX_QUEUED", 5)
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


def test_prune_page_names_the_queued_teacher_and_offers_no_second(tmp_path, monkeypatch):
    from kasp import jobs

    monkeypatch.setattr(jobs, "pump", lambda store=None: [])
    teacher = jobs.launch("finetune", {"task": "sst2", "max_steps": 300}, store=tmp_path, owner="tab-a")
    at = open_page("prune.py", tmp_path, monkeypatch, owner="tab-b")
    assert any(teacher.id in i.value and "already queued" in i.value for i in at.info)
    assert [b for b in at.button if b.label == "Fine-tune the teacher"][0].disabled
    # another task has no teacher in the queue: its button is free
    at = open_page("prune.py", tmp_path, monkeypatch, owner="tab-b", task="rte")
    assert not [b for b in at.button if b.label == "Fine-tune the teacher"][0].disabled
