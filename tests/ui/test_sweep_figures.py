"""The accuracy-against-sparsity figure, its caption and the overview page's shipped sweep (issue 15)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import ROOT, synthetic_sweep, valid_sweep_results

# --- figure and caption ----------------------------------------------------------------------------
def _points(rows):
    return pd.DataFrame(rows, columns=["method", "nominal", "sparsity", "metric", "spread", "n", "source", "label"])


def test_sweep_points_mean_and_spread():
    from kasp.experiments.results import sweep_points

    res = valid_sweep_results()
    res["runs"].append({**res["runs"][0], "key": "kasp@0.9/seed43", "seed": 43, "metric": 0.84})
    res["runs"].append({**res["runs"][0], "key": "small-dense@0.9/seed42", "method": "small-dense", "metric": 0.8,
                        "measured_sparsity": 0.0, "small_dense": {"equivalent_sparsity": 0.8984}})
    p = sweep_points(res).set_index("method")
    assert p.loc["kasp", "metric"] == pytest.approx(0.85) and p.loc["kasp", "spread"] == pytest.approx(0.01)
    assert p.loc["kasp", "n"] == 2 and p.loc["small-dense", "n"] == 1
    assert p.loc["small-dense", "sparsity"] == pytest.approx(0.8984) and p.loc["small-dense", "nominal"] == 0.9


def test_sweep_points_label_names_the_budget_in_epochs_and_steps():
    """A sweep planned in epochs (kasp sweep --epochs) says both in its points' label; one in steps, its steps."""
    from kasp.experiments.results import sweep_points

    res = valid_sweep_results()
    res["plan"] = {"budget": {"max_steps": 200}}
    assert set(sweep_points(res)["label"]) == {f"kasp sweep --task {res['task']} (200 steps per run)"}
    res["plan"] = {"budget": {"max_steps": 575, "epochs": 5.0}}
    assert set(sweep_points(res)["label"]) == {f"kasp sweep --task {res['task']} (5 epochs, 575 steps per run)"}


def test_y_range_does_not_let_small_differences_fill_the_chart():
    from kasp.ui.figures import MIN_SPAN_POINTS, curve_y_range

    lo, hi = curve_y_range([88.50, 88.60], [0.0])  # the MRPC case of the issue: 0.1 apart
    assert hi - lo >= MIN_SPAN_POINTS and lo < 88.5 and hi > 88.6
    lo, hi = curve_y_range([86.0, 86.3], [1.0])  # a spread of 1 point: a 0.3 difference is small on the chart
    assert 0.3 / (hi - lo) < 1 / 6
    lo, hi = curve_y_range([60.0, 90.0], [0.5])  # a real range is shown whole
    assert lo < 60 and hi > 90 and hi - lo < 40


def test_figure_uses_one_colour_per_method_and_no_annotations():
    from kasp.ui.figures import METHOD_COLOURS, accuracy_sparsity_figure

    pts = _points([("kasp", 0.5, 0.5, 0.88, 0.0, 1, "precomputed sweep", "x"),
                   ("kasp", 0.9, 0.9, 0.86, 0.003, 2, "precomputed sweep", "x"),
                   ("magnitude", 0.9, 0.9, 0.82, 0.004, 2, "precomputed sweep", "x"),
                   ("magnitude", float("nan"), 0.9, 0.83, 0.0, 1, "live run", "run-1")])
    pub = pd.DataFrame({"method": ["SparseBERT (KASP)"], "sparsity": [0.95], "metric": [0.885]})
    fig = accuracy_sparsity_figure(pts, teacher=(0.8956, "live run t"), published=pub, metric_name="accuracy", task="sst2")
    by_name = {t.name: t for t in fig.data}
    kasp = by_name["KASP (precomputed sweep)"]
    assert kasp.marker.color == METHOD_COLOURS["kasp"] and list(kasp.error_y.array) == pytest.approx([0.0, 0.3])
    assert by_name["magnitude baseline (live run)"].marker.color == METHOD_COLOURS["magnitude"]
    assert by_name["magnitude baseline (live run)"].marker.symbol == "diamond"
    assert "published, BERT-base (Xu et al. 2021)" in by_name
    assert any(n.startswith("dense teacher 89.56") for n in by_name)
    assert not fig.layout.annotations  # labels live in the legend: they cannot overlap
    lo, hi = fig.layout.yaxis.range
    assert lo <= 82 - 0.4 and hi >= 89.56


