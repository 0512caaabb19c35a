"""The models that ship with KASP on the model pages, from an empty run store (issue 25, item 2): Predictions offers
the shipped teacher and students of the lead task and predicts with them, Attention measures and draws a shipped
student against its teacher, Inspect opens one by its address. Each says where the model came from."""

from __future__ import annotations

import pytest

from kasp.models.shipped import manifest
from tests.helpers import open_page, plotly_charts

pytestmark = pytest.mark.slow
SHIPPED = {f"shipped-{r['task']}-{r['name']}" for r in manifest()["runs"] if r["task"] == "sst2"}
#: the page's width in a 1024 px window: Streamlit's sidebar (18.75rem) and the wide layout's side padding (5rem each)
CONTENT_PX = 1024 - 300 - 2 * 80


def _shown_width(table) -> dict[str, int]:
    """{column: width in px} of the columns an AppTest dataframe shows (its column order, else all but the index);
    every shown column has a set width, so that the sum is what the page needs."""
    import json

    config = json.loads(table.proto.columns)
    shown = list(table.proto.column_order) or list(table.value.columns)
    return {c: config[c]["width"] for c in shown}


def test_the_lead_task_ships_a_teacher_and_three_students():
    assert SHIPPED == {"shipped-sst2-teacher", "shipped-sst2-kasp-90", "shipped-sst2-magnitude-90",
                       "shipped-sst2-small-dense-90"}


def test_predictions_offers_and_runs_the_shipped_models(tmp_path, monkeypatch):
    at = open_page("predict.py", tmp_path, monkeypatch, timeout=180)
    teacher = at.selectbox(key="predict_teacher_sst2")
    assert teacher.value.startswith("shipped-sst2-teacher")
    students = at.multiselect(key="predict_students_sst2")
    assert {o.split(" ")[0] for o in students.value} == SHIPPED - {"shipped-sst2-teacher"}
    table = next(d for d in at.dataframe if "gold" in d.value.columns)
    assert len(table.value) == 4  # the teacher and three students, each with a predicted class
    assert any("shipped with KASP" in m.value and "measured on the shipped" in m.value for m in at.markdown)
    # review at 1024 x 768: the chips and the rows name a student short, and the table's shown columns fit the page
    short = ["small dense, 90 %", "magnitude baseline, 90 %", "KASP, 90 %"]
    assert students.options == short and students.proto.wrap  # chips that wrap, never one cut chip
    assert list(table.value["model"]) == ["dense teacher"] + short
    shown = _shown_width(table)
    assert {"P(negative)", "P(positive)"} <= set(shown) and sum(shown.values()) <= CONTENT_PX


def test_predictions_without_shipped_weights_score_each_condition_as_the_overview(tmp_path, monkeypatch):
    """MRPC ships no weights: the page lists what its shipped sweep scored, one row per condition with the mean over
    its seeds, the number the Overview draws (review: seed 42's 81.48 stood for KASP at 90 %, the Overview's 80.77),
    in a table whole at 1024 px (its run column was cut off)."""
    from kasp.ui.curves import curve_data
    from kasp.ui.engine import metric_axis

    at = open_page("predict.py", tmp_path, monkeypatch, task="mrpc")
    table = at.dataframe[0]
    rows = table.value[(table.value["method"] == "KASP") & (table.value["sparsity (%)"].round() == 90)]
    points = curve_data("mrpc").points
    drawn = points[(points["source"] == "precomputed sweep") & (points["method"] == "kasp")
                   & (points["nominal"] == 0.9)]
    assert len(rows) == 1 and len(drawn) == 1
    assert rows[metric_axis("mrpc")].iloc[0] == pytest.approx(drawn["metric"].iloc[0] * 100)
    assert rows["seeds"].iloc[0] == drawn["n"].iloc[0] == 2 and rows["run"].iloc[0] == "sweep/kasp@0.9"
    assert sum(_shown_width(table).values()) <= CONTENT_PX


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
    # Sizes: what each row is, and the file that ships (4.2 MB), said as such beside the measured encodings
    import json
    from pathlib import Path

    from kasp.models.shipped import models_dir

    shipped_bytes = json.loads((models_dir() / "sst2" / "kasp-90" / "shipped.json").read_text())["bytes"]
    assert any(h.value.startswith("Sizes: this checkpoint's weights in each format") for h in at.subheader)
    assert any("file on disk now" in c.value and "computed by encoding these same weights" in c.value
               for c in at.caption)
    assert any(f"The file that ships with KASP: {shipped_bytes / 1e6:.2f} MB" in m.value and "compact export" in m.value
               for m in at.markdown)
    titles = [f["layout"]["title"]["text"] for f in plotly_charts(at) if "title" in f.get("layout", {})]
    assert not any("Bytes on disk, measured" in t for t in titles)
    # the bound counts the 16 bits its float16-rounded values need: no encoding measured here goes below it
    sizes = next(d.value for d in at.dataframe if "format" in d.value.columns).set_index("format")
    lin = sizes["encoder linear (MB)"]
    assert lin["information bound"] < lin["dense + zstd -3"] and lin["information bound"] < lin["KASP sparse export"]
    assert any("16 here" in c.value for c in at.caption)
    # what the checkpoint says about itself: the unpacked teacher (a folder that exists) and the method's name
    card = "\n".join(m.value for m in at.markdown if "made by KASP" in m.value)
    assert "method KASP," in card, card
    teacher = card.split("teacher: ")[1].split("\n")[0]
    assert Path(teacher).is_dir() and "shipped-sst2-teacher" in teacher, teacher
