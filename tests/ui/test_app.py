"""AppTest of each page on a run store produced by the engine itself (tiny model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT, open_page, plotly_charts
from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir

PAGES = ROOT / "pages"


@pytest.fixture(scope="module")
def app_store(tmp_path_factory, tiny_store, tiny_pretrained) -> Path:
    """Teacher + a KASP run + a magnitude run + a failed run, all written by `kasp`."""
    store = tmp_path_factory.mktemp("appstore")
    shutil.copytree(tiny_store / "teacher", store / "teacher")
    common = ["--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "6", "--pruning-events", "3",
              "--max-train-samples", "96", "--max-eval-samples", "32", "--eval-every", "3", "--log-every", "2",
              "--runs-dir", str(store), "--no-progress"]
    assert main(["prune", *common, "--sparsity", "0.8", "--method", "kasp", "--out", str(store / "kasp80")]) == 0
    assert main(["prune", *common, "--sparsity", "0.5", "--method", "magnitude", "--out", str(store / "mag50")]) == 0
    assert main(["prune", *common, "--sparsity", "0.5", "--teacher", str(store / "missing"),
                 "--out", str(store / "broken")]) == 2
    return store


def _run(page: str, store: Path, monkeypatch, **state) -> AppTest:
    return open_page(page, store, monkeypatch, **state)


def _charts(at: AppTest) -> list[dict]:
    return plotly_charts(at)


@pytest.mark.slow
def test_results_table_lists_every_run(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    df = at.dataframe[0].value
    live = df[df["source"] == "live run"]
    assert set(live["id"]) == {"teacher", "kasp80", "mag50", "broken"}
    states = dict(zip(live["id"], live["state"]))
    assert states == {"teacher": "done", "kasp80": "done", "mag50": "done", "broken": "failed"}
    kasp = live[live["id"] == "kasp80"].iloc[0]
    assert kasp["measured sparsity (%)"] == pytest.approx(RunDir(app_store / "kasp80").report()["sparsity"]["pruned_sparsity"] * 100)
    assert "does not exist" in live[live["id"] == "broken"].iloc[0]["error"]


@pytest.mark.slow
def test_results_charts_and_heatmap(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    charts = _charts(at)
    scatter = charts[0]
    assert "sparsity" in scatter["layout"]["xaxis"]["title"]["text"]
    methods = {tr["legendgroup"].split(",")[0] for tr in scatter["data"]}
    assert {"kasp", "magnitude"} <= methods
    heat = next(c for c in charts if c["data"][0]["type"] == "heatmap")
    z = heat["data"][0]["z"]
    assert len(z) == 2 and all(len(r) == 6 for r in z)  # 2 layers x (Q, K, V, O, FFN-in, FFN-out)
    assert heat["data"][0]["x"] == ["Q", "K", "V", "O", "FFN-in", "FFN-out"]


@pytest.mark.slow
def test_results_shows_error_of_failed_run(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    at.selectbox[0].set_value("broken").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


@pytest.mark.slow
def test_prune_page_names_teacher_and_estimates(app_store, monkeypatch, tiny_pretrained):
    at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained))
    assert any("teacher" in c.value for c in at.caption)
    # SST-2's KASP default counts 2,500 steps (the recipe study's): the page opens counting them
    assert at.toggle(key="prune_by_time").value is False
    assert next(n for n in at.number_input if n.label == "Budget: training steps").value == 2500
    assert any("Estimated run time" in m.value for m in at.markdown)
    at.toggle(key="prune_by_time").set_value(True).run()  # a budget in minutes is an option
    assert any(m.value.startswith("**Run time: ") for m in at.markdown)
    assert at.button  # the form's Launch button exists and is enabled
    launch = [b for b in at.button if b.label == "Launch"][0]
    assert not launch.disabled


@pytest.mark.slow
def test_prune_page_launches_a_run_with_a_time_budget(app_store, monkeypatch, tiny_pretrained):
    from kasp.experiments import jobs

    launched = []
    monkeypatch.setattr(jobs, "launch", lambda kind, opts, owner=None: launched.append((kind, opts)) or
                        (_ for _ in ()).throw(KaspError("not started in this test")))
    at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained))
    [b for b in at.button if b.label == "Launch"][0].click().run()  # as it opens: the default's 2,500 steps
    assert launched[-1][1]["time_budget"] is None and launched[-1][1]["max_steps"] == 2500
    at.toggle(key="prune_by_time").set_value(True).run()  # minutes are an option
    next(n for n in at.number_input if n.label == "Budget: minutes").set_value(7.0).run()
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert launched[-1][1]["time_budget"] == 7.0 and launched[-1][1]["max_steps"] is None
    at.toggle(key="prune_class").set_value(True).run()  # the class preset counts steps: the toggle follows it
    assert at.toggle(key="prune_by_time").value is False
    assert any(c.value.startswith("Measured on SST-2 at 90 %") for c in at.caption)  # what the preset showed
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert launched[-1][1]["time_budget"] is None and launched[-1][1]["max_steps"] == 500
    at.toggle(key="prune_class").set_value(False).run()
    at.toggle(key="prune_by_time").set_value(True).run()  # the user's choice, until the task, method or preset changes
    at.radio(key="prune_method").set_value("magnitude").run()
    assert at.toggle(key="prune_by_time").value is False  # a new method: the recipe's default (steps) again


@pytest.mark.slow
def test_prune_page_without_teacher_offers_finetune(tmp_path, monkeypatch):
    at = _run("prune.py", tmp_path, monkeypatch, task="mrpc")  # no MRPC model ships
    assert any("fine-tuned teacher" in w.value for w in at.warning)
    assert any(b.label == "Fine-tune the teacher" for b in at.button)
    assert [b for b in at.button if b.label == "Launch"][0].disabled


@pytest.mark.slow
def test_prune_page_on_a_fresh_store_offers_the_shipped_teacher(tmp_path, monkeypatch):
    """SST-2 ships a teacher: a student can launch at once (its path goes with the run), or switch to their own."""
    from kasp.experiments import jobs

    launched = []
    monkeypatch.setattr(jobs, "launch", lambda kind, opts, owner=None: launched.append((kind, opts)) or
                        (_ for _ in ()).throw(KaspError("not started in this test")))
    at = _run("prune.py", tmp_path, monkeypatch)
    assert at.toggle(key="prune_shipped_teacher").value is True
    assert any(c.value.startswith("Teacher: `shipped-sst2-teacher` (shipped model") for c in at.caption)
    adopted = [c.value for c in at.caption if "recipe study adopted (`sst2-combined-steps2500`" in c.value]
    assert adopted and "learning rate 4e-4" in adopted[0] and "steps 2,500" in adopted[0] and "recovery phase the last 20 % of the steps" in adopted[0]  # SST-2's KASP default, said
    assert not any("fine-tuned teacher" in w.value for w in at.warning)
    lr = [s for s in at.select_slider if s.label == "Learning rate"][0]
    assert float(lr.value) == 4e-4 and max(float(o) for o in lr.options) > 4e-4  # the default is not the slider's end
    [b for b in at.button if b.label == "Launch"][0].click().run()
    assert launched[-1][0] == "prune" and launched[-1][1]["teacher"].endswith("shipped-sst2-teacher")
    at.toggle(key="prune_shipped_teacher").set_value(False).run()
    assert any(b.label == "Fine-tune the teacher" for b in at.button)
    assert [b for b in at.button if b.label == "Launch"][0].disabled


@pytest.mark.slow
def test_overview_schedule_and_curves(app_store, monkeypatch):
    at = _run("overview.py", app_store, monkeypatch)
    charts = _charts(at)
    sched = charts[0]
    ys = sched["data"][0]["y"]
    assert ys[0] == 0 and ys[-1] == pytest.approx(90.0)
    assert len(sched["data"][1]["x"]) == 100  # the mask-update points
    assert any("SST-2's default KASP recipe prunes to 50 % at step 0" in c.value and "(chosen by the recipe study;" in c.value
               for c in at.caption)
    at.slider(key="ov_initial").set_value(0.5).run()
    at.slider(key="ov_recovery").set_value(0.2).run()
    sched = _charts(at)[0]   # the default's schedule: 50 % at step 0, the target from 80 % of the steps on
    assert sched["data"][0]["y"][0] == pytest.approx(50.0) and sched["data"][1]["x"][0] == 0
    flat = [y for x, y in zip(sched["data"][0]["x"], sched["data"][0]["y"]) if x >= 1600]
    assert flat and all(y == pytest.approx(90.0) for y in flat)
    at.slider[0].set_value(0.5).run()
    assert _charts(at)[0]["data"][0]["y"][-1] == pytest.approx(50.0)
    curve = charts[1]
    xs = sorted(x for tr in curve["data"] for x in tr["x"])
    assert any(abs(x - 80) < 1 for x in xs) and any(abs(x - 50) < 1 for x in xs)  # the live kasp80 and mag50 runs


@pytest.mark.slow
def test_attention_measures_with_one_click_and_labels_every_token(app_store, monkeypatch):
    at = _run("attention.py", app_store, monkeypatch)
    # opening the page measured the selected student; the other one waits for the button
    measure = [b for b in at.button if b.label.startswith("Measure 1 run(s)")]
    assert len(measure) == 1
    measure[0].click().run()
    assert not at.exception
    assert not [b for b in at.button if b.label.startswith("Measure")]  # one click measured it
    for rid in ("kasp80", "mag50"):
        assert json.loads((app_store / rid / "retention.json").read_text())["samples_requested"] == 128
    scatter = _charts(at)[0]
    assert sorted(x for tr in scatter["data"] if "live run" in tr["name"] for x in tr["x"]) == pytest.approx(
        sorted(RunDir(app_store / r).report()["sparsity"]["pruned_sparsity"] * 100 for r in ("kasp80", "mag50")))
    # the sentence heat maps: one row per token, repeated tokens kept apart
    at.text_input(key="text-a-sst2").set_value("The cat sat on the mat. A cat is sitting.").run()
    assert not at.exception
    heat = [c for c in _charts(at) if c["layout"]["title"]["text"].startswith(("Teacher: layer", "Student: layer"))]
    assert len(heat) == 2
    for h in heat:
        ys = h["data"][0]["y"]
        assert len(ys) == len(set(ys)) == len(h["data"][0]["z"]) and "the·1" in ys and "the·5" in ys


@pytest.mark.slow
def test_app_sidebar_checks_the_model_and_gives_the_session_a_token(tmp_path, monkeypatch):
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    token = at.session_state["owner"]
    assert at.query_params["session"] in (token, [token])  # kept in the address: a reload keeps it
    assert not at.session_state["operator"] and not at.sidebar.error
    assert list(at.sidebar.selectbox[0].options) == ["SST-2 (sentiment)", "CoLA (grammaticality)", "MRPC (paraphrase)",
                                                     "STS-B (similarity)", "RTE (entailment)", "WNLI (coreference)",
                                                     "QNLI (question answering, dev only offline)"]
    # AppTest drops the sidebar of st.navigation apps on reruns, so a fresh session names the model
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["model"] = "bert-base-uncased"
    at.run()
    assert not at.exception
    assert any("works offline" in e.value and "default" in e.value for e in at.sidebar.error)


def _app_with_key(store: Path, monkeypatch, key: str, **state) -> AppTest:
    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["operator"] = key
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert "operator" not in at.query_params and at.query_params["session"]  # read once, gone from the address
    return at


@pytest.mark.slow
def test_operator_key_is_read_once_and_leaves_the_address(tmp_path, monkeypatch):
    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    monkeypatch.setenv("KASP_OPERATOR_KEY", "the-lecturers-long-key")
    at = _app_with_key(tmp_path, monkeypatch, "the-lecturers-long-key")
    assert at.session_state["operator"] is True
    assert any("Operator session" in c.value for c in at.sidebar.caption)
    at = _app_with_key(tmp_path, monkeypatch, "a-wrong-guess")
    assert at.session_state["operator"] is False and at.session_state["operator_failures"] == 1
    assert [w.value for w in at.sidebar.warning] == ["Wrong operator key: 4 more attempts in this session."]
    # a session that has used its five attempts takes no key, not even the right one
    at = _app_with_key(tmp_path, monkeypatch, "the-lecturers-long-key", operator_failures=5)
    assert at.session_state["operator"] is False
    assert any("accepts no more" in w.value for w in at.sidebar.warning)
    # a key shorter than 16 characters is switched off, and the sidebar says why
    monkeypatch.setenv("KASP_OPERATOR_KEY", "too-short")
    at = _app_with_key(tmp_path, monkeypatch, "too-short")
    assert at.session_state["operator"] is False
    assert any("shorter than the 16 required" in w.value for w in at.sidebar.warning)


@pytest.mark.slow
def test_prune_page_from_another_session_is_read_only(app_store, monkeypatch, tiny_pretrained):
    run = RunDir.create(app_store / "zz-running-of-another-tab")
    run.set_status("running", pid=__import__("os").getpid(), step=1, total_steps=5, owner="another-tab-token")
    try:
        at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained), owner="this-tab-token")
        assert not [b for b in at.button if b.label == "Cancel"]
        at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained), owner="another-tab-token")
        assert [b.key for b in at.button if b.label == "Cancel"] == ["cancel-zz-running-of-another-tab"]
        assert [b for b in at.button if b.label == "Launch"][0].disabled  # its own run is running
        at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained), owner="x-tab-token", operator=True)
        assert [b.key for b in at.button if b.label == "Cancel"] == ["cancel-zz-running-of-another-tab"]
        at = _run("results.py", app_store, monkeypatch, owner="this-tab-token")
        popovers = [p.proto.popover.label for p in at.get("popover")]
        assert "Link to this view" in popovers and "Delete run" not in popovers  # no Delete for a run this session did not launch
    finally:
        shutil.rmtree(run.path)


def test_the_class_presets_measured_numbers_are_those_of_its_shipped_trials():
    """The Prune page's note on the class preset quotes bench/trials/class-steps500.json and the SST-2 sweep."""
    import re

    from kasp.spec.config import load_recipe
    from kasp.experiments.results import load_results

    text = re.search(r"CLASS_PRESET_NOTE = \((.*?)\)\n", (PAGES / "prune.py").read_text(), re.S).group(1)
    text = "".join(re.findall(r'"([^"]*)"', text))

    def mean_spread(path, method):
        v = [e["metric"] * 100 for e in load_results(path)["runs"] if e["method"] == method and e["sparsity"] == 0.9]
        assert len(v) == 2  # two seeds
        return f"{sum(v) / 2:.2f} ± {(max(v) - min(v)) / 2:.2f}"

    trial = ROOT / "bench" / "trials" / "class-steps500.json"
    shipped = ROOT / "bench" / "trials" / "class-steps500-shipped-teacher.json"
    sweep = ROOT / "assets" / "sweeps" / "sst2.json"
    assert f"baseline reaches {mean_spread(trial, 'magnitude')} and KASP {mean_spread(trial, 'kasp')}" in text
    assert f"KASP {mean_spread(sweep, 'kasp')} against {mean_spread(sweep, 'magnitude')}" in text
    assert f"300-step teacher ({load_results(trial)['teacher']['metric'] * 100:.2f} %)" in text
    # the fresh clone's case: the page distils from the shipped teacher, and there KASP leads
    res = load_results(shipped)
    assert res["teacher"]["run_id"] == "shipped-sst2-teacher" and res["plan"]["budget"]["max_steps"] == 500
    assert res["teacher"]["recipe"]["max_steps"] == 1400
    assert f"1,400 steps, {res['teacher']['metric'] * 100:.2f} % as shipped)" in text
    adopted = ROOT / "bench" / "trials" / "class-steps500-shipped-teacher-adopted.json"
    assert load_results(adopted)["teacher"]["run_id"] == "shipped-sst2-teacher"
    assert {e["recipe"]["lr"] for e in load_results(adopted)["runs"]} == {4e-4}   # SST-2's adopted recipe
    assert (f"500 steps give KASP {mean_spread(adopted, 'kasp')} with SST-2's default recipe since 2026-12-03" in text
            and f"against the magnitude baseline's {mean_spread(shipped, 'magnitude')}; with the earlier recipe KASP "
                f"reached {mean_spread(shipped, 'kasp')}" in text)
    budget = load_results(trial)["plan"]["budget"]
    assert budget["max_steps"] == load_recipe("class", "prune")["max_steps"] == 500 and "500 steps" in text
    assert budget["teacher_steps"] == load_recipe("class", "finetune")["max_steps"] == 300


@pytest.mark.slow
def test_operator_key_typed_into_the_sidebar_never_enters_the_address(tmp_path, monkeypatch):
    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    monkeypatch.setenv("KASP_OPERATOR_KEY", "the-lecturers-long-key")
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    box = next(t for t in at.sidebar.text_input if t.label == "Operator key")
    assert box.proto.type == box.proto.PASSWORD
    box.input("the-lecturers-long-key")
    at.run()
    assert not at.exception
    assert at.session_state["operator"] is True
    assert all("the-lecturers-long-key" not in str(v) for v in at.query_params.values())
    monkeypatch.delenv("KASP_OPERATOR_KEY")  # no key configured: no box
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not any(t.label == "Operator key" for t in at.sidebar.text_input)