def test_caption_says_who_leads_and_when_a_claim_fails():
    from kasp.ui.figures import curve_caption

    holds = _points([("kasp", 0.9, 0.9, 0.865, 0.003, 2, "s", ""), ("magnitude", 0.9, 0.9, 0.825, 0.004, 2, "s", ""),
                     ("small-dense", 0.9, 0.899, 0.80, 0.002, 2, "s", "")])
    c = curve_caption(holds, "accuracy")
    assert c.startswith("At 90 % sparsity, dev accuracy: KASP 86.50, magnitude baseline 82.50, small dense 80.00.")
    assert "leads the magnitude baseline by 4.00 points, more than the seed spread (±0.40)" in c
    assert "leads the small dense model by 6.50" in c and "does not hold" not in c and c.endswith("as the paper claims.")
    fails = _points([("kasp", 0.9, 0.9, 0.80, 0.002, 2, "s", ""), ("small-dense", 0.9, 0.899, 0.83, 0.002, 2, "s", "")])
    assert "the paper's claim that a sparse model beats a small dense one" in curve_caption(fails) and \
        "does not hold" in curve_caption(fails)
    tie = _points([("kasp", 0.9, 0.9, 0.861, 0.01, 2, "s", ""), ("magnitude", 0.9, 0.9, 0.858, 0.01, 2, "s", "")])
    assert "no more than the seed spread (±1.00): no winner" in curve_caption(tie)
    assert "as the paper claims" not in curve_caption(tie) and "does not hold" not in curve_caption(tie)
    one = _points([("kasp", 0.9, 0.9, 0.86, 0.0, 1, "s", ""), ("magnitude", 0.9, 0.9, 0.82, 0.0, 1, "s", "")])
    assert "one seed (spread unknown)" in curve_caption(one)
    assert curve_caption(_points([])).startswith("No KASP result at 90 %")


def test_the_majority_class_is_a_floor_on_the_curve_and_in_the_caption():
    """MRPC's F1 of always answering "paraphrase" is 81.22: a 90 % student at 81.48 has learnt little, and
    the chart and its caption say so; a floor far below the results (SST-2's 50.92) never widens the axis."""
    from kasp.ui.figures import accuracy_sparsity_figure, curve_caption
    from kasp.ui.devset import majority_metric

    assert majority_metric("mrpc") == pytest.approx(0.8122, abs=1e-4) and majority_metric("stsb") is None
    near = _points([("kasp", 0.9, 0.9, 0.8148, 0.0, 1, "s", ""), ("magnitude", 0.9, 0.9, 0.7591, 0.0, 1, "s", "")])
    c = curve_caption(near, "F1", baseline=majority_metric("mrpc"))
    assert "Always answering the majority class scores 81.22" in c and "not clearly better" in c
    fig = accuracy_sparsity_figure(near, (0.8616, "t"), None, "F1", "mrpc", baseline=majority_metric("mrpc"))
    assert any(t.name.startswith("always the majority class 81.22") for t in fig.data)
    far = _points([("kasp", 0.9, 0.9, 0.865, 0.0, 1, "s", "")])
    fig = accuracy_sparsity_figure(far, (0.8956, "t"), None, "accuracy", "sst2", baseline=majority_metric("sst2"))
    assert not any("majority" in (t.name or "") for t in fig.data) and fig.layout.yaxis.range[0] > 60
    assert "majority" not in curve_caption(far, "accuracy", baseline=majority_metric("sst2"))


def test_the_caption_says_when_no_method_has_learnt_the_task_at_that_sparsity():
    """STS-B at 90 % after 240 steps: every method near 0.12 Pearson against a 0.83 teacher; the caption
    says none has learnt the task there (floor 0 for a correlation). A student half-way or more to the
    teacher, or no teacher to compare with, gets no such sentence."""
    from kasp.ui.figures import curve_caption

    collapsed = _points([("kasp", 0.9, 0.9, 0.1142, 0.0, 1, "s", ""), ("magnitude", 0.9, 0.9, 0.1290, 0.0, 1, "s", ""),
                         ("small-dense", 0.9, 0.9, 0.1149, 0.0, 1, "s", "")])
    c = curve_caption(collapsed, "Pearson correlation", teacher=0.8292)
    assert "a prediction unrelated to the gold answers scores (0.00)" in c and "teacher's 82.92" in c
    assert "none has learnt the task" in c
    assert "none has learnt" not in curve_caption(collapsed, "Pearson correlation")  # no teacher: nothing to say
    one_learnt = _points([("kasp", 0.9, 0.9, 0.45, 0.0, 1, "s", ""), ("magnitude", 0.9, 0.9, 0.12, 0.0, 1, "s", "")])
    assert "none has learnt" not in curve_caption(one_learnt, "Pearson correlation", teacher=0.8292)
    # with a majority-class floor the half-way mark is measured from it (MRPC: floor 81.22, teacher 86.16)
    mrpc = _points([("kasp", 0.9, 0.9, 0.8077, 0.007, 2, "s", ""), ("magnitude", 0.9, 0.9, 0.7796, 0.02, 2, "s", "")])
    c = curve_caption(mrpc, "F1", baseline=0.8122, teacher=0.8616)
    assert "always answering the majority class scores (81.22)" in c and "none has learnt" in c
    assert "not clearly better" not in c  # one floor sentence, not two
    above = _points([("kasp", 0.9, 0.9, 0.845, 0.0, 1, "s", ""), ("magnitude", 0.9, 0.9, 0.80, 0.0, 1, "s", "")])
    assert "none has learnt" not in curve_caption(above, "F1", baseline=0.8122, teacher=0.8616)
    alone = _points([("kasp", 0.9, 0.9, 0.5271, 0.0, 1, "s", "")])  # RTE, KASP only so far
    assert "KASP is nearer to what always answering" in curve_caption(alone, baseline=0.5271, teacher=0.5884)


