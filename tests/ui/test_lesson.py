"""The guided lesson (kasp/ui/lesson.py): each step's page, with ?lesson=n in its address, draws the bar of step n,
links Back and Next to the neighbouring steps' views, and marks the answer; the glossary defines every term it uses."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from kasp.ui.lesson import GLOSSARY, explain, steps
from tests.helpers import open_page, plotly_charts


def test_steps_cover_the_path_of_the_issue_and_carry_their_number():
    s = steps("mrpc")
    assert [x["key"] for x in s] == ["removes", "schedule", "distil", "small", "kept", "weights", "sentence"]
    assert [x["params"]["lesson"] for x in s] == [str(i) for i in range(1, 8)]
    assert s[2]["params"]["methods"] == "kasp,magnitude" and s[3]["params"]["methods"] == "kasp,small-dense"
    assert all(x["params"]["task"] == "mrpc" for x in s[:6])


def test_explain_refuses_an_undefined_term():
    assert "Jensen" in explain("JS") and "\n" in explain("JS", "CKA")
    with pytest.raises(KeyError):
        explain("perplexity")
    for term in ("CKA", "JS", "MCC", "¼ octave", "information bound", "s_f", "encoder linear weights"):
        assert GLOSSARY[term].endswith(".") or GLOSSARY[term].endswith(")"), term


def _links(at) -> dict[str, dict[str, list[str]]]:
    """Markdown links of the page (page links fall back to them without st.navigation): label -> query."""
    import re

    out = {}
    for m in at.markdown:
        for label, q in re.findall(r"\[([^\]]+)\]\(\?([^)]*)\)", m.value):
            out[label] = parse_qs(q)
    return out


def _annotations(at) -> list[str]:
    return [a.get("text", "") for f in plotly_charts(at) for a in f.get("layout", {}).get("annotations", [])]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mrpc"])
def test_overview_steps_draw_the_bar_links_and_marks(tmp_path, monkeypatch, task):
    at = open_page("overview.py", tmp_path, monkeypatch, task=task, query={"lesson": "2"})
    assert any("Lesson, step 2 of 7: How fast are the weights removed?" in m.value for m in at.markdown)
    links = _links(at)
    nxt = next(q for label, q in links.items() if label.startswith("Next: Distil or not?"))
    assert nxt["lesson"] == ["3"] and nxt["methods"] == ["kasp,magnitude"] and nxt["task"] == [task]
    back = links["Back"]
    assert back["lesson"] == ["1"] and back["run"] == ["shipped-sst2-kasp-90"]
    assert any(t.startswith("half-way:") for t in _annotations(at))  # the schedule's answer, marked
    assert any(c.value.startswith(f"{'SST-2' if task == 'sst2' else 'MRPC'}: the shipped runs trained") for c in at.caption)
    at = open_page("overview.py", tmp_path, monkeypatch, task=task, query={"lesson": "3", "methods": "kasp,magnitude"})
    assert "90 %: compare the methods here" in _annotations(at)
    assert not any(t.startswith("half-way:") for t in _annotations(at))  # only the step's own mark


@pytest.mark.slow
def test_without_the_parameter_no_bar_and_no_mark(tmp_path, monkeypatch):
    at = open_page("overview.py", tmp_path, monkeypatch)
    assert not any("Lesson, step" in m.value for m in at.markdown)
    assert not _annotations(at) or "90 %: compare the methods here" not in _annotations(at)
    assert "Start the guided lesson (7 steps)" in _links(at)
    assert any(e.label == "Terms in plain words" for e in at.expander)


@pytest.mark.slow
def test_attention_and_weights_steps_mark_their_answer(tmp_path, monkeypatch):
    at = open_page("attention.py", tmp_path, monkeypatch, query={"lesson": "5"})
    assert any("Lesson, step 5 of 7" in m.value for m in at.markdown)
    assert _annotations(at).count("90 %") >= 2  # both retention charts
    at = open_page("weights.py", tmp_path, monkeypatch, query={"lesson": "6"})
    assert any("Press Play" in i.value for i in at.info)


@pytest.mark.slow
def test_the_last_step_says_it_switched_task_and_leads_back_to_the_lessons_task(tmp_path, monkeypatch):
    """MRPC ships no model, so step 7 opens Predictions on SST-2: its bar says so, and Back returns to MRPC."""
    last = steps("mrpc")[-1]
    assert last["params"]["task"] == "sst2" and last["params"]["lesson_from"] == "mrpc"
    at = open_page("predict.py", tmp_path, monkeypatch, task="sst2", query=last["params"])
    assert any("Lesson, step 7 of 7" in m.value for m in at.markdown)
    assert any("No trained MRPC model ships with KASP, so this step switches to SST-2" in m.value for m in at.markdown)
    back = _links(at)["Back"]
    assert back["task"] == ["mrpc"] and back["lesson"] == ["6"] and "lesson_from" not in back


def _in_order(node) -> list:
    """Every element under ``node``, in page order (depth first)."""
    kids = getattr(node, "children", None)
    out = [node]
    for k in sorted(kids) if isinstance(kids, dict) else []:
        out += _in_order(kids[k])
    return out


def _frames(at) -> list[str]:
    """The srcdoc of every iframe the run drew (the scroll scripts of kasp.ui.lesson.scroll_to)."""
    out, todo = [], [at._tree]
    while todo:
        node = todo.pop()
        kids = getattr(node, "children", None)
        todo += list(kids.values()) if isinstance(kids, dict) else []
        if type(node).__name__ == "UnknownElement" and node.type == "iframe":
            out.append(node.proto.srcdoc)
    return out


@pytest.mark.slow
def test_a_question_scrolls_to_its_answer_and_a_step_to_its_bar(tmp_path, monkeypatch):
    """A one-click question's ?at= scrolls to the heading of its answer; in the lesson the bar is drawn just above
    that heading and the scroll brings the bar (and with it the chart) into view."""
    from streamlit.testing.v1 import AppTest

    from kasp.ui.presets import view_presets
    from tests.helpers import ROOT

    distil = next(p for p in view_presets("sst2") if p["label"] == "Distil or not?")
    assert distil["params"]["at"] == "dev-metric-against-sparsity"
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path))
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for k, v in distil["params"].items():
        app.query_params[k] = v
    app.run()
    assert not app.exception
    assert any('getElementById("dev-metric-against-sparsity")' in f for f in _frames(app))
    at = open_page("overview.py", tmp_path, monkeypatch, query={"lesson": "3", "methods": "kasp,magnitude"})
    assert any('querySelector(".st-key-lesson-bar-3")' in f for f in _frames(at))
    texts = [f"{type(e).__name__}:{e.value}" for e in _in_order(at._tree) if isinstance(getattr(e, "value", None), str)]
    bar = next(i for i, t in enumerate(texts) if "Lesson, step 3 of 7" in t)
    answer = next(i for i, t in enumerate(texts) if t.startswith("Header:") and "against sparsity" in t)
    schedule = next(i for i, t in enumerate(texts) if t == "Header:The cubic sparsity schedule")
    assert schedule < bar < answer  # just above the answer's heading, not at the top of the page
    at = open_page("inspect.py", tmp_path, monkeypatch, query=steps("sst2")[0]["params"])
    assert any("Lesson, step 1 of 7" in m.value for m in at.markdown)
