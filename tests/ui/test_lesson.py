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
    back = next(q for label, q in links.items() if label.startswith("Back: What does pruning remove?"))
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