def test_a_collapsed_caption_goes_on_at_the_highest_sparsity_where_the_task_was_learnt():
    """STS-B's shipped shape: nothing learnt at 90 %, so the caption also compares the methods at 70 %
    (KASP half-way to the teacher there), and not at 50 %; with every sparsity collapsed it adds nothing."""
    from kasp.ui.figures import curve_caption

    stsb = _points([("kasp", 0.9, 0.9, 0.1092, 0.005, 2, "s", ""), ("magnitude", 0.9, 0.9, 0.1241, 0.005, 2, "s", ""),
                    ("kasp", 0.7, 0.7, 0.6298, 0.0, 1, "s", ""), ("magnitude", 0.7, 0.7, 0.7261, 0.0, 1, "s", ""),
                    ("kasp", 0.5, 0.5, 0.8264, 0.0, 1, "s", ""), ("small-dense", 0.5, 0.5, 0.7331, 0.0, 1, "s", "")])
    c = curve_caption(stsb, "Pearson correlation", teacher=0.8292)
    assert "none has learnt the task" in c
    assert "At 70 % sparsity, dev Pearson correlation: KASP 62.98, magnitude baseline 72.61." in c
    assert "KASP trails the magnitude baseline by 9.63 points on one seed" in c and "At 50 %" not in c
    low = _points([("kasp", 0.9, 0.9, 0.11, 0.0, 1, "s", ""), ("kasp", 0.7, 0.7, 0.12, 0.0, 1, "s", "")])
    c = curve_caption(low, "Pearson correlation", teacher=0.8292)
    assert "none has learnt" not in c and "it has not learnt the task" in c and "At 70 %" not in c


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
def test_overview_draws_the_shipped_sweep_without_runs(task, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import kasp.experiments.results
    from kasp.data.glue import get_task

    shipped = tmp_path / "sweeps" / f"{task}.json"
    shipped.parent.mkdir()
    shipped.write_text(json.dumps(synthetic_sweep(task, get_task(task).main_metric)))
    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / "sweeps" / f"{t}.json")
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty-store"))
    at = AppTest.from_file(str(ROOT / "pages" / "overview.py"), default_timeout=60)
    at.session_state["task"] = task
    at.session_state["model"] = "default"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    curve = json.loads(at.get("plotly_chart")[1].proto.spec)
    names = [tr["name"] for tr in curve["data"]]
    for m in ("KASP", "magnitude baseline", "small dense"):
        assert f"{m} (precomputed sweep)" in names
    assert "dense teacher 82.00 (teacher of the shipped sweep, t)" in names
    assert any(c.value.startswith("At 90 % sparsity") and "KASP 76.20" in c.value for c in at.caption)


@pytest.mark.slow
def test_pages_show_a_broken_shipped_sweep_as_an_error(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import kasp.experiments.results

    (tmp_path / "sst2.json").write_text('{"format": "kasp-sweep", "schema_version": 1}')
    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / f"{t}.json")
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty-store"))
    at = AppTest.from_file(str(ROOT / "pages" / "overview.py"), default_timeout=60)
    at.session_state["task"] = "sst2"
    at.run()
    assert not at.exception
    assert any("broken KASP sweep results file" in e.value for e in at.error)


def test_reference_teacher_is_the_one_of_the_points_drawn(tmp_path, monkeypatch):
    """A short live teacher (48 %) in the store does not become the reference line of the shipped
    precomputed runs (made with the shipped 89.56 % teacher); with only live runs drawn, it does."""
    import pandas as pd

    import kasp.experiments.results
    from kasp.ui.curves import curve_data

    monkeypatch.setattr(kasp.experiments.results, "shipped_sweep_path", lambda t: tmp_path / "none" / f"{t}.json")
    rows = pd.DataFrame({"method": ["dense teacher", "dense teacher", "kasp", "kasp"],
                         "sparsity": [0.0, 0.0, 0.9, 0.7], "metric": [0.4844, 0.8956, 0.8647, 0.80],
                         "source": ["live run", "precomputed run", "precomputed run", "live run"],
                         "label": ["tiny-teacher", "precomputed/teacher-sst2", "precomputed/kasp", "live-kasp"]})
    assert curve_data("sst2", runs=rows).teacher == (0.8956, "precomputed run precomputed/teacher-sst2")
    live_only = rows[rows["source"] == "live run"]
    assert curve_data("sst2", runs=live_only).teacher == (0.4844, "live run tiny-teacher")


@pytest.mark.slow
def test_the_overview_page_says_the_cola_zero_is_glues_convention(tmp_path, monkeypatch):
    """CoLA's step-budget sweep (kept in bench/sweeps-steps) answered one class at 90 % on both seeds."""
    from tests.helpers import open_page, step_budget_sweeps

    step_budget_sweeps(monkeypatch, "cola")
    at = open_page("overview.py", tmp_path / "empty-store", monkeypatch, task="cola")
    captions = " ".join(c.value for c in at.caption)
    assert "0.00 on all 2 seeds, by GLUE's convention: the student answered one class for every dev example" in captions
