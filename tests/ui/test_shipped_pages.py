"""The models that ship with KASP on the model pages, from an empty run store (issue 25, item 2): Predictions offers
the shipped teacher and students of the lead task and predicts with them, Attention measures and draws a shipped
student against its teacher, Inspect opens one by its address. Each says where the model came from."""

from __future__ import annotations

import pytest

from kasp.models.shipped import manifest
from tests.helpers import open_page, plotly_charts

pytestmark = pytest.mark.slow
SHIPPED = {f"shipped-{r['task']}-{r['name']}" for r in manifest()["runs"] if r["task"] == "sst2"}


def test_the_lead_task_ships_a_teacher_and_three_students():
    assert SHIPPED == {"shipped-sst2-teacher", "shipped-sst2-kasp-90", "shipped-sst2-magnitude-90",
                       "shipped-sst2-small-dense-90"}


def test_predictions_offers_and_runs_the_shipped_models(tmp_path, monkeypatch):
    at = open_page("predict.py", tmp_path, monkeypatch, timeout=180)
    teacher = at.selectbox(key="predict_teacher_sst2")
    assert teacher.value.startswith("shipped-sst2-teacher")
    students = at.multiselect(key="predict_students_sst2")
    assert {o.split(" ")[0] for o in students.options} == SHIPPED - {"shipped-sst2-teacher"}
    assert len(students.value) == 3
    table = next(d.value for d in at.dataframe if "gold" in d.value.columns)
    assert len(table) == 4  # the teacher and three students, each with a predicted class
    assert any("shipped with KASP" in m.value and "measured on the shipped" in m.value for m in at.markdown)


def test_attention_draws_a_shipped_student_against_its_teacher(tmp_path, monkeypatch):
    at = open_page("attention.py", tmp_path, monkeypatch, timeout=240)
    assert at.selectbox(key="att_run").value == "shipped-sst2-kasp-90"  # a student with weights, not a summary
    names = [t.get("name", "") for f in plotly_charts(at) for t in f.get("data", [])]
    assert any("(shipped model)" in n for n in names)  # its retention, marked as the shipped model's
    assert any("shipped with KASP" in m.value for m in at.markdown)


def test_inspect_opens_a_shipped_student_by_its_address(tmp_path, monkeypatch):
    at = open_page("inspect.py", tmp_path, monkeypatch, timeout=180, query={"run": "shipped-sst2-kasp-90"})
    assert at.selectbox(key="inspect_run").value == "shipped-sst2-kasp-90"
    zeros = next(m for m in at.metric if m.label == "Encoder linear weights").value
    assert float(zeros.split(" ")[0]) == pytest.approx(90.0, abs=0.1)
