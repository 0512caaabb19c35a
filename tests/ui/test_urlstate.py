"""Shareable views (issue 15, item 5): the page address carries the view, a link opens it, presets open theirs."""

import json
from pathlib import Path

import pytest
from tests.helpers import ROOT, open_page, plotly_charts, synthetic_sweep


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A synthetic shipped sweep for every task (test data for the pages, not results); an empty store."""
    import kasp.experiments.results
    from kasp.data.glue import get_task

    folder = tmp_path / "sweeps"
    folder.mkdir()
    for task in ("sst2", "mrpc", "rte", "stsb", "cola"):
        (folder / f"{task}.json").write_text(json.dumps(synthetic_sweep(task, get_task(task).main_metric)))
    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: folder / f"{t}.json")
    store = tmp_path / "store"
    store.mkdir()
    return store


def _curve_names(at) -> set[str]:
    curve = next(c for c in plotly_charts(at) if "against sparsity" in json.dumps(c["layout"].get("title", "")) or
                 any("precomputed sweep" in (t.get("name") or "") for t in c["data"]))
    return {t["name"] for t in curve["data"]}


@pytest.mark.slow
def test_a_link_opens_the_overview_it_names(shipped, monkeypatch):
    at = open_page("overview.py", shipped, monkeypatch, task="mrpc",
                   query={"sparsity": "0.5", "steps": "1000", "methods": "kasp,small-dense"})
    assert at.slider(key="ov_target").value == 0.5
    assert at.number_input(key="ov_steps").value == 1000
    names = _curve_names(at)
    assert "KASP (precomputed sweep)" in names and "small dense (precomputed sweep)" in names
    assert "magnitude baseline (precomputed sweep)" not in names  # the link left it out
    assert not at.warning
    # the viewer's own change goes into the address, and the link does not undo it on the next rerun
    at.slider(key="ov_target").set_value(0.7).run()
    assert at.query_params["sparsity"] == ["0.7"] or at.query_params["sparsity"] == "0.7"
    assert at.slider(key="ov_target").value == 0.7


def _q(at, name):
    v = at.query_params.get(name)
    return v[0] if isinstance(v, list) else v


@pytest.mark.slow
def test_the_address_follows_the_view(shipped, monkeypatch):
    at = open_page("overview.py", shipped, monkeypatch)
    assert _q(at, "sparsity") == "0.9" and _q(at, "steps") == "2000"
    assert _q(at, "methods") is None  # all methods shown: nothing to say
    at.get("button_group")[0].set_value(["kasp", "magnitude"]).run()
    assert _q(at, "methods") == "kasp,magnitude"
    assert "small dense (precomputed sweep)" not in _curve_names(at)


@pytest.mark.slow
@pytest.mark.parametrize("query, what", [({"sparsity": "ninety"}, "sparsity"), ({"steps": "-4"}, "steps"),
                                         ({"methods": "kasp,lottery"}, "methods")])
def test_a_link_value_that_does_not_fit_is_reported_and_ignored(shipped, monkeypatch, query, what):
    at = open_page("overview.py", shipped, monkeypatch, query=query)
    text = " ".join(w.value for w in at.warning)
    assert f"The link's {what}" in text and "showing the default" in text
    assert at.slider(key="ov_target").value == 0.9 and at.number_input(key="ov_steps").value == 2000
    assert "magnitude baseline (precomputed sweep)" in _curve_names(at)


@pytest.mark.slow
def test_pages_drop_the_parameters_of_other_pages(shipped, monkeypatch):
    at = open_page("results.py", shipped, monkeypatch, query={"layer": "3", "methods": "kasp"})
    assert _q(at, "layer") is None and _q(at, "methods") is None
    assert _q(at, "run") is not None  # the Results page's own choice is there


@pytest.mark.slow
def test_results_link_selects_runs_and_the_run_shown(shipped, monkeypatch):
    from kasp.ui.tables import load_precomputed, sweep_runs

    ids = [r["id"] for r in load_precomputed() if r["task"] == "sst2"] + [r["id"] for r in sweep_runs("sst2")]
    pick = [ids[1], ids[2]]
    at = open_page("results.py", shipped, monkeypatch, query={"runs": ",".join(pick), "run": pick[1]})
    assert at.selectbox(key="results_run").options == pick
    assert at.selectbox(key="results_run").value == pick[1]
    assert any("Selected by the link" in c.value for c in at.caption)
    at.button(key="results_clear_link").click().run()
    assert len(at.selectbox(key="results_run").options) == len(ids)
    assert _q(at, "runs") is None


@pytest.mark.slow
def test_app_applies_a_linked_task_and_refuses_an_unknown_one(shipped, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(shipped))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params["task"] = "rte"
    at.run()
    assert not at.exception
    assert at.session_state["task"] == "rte" and at.selectbox(key="_task_widget").value == "rte"
    assert _q(at, "session") and _q(at, "task") == "rte"
    # (AppTest reruns only the page script under st.navigation, so the sidebar's later choices are
    # tested through the pages' own widgets: test_a_link_opens_the_overview_it_names)

    bad = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    bad.query_params["task"] = "imagenet"
    bad.run()
    assert not bad.exception and bad.session_state["task"] == "sst2"
    assert any("The link's task `imagenet`" in w.value for w in bad.warning)


def test_share_url_leaves_the_session_out(monkeypatch):
    import streamlit as st

    from kasp.ui import urlstate

    monkeypatch.setattr(st, "query_params", {"session": "secret", "operator": "key", "task": "rte", "run": "a b"})
    url = urlstate.share_url("http://host:8501/results")
    assert url == "http://host:8501/results?task=rte&run=a+b"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
def test_each_overview_preset_opens_its_view(shipped, monkeypatch, task):
    from kasp.ui.presets import view_presets

    presets = view_presets(task)
    assert len(presets) == 5 and len({p["label"] for p in presets}) == 5
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(shipped))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)  # with the app's navigation
    app.query_params["task"] = task
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    links = {el.proto.label: el.proto for el in app.get("page_link")}
    assert set(links) >= {p["label"] for p in presets}  # every preset is on the Overview, as a page link
    from urllib.parse import parse_qsl

    for p in presets:
        assert dict(parse_qsl(links[p["label"]].query_string)) == p["params"]  # the link carries the preset's view
    for p in presets:
        assert (ROOT / p["page"]).is_file()
        view = open_page(Path(p["page"]).name, shipped, monkeypatch, task=task, query=p["params"])
        assert not view.warning, [w.value for w in view.warning]  # every parameter fitted
        if p["page"] == "pages/overview.py" and "methods" not in p["params"]:  # the 2 x 2 of the recipe study
            assert p["params"]["at"] == "which-ingredient-matters"
            assert any(h.value.startswith("Which ingredient matters?") for h in view.header) == (task == "sst2")
        elif p["page"] == "pages/overview.py":
            wanted = p["params"]["methods"].split(",")
            assert view.get("button_group")[0].value == wanted
            names = _curve_names(view)
            from kasp.ui.figures import METHOD_LABELS

            for m in ("kasp", "magnitude", "small-dense"):
                assert (f"{METHOD_LABELS[m]} (precomputed sweep)" in names) == (m in wanted)
        elif p["page"] == "pages/attention.py":
            assert view.title[0].value.startswith("Attention knowledge")


@pytest.mark.slow
def test_only_the_address_helpers_import_streamlit():
    """The engine never imports Streamlit (docs/architecture.md): in kasp/, only the address helpers
    (kasp/ui/urlstate.py) and the guided lesson's bar (kasp/ui/lesson.py), which draw on every page, do."""
    import ast

    found = []
    for f in sorted((ROOT / "kasp").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                found.append(f.name)
    assert sorted(set(found)) == ["lesson.py", "urlstate.py"]


@pytest.mark.slow
def test_a_partly_shipped_sweep_says_how_far_it_got(shipped, monkeypatch):
    """A results file shipped before its sweep finished (7 of 13 runs) is drawn and says so."""
    import kasp.experiments.results

    res = json.loads(kasp.experiments.results.shipped_sweep_path("mrpc").read_text())
    res["plan"] = {"runs": 13, "budget": {"max_steps": 200}}
    kasp.experiments.results.shipped_sweep_path("mrpc").write_text(json.dumps(res))
    at = open_page("overview.py", shipped, monkeypatch, task="mrpc")
    assert any("holds 10 of its 13 planned runs so far (budget: 200 steps a run)" in c.value for c in at.caption)
    at = open_page("overview.py", shipped, monkeypatch, task="rte")  # complete: nothing to say
    assert not any("planned runs so far" in c.value for c in at.caption)


def test_presets_without_shipped_results_are_disabled_and_say_why(tmp_path, monkeypatch):
    import kasp.experiments.results
    from kasp.ui.presets import view_presets

    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / "none" / f"{t}.json")
    by_label = {p["label"]: p for p in view_presets("mrpc")}
    assert by_label["What does 90 % sparsity remove?"]["disabled"]
    assert by_label["Sparse or small?"]["disabled"] and "small-dense" in by_label["Sparse or small?"]["help"]
    sst2 = {p["label"]: p for p in view_presets("sst2")}  # the shipped precomputed runs: KASP and magnitude
    assert not sst2["Distil or not?"]["disabled"] and sst2["Sparse or small?"]["disabled"]


@pytest.mark.slow
def test_a_link_opened_again_after_another_page_applies_again(shipped, monkeypatch):
    """Open a link, change the view by hand, visit another page, open the same link again: the
    link's view comes back (entering a page treats its address as new)."""
    at = open_page("overview.py", shipped, monkeypatch, query={"sparsity": "0.5"})
    assert at.slider(key="ov_target").value == 0.5
    at.slider(key="ov_target").set_value(0.8).run()
    assert at.slider(key="ov_target").value == 0.8  # the viewer's change holds on this page
    at.session_state["_url_page"] = "runs,run,all"  # the session went to the Results page meanwhile
    at.query_params["sparsity"] = "0.5"
    at.run()
    assert at.slider(key="ov_target").value == 0.5


@pytest.mark.slow
def test_an_unfitting_link_value_is_shown_as_code_never_as_markdown(shipped, monkeypatch):
    evil = "x` [log in](https://evil.example) ![](https://tracker.example/p.png) `"
    at = open_page("overview.py", shipped, monkeypatch, query={"methods": evil})
    text = " ".join(w.value for w in at.warning)
    assert "The link's methods" in text and text.count("`") == 2  # one code span, the link's backticks removed
