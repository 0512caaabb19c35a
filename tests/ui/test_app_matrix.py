"""Every page x every GLUE task the sidebar offers x every state of the run store: no exception, and
the page's headline element is there (issue 12, item 1).

The store states are real run directories written with :class:`kasp.ground.runs.RunDir` (no model is
trained): empty (and no precomputed runs), only the shipped precomputed runs, only a failed and a
cancelled run, a fine-tune running (its pid is this test process, so it is alive), and a run of this
session queued behind it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from kasp.experiments import jobs
from kasp.ui import devset, engine, presets, tables
from kasp.experiments import results as sweep
from kasp.spec.config import make_config
from kasp.data.glue import shipped_splits
from kasp.ground.runs import RunDir
from kasp.models.shipped import manifest

from tests.helpers import ROOT

PAGES = ["overview.py", "prune.py", "results.py", "attention.py", "weights.py", "predict.py", "inspect.py"]
TASKS = [t for t in devset.TASK_BLURBS if t in shipped_splits()]  # what the sidebar offers (app.py)
STATES = ["empty", "precomputed", "failed", "running", "queued"]
SHIPPED_MODEL_TASKS = {r["task"] for r in manifest()["runs"]}  # the tasks whose trained models ship (assets/models)
ME = "session-token-of-this-test"
OTHER = "session-token-of-another-tab"


def _run(store: Path, name: str, kind: str, task: str, state: str, **status) -> RunDir:
    run = RunDir.create(store / name)
    cfg = make_config(kind, "kasp", task, sparsity=0.5 if kind == "prune" else None, max_steps=10)
    run.write_config(cfg.to_dict(), {"command": ["kasp", kind]})
    run.set_status(state, **status)
    return run


def build_store(root: Path, state: str, task: str) -> Path:
    """A run store in ``state`` whose runs are of ``task``."""
    store = root / f"{state}-{task}"
    store.mkdir(parents=True)
    if state == "failed":
        _run(store, "20260101-000000-x-failed", "prune", task, "failed", error="teacher not found", owner=OTHER)
        _run(store, "20260101-000001-x-cancelled", "finetune", task, "cancelled", error="cancelled at step 3 of 10",
             owner=ME)
    if state in ("running", "queued"):
        ft = _run(store, "20260101-000002-x-finetune", "finetune", task, "running", pid=os.getpid(), step=3,
                  total_steps=10, started=1.0, owner=OTHER)
        ft.log({"type": "train", "step": 1, "total_steps": 10, "loss": 0.7, "task": 0.7, "sparsity": 0.0})
        ft.log({"type": "train", "step": 3, "total_steps": 10, "loss": 0.6, "task": 0.6, "sparsity": 0.0})
    if state == "queued":
        q = RunDir.create(store / "20260101-000003-x-kasp-s50")
        # never started here (the slot is taken by the running fine-tune)
        q.set_status("queued", job={"kind": "prune", "options": {"task": task, "sparsity": 0.5, "max_steps": 10}},
                     queued_at=1.0, source="app", owner=ME)
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("matrix")
    return {(s, t): build_store(root, s, t) for s in STATES for t in TASKS}


def _shipped_story(task: str, state: str) -> bool:
    """Whether a shipped run of ``task`` carries weight pictures, read from the shipped files themselves."""
    runs = []
    if sweep.shipped_sweep_path(task).is_file():
        runs += json.loads(sweep.shipped_sweep_path(task).read_text()).get("runs", [])
    if state == "precomputed":
        runs += [r for r in json.loads(tables.PRECOMPUTED.read_text()) if r.get("task") == task]
    return any(r.get("weights_story") and r.get("method") != "small-dense" for r in runs)


def _sweep(task: str) -> bool:
    """Whether a sweep ships for ``task`` (assets/sweeps/<task>.json)."""
    return sweep.shipped_sweep_path(task).is_file()


def _expect(at: AppTest, page: str, task: str, state: str) -> None:
    name = engine.task_name(task)
    titles = [t.value for t in at.title]
    text = " ".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
                    + [h.value for h in at.header] + [s.value for s in at.subheader] + [w.value for w in at.warning])
    if page == "overview.py":
        assert titles == ["Knowledge-aware sparse pruning"]
        assert f"{name}: dev {engine.metric_label(task)} against sparsity" in [h.value for h in at.header]
        if _sweep(task):  # the schedule and the shipped sweep's curve
            assert len(at.get("plotly_chart")) >= 2
        by_label = {p["label"]: p for p in presets.view_presets(task)}  # a question is offered only with an answer
        assert by_label["What did the student keep?"]["disabled"] == (
            not presets.attention_available(task))
    elif page == "prune.py":
        assert titles == [f"Prune: {name}"]
        assert "Live runs" in [h.value for h in at.header]
        cancels = [b for b in at.button if b.label == "Cancel"]
        if state == "running":
            assert any("20260101-000002-x-finetune: running" in s.value for s in at.subheader)
            assert "another browser session: read-only" in text
            assert not cancels  # another session's run: no Cancel here
        elif state == "queued":
            assert any("queued, position 1 of 1, waiting for 20260101-000002-x-finetune" in i.value for i in at.info)
            assert len(cancels) == 1 and cancels[0].key == "cancel-20260101-000003-x-kasp-s50"  # only our own
            # ours waits already: no second launch (SST-2 offers the shipped teacher, so its form shows Launch)
            label = "Launch" if task == "sst2" else "Fine-tune the teacher"
            assert [b for b in at.button if b.label == label][0].disabled
        elif state == "failed":  # our own cancelled run stays in the panel until dismissed; the other's not
            assert any("x-cancelled: cancelled" in s.value for s in at.subheader)
            assert not any("x-failed" in s.value for s in at.subheader)
            assert [b.key for b in at.button if b.label == "Dismiss"] == ["dismiss-20260101-000001-x-cancelled"]
        else:
            assert any("No run is active" in i.value for i in at.info)
    elif page == "results.py":
        assert titles == ["Results"]
        has_rows = state in ("failed", "running", "queued") or (state == "precomputed" and task == "sst2") or _sweep(task)
        if has_rows:
            assert len(at.dataframe) == 1 and len(at.dataframe[0].value)
            assert f"{name}: dev {engine.metric_label(task)} against sparsity" in [h.value for h in at.header]
        else:
            assert not at.dataframe and any(f"No {name} run" in i.value for i in at.info)
        if _sweep(task):  # the shipped sweep's runs are rows, its curve is drawn, one of its runs in detail
            assert "precomputed sweep" in set(at.dataframe[0].value["source"])
            # the curve; with no live run the page opens on the sweep's KASP at 90 %: its heat map and curves
            assert len(at.get("plotly_chart")) >= (1 if state in ("failed", "running", "queued") else 3)
    elif page == "attention.py":
        assert titles == [f"Attention knowledge: {name}"]
        if (state == "precomputed" and task == "sst2") or _sweep(task):
            assert "Retention against sparsity" in [h.value for h in at.header]
            assert "One student in detail" in [h.value for h in at.header]
            assert len(at.get("plotly_chart")) >= 4 and len(at.metric) >= 2  # two scatters, per layer, CKA
        else:
            assert any("No finished prune run" in i.value for i in at.info)
    elif page == "weights.py":
        assert titles == [f"Weights: see pruning happen ({name})"]
        if _shipped_story(task, state):  # the view opens on a shipped run and draws its pictures
            assert at.selectbox(key="weights_run").value.startswith("sweep/")
            assert any("Source: precomputed sweep run (`kasp sweep --task" in c.value for c in at.caption)
            assert len(at.get("plotly_chart")) >= 2
        else:
            assert any(f"No {name} prune run with recorded weight pictures" in i.value for i in at.info)
    elif page == "predict.py":
        assert titles == [f"Predictions side by side ({name})"]
        if task in SHIPPED_MODEL_TASKS:  # the models that ship with KASP predict, whatever the store holds
            assert any(e.label.startswith("The models shipped with KASP") for e in at.expander)
            table = next(d.value for d in at.dataframe if "gold" in d.value.columns)
            assert len(table) == 1 + len(at.multiselect(key=f"predict_students_{task}").value)
        else:  # no state of this matrix has a finished run with a checkpoint: the page says how to get one
            assert any(f"No finished {name} run with a checkpoint" in i.value for i in at.info)
            assert any(f"No trained {name} model ships with KASP" in i.value for i in at.info) == (
                (state == "precomputed" and task == "sst2") or _sweep(task))
            # what the shipped runs scored, and the dev examples with their gold answers
            assert len(at.dataframe) == (2 if _sweep(task) else 1) and len(at.dataframe[-1].value)
    elif page == "inspect.py":
        # h11 owns the Inspect page; its headline is its title
        assert titles and titles[0].startswith("Inspect")
        # no finished run in these stores: it opens on the first model shipped with KASP (or, without any, the
        # pre-trained model) and draws it
        assert len(at.get("plotly_chart")) >= 3 and len(at.metric) >= 5


@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
def test_the_five_sweep_tasks_ship_runs_with_weight_pictures(task):
    """Issue 16: a fresh clone shows the weights' story of shipped runs on every task the sweeps cover
    (KASP and the magnitude baseline at 90 %, side by side)."""
    assert _shipped_story(task, "empty"), f"assets/sweeps/{task}.json ships no run with weight pictures"
    runs = json.loads(sweep.shipped_sweep_path(task).read_text())["runs"]
    assert {r["method"] for r in runs if r["sparsity"] == 0.9 and r.get("weights_story")} >= {"kasp", "magnitude"}


@pytest.mark.slow
@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("page", PAGES)
def test_page_task_state(page, task, state, stores, monkeypatch, tmp_path):
    store = stores[(state, task)]
    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    monkeypatch.setenv("KASP_MAX_JOBS", "1")
    monkeypatch.setenv("KASP_MAX_QUEUED", "2")
    if state != "precomputed":
        monkeypatch.setattr(tables, "PRECOMPUTED", tmp_path / "no-precomputed-runs.json")
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=60)
    at.session_state["task"] = task
    at.session_state["model"] = "default"
    at.session_state["owner"] = ME
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    _expect(at, page, task, state)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
@pytest.mark.parametrize("page", PAGES)
def test_a_fresh_clone_draws_something_real_on_every_page(page, task, monkeypatch, tmp_path):
    """Issue 25, item 1: an empty run store (a fresh clone), every page, every shipped task: a chart or a
    table of real numbers, not only the absence of exceptions."""
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=60)
    at.session_state["task"] = task
    at.session_state["model"] = "default"
    at.session_state["owner"] = ME
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    charts, tables = len(at.get("plotly_chart")), len(at.dataframe)
    if page == "prune.py":  # the recipe form and its run-time estimate, from the CLI's recipe
        # the teacher's fine-tuning estimate (a metric), or, with the shipped teacher (SST-2), the run's own estimate
        estimate = len(at.metric) >= 1 or any("Estimated run time on this machine" in m.value for m in at.markdown)
        assert estimate and any(b.label.startswith(("Fine-tune", "Launch", "Prune")) for b in at.button)
    else:
        assert charts + tables >= 1, page
    _expect(at, page, task, "precomputed")  # the matrix's "precomputed" state: shipped files, no run
