"""Captions that cannot contradict themselves or the chart (issue 25, item 6), and the one visual language.

Every sentence of :func:`kasp.ui.figures.curve_caption` is parsed back and checked against the numbers it
was made from: on every shipped sweep (each task, each sparsity with a KASP result, each method pair)
and on random curves (seeds, spreads, floors and teachers drawn at random).
"""

from __future__ import annotations

import random
import re

import pandas as pd
import pytest

from kasp.ui import style
from kasp.ui.figures import accuracy_sparsity_figure, caption_facts, curve_caption, retention_scatter, training_curves
from kasp.ui.tables import precomputed_retention
from kasp.ui.curves import curve_data
from kasp.ui.devset import majority_metric
from kasp.spec.tasks import get_task
from kasp.ui.engine import metric_label
from kasp.experiments.results import load_shipped

from tests.helpers import ROOT

SHIPPED = ["sst2", "mrpc", "rte", "stsb", "cola"]
NAMES = {"magnitude baseline": "magnitude", "small dense model": "small-dense"}
LEAD = re.compile(r"KASP leads the (magnitude baseline|small dense model) by (\d+\.\d\d) points, more than the seed "
                  r"spread \(±(\d+\.\d\d)\)")
TRAIL = re.compile(r"[Tt]he (magnitude baseline|small dense model) leads KASP by (\d+\.\d\d) points, more than the "
                   r"seed spread \(±(\d+\.\d\d)\)")
TIE = re.compile(r"KASP and the (magnitude baseline|small dense model) differ by (\d+\.\d\d) points, no more than the "
                 r"seed spread \(±(\d+\.\d\d)\)")
HEAD = re.compile(r"At (\d+(?:\.\d+)?) % sparsity, dev [^:]+: KASP (-?\d+\.\d\d)((?:, [a-z ]+ -?\d+\.\d\d)*)\.")


def _segments(caption: str) -> list[str]:
    """The caption cut at each "At N % sparsity" (a collapsed caption goes on at a lower sparsity)."""
    starts = [m.start() for m in re.finditer(r"At \d+(?:\.\d+)? % sparsity", caption)]
    return [caption[a:b] for a, b in zip(starts, starts[1:] + [len(caption)])]


def check_caption(caption: str, points, baseline, teacher) -> None:
    """Every claim of ``caption`` agrees with its own printed numbers and with :func:`caption_facts`."""
    segs = _segments(caption)
    assert segs or caption.startswith("No KASP result"), caption
    for seg in segs:
        head = HEAD.match(seg)
        assert head, seg
        at = float(head.group(1)) / 100
        values = {"kasp": float(head.group(2))}
        for part in filter(None, head.group(3).split(", ")):
            name, v = part.rsplit(" ", 1)
            values[{"magnitude baseline": "magnitude", "small dense": "small-dense"}[name]] = float(v)
        facts = caption_facts(points, at, baseline, teacher)
        assert values == facts["values"], (seg, facts)
        assert "differ by 0.00" not in seg and "(±0.00): no winner" not in seg, seg
        unlearnt = "none has learnt" in seg or "it has not learnt" in seg or "not clearly better" in seg
        assert unlearnt == (not facts["learnt"]), seg
        if unlearnt:  # no claim judged where the students did not learn the task
            assert "as the paper claims" not in seg and "does not hold" not in seg, seg
            assert not LEAD.search(seg) and not TRAIL.search(seg) and not TIE.search(seg), seg
        for rx, sign in ((LEAD, 1), (TRAIL, -1), (TIE, 0)):
            for m in rx.finditer(seg):
                other, d, n = NAMES[m.group(1)], float(m.group(2)), float(m.group(3))
                printed = round(values["kasp"] - values[other], 2)
                assert d == pytest.approx(abs(printed), abs=1e-9), seg
                if sign:
                    assert d > n and printed * sign > 0, seg
                else:
                    assert d <= n, seg
        for other, claim in (("magnitude", "distilling while pruning beats pruning the fine-tuned model"),
                             ("small-dense", "a sparse model beats a small dense one with as many non-zero weights")):
            holds = f"{claim}, as the paper claims" in seg
            fails = f"the paper's claim that {claim} does not hold" in seg
            assert not (holds and fails), seg
            state = facts["claims"].get(other, "open")
            assert holds == (state == "holds") and fails == (state == "fails"), (seg, facts)
            if holds:  # said to hold only on a lead larger than the seed spread, on two seeds or more
                assert facts["compare"][other]["outcome"] == "lead" and facts["compare"][other]["seeds"] >= 2


def _kasp_sparsities(points) -> list[float]:
    g = points[points["method"] == "kasp"]
    return sorted({round(float(x), 4) for x in g["nominal"].fillna(g["sparsity"])})


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_captions_agree_with_their_numbers(task, monkeypatch, tmp_path):
    """Every shipped task, every sparsity with a KASP result, every method pair there."""
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("kasp.ui.tables.PRECOMPUTED", tmp_path / "none.json")
    points, teacher, _, error = curve_data(task)
    assert error is None and len(points)
    base, t = majority_metric(task), teacher[0] if teacher else None
    for at in _kasp_sparsities(points):
        check_caption(curve_caption(points, metric_label(task), at=at, baseline=base, teacher=t), points, base, t)


def test_a_teacher_at_chance_leaves_no_sparsity_learnt(monkeypatch, tmp_path):
    """RTE's grid in epochs: KASP at 50 % is a point above the majority class and above halfway to the teacher, so
    by the 1-point rule alone its one seed "learnt" the task and the caption compared the methods there. Its teacher
    (54.51 on 277 pairs) is itself within chance of the floor: with teacher_at_chance no sparsity is learnt, no claim
    is judged, and the caption says why."""
    from kasp.ui.lesson import teacher_at_chance

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("kasp.ui.tables.PRECOMPUTED", tmp_path / "none.json")
    points, teacher, _, _ = curve_data("rte")
    base, t = majority_metric("rte"), teacher[0]
    chance = teacher_at_chance("rte", t)
    if not chance:
        pytest.skip("RTE's shipped teacher is clearly above the floor: nothing to test on the shipped data")
    assert caption_facts(points, 0.5, base, t)["learnt"]  # the 1-point rule alone
    for at in (0.5, 0.9, 0.95):
        f = caption_facts(points, at, base, t, chance)
        assert not f["learnt"] and set(f["claims"].values()) <= {"open"}
    c = curve_caption(points, metric_label("rte"), baseline=base, teacher=t, teacher_at_chance=chance)
    assert "is not clearly better than always answering the majority class (52.71)" in c
    assert "leads" not in c and "as the paper claims" not in c and "At 50 %" not in c
    assert not teacher_at_chance("sst2", load_shipped("sst2")["teacher"]["metric"])


def test_the_captions_the_issue_quoted_no_longer_contradict_themselves(monkeypatch, tmp_path):
    """MRPC said "as the paper claims" and then "none has learnt the task"; CoLA "differ by 0.00, within the
    seed spread ±0.00". The sweeps of that time are the step-budget ones kept in bench/sweeps-steps (their grids in
    epochs replaced them in assets/sweeps; MRPC's learnt the task at 90 %: there the claim stands alone)."""
    from tests.helpers import step_budget_sweeps

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("kasp.ui.tables.PRECOMPUTED", tmp_path / "none.json")
    points, teacher, _, _ = curve_data("mrpc")
    now = _segments(curve_caption(points, metric_label("mrpc"), baseline=majority_metric("mrpc"), teacher=teacher[0]))[0]
    assert "as the paper claims" in now and "none has learnt the task" not in now
    step_budget_sweeps(monkeypatch, "mrpc", "cola")
    for task in ("mrpc", "cola"):
        points, teacher, _, _ = curve_data(task)
        c = curve_caption(points, metric_label(task), baseline=majority_metric(task), teacher=teacher[0])
        first = _segments(c)[0]
        assert "none has learnt the task" in first and "neither confirm nor refute" in first
        assert "as the paper claims" not in first and "differ by 0.00" not in c


def _random_points(rng: random.Random) -> pd.DataFrame:
    rows = []
    for at in (0.5, 0.9):
        for method in ("kasp", "magnitude", "small-dense"):
            if rng.random() < 0.2:
                continue
            n = rng.choice([1, 2, 3])
            v = rng.choice([0.0, rng.uniform(0, 1)])
            spread = 0.0 if n == 1 or rng.random() < 0.3 else rng.choice([0.0, rng.uniform(0, 0.05)])
            if rng.random() < 0.2 and rows:  # ties on the printed numbers
                v = rows[-1]["metric"]
            rows.append({"method": method, "nominal": at, "sparsity": at, "metric": v, "spread": spread, "n": n,
                         "source": "precomputed sweep", "label": "x", "note": None})
    return pd.DataFrame(rows)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(300))
def test_random_captions_agree_with_their_numbers(seed):
    rng = random.Random(seed)
    points = _random_points(rng)
    base = rng.choice([None, rng.uniform(0, 0.7)])
    teacher = rng.choice([None, rng.uniform(0.3, 1.0)])
    for at in (0.5, 0.9):
        check_caption(curve_caption(points, "accuracy", at=at, baseline=base, teacher=teacher), points, base, teacher)


# --- one visual language -------------------------------------------------------------------------
def test_one_name_colour_and_marker_per_method_and_source_on_every_figure(monkeypatch, tmp_path):
    """The curve (Overview, Results) and the retention scatter (Attention) name, colour and mark each
    method and source from kasp.ui.style; green is the small dense model only."""
    monkeypatch.setattr("kasp.ui.tables.PRECOMPUTED", tmp_path / "none.json")
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))
    points, teacher, published, _ = curve_data("mrpc")
    curve = accuracy_sparsity_figure(points, teacher, published, metric_label("mrpc"), "mrpc")
    ret = retention_scatter(precomputed_retention("mrpc"), "CKA")
    for fig in (curve, ret):
        for tr in fig.data:
            for method, label in style.METHOD_LABELS.items():
                if tr.name and tr.name.startswith(label + " (") and method in style.METHOD_COLOURS:
                    assert tr.marker.color == style.METHOD_COLOURS[method], tr.name
                    source = "published" if method == "published" else tr.name[len(label) + 2:-1]
                    assert tr.marker.symbol == style.source_symbol(source), tr.name
    names = {tr.name for tr in ret.data}
    assert {"KASP (precomputed sweep)", "magnitude baseline (precomputed sweep)",
            "small dense (precomputed sweep)"} <= names
    assert style.METHOD_COLOURS["small-dense"] not in style.QUANTITY_COLOURS.values()
    assert len(set(style.METHOD_COLOURS[m] for m in ("kasp", "magnitude", "small-dense", "dense teacher"))) == 4


@pytest.mark.parametrize("task", SHIPPED)
def test_honest_axes(task, monkeypatch, tmp_path):
    """Correlations are "×100", never "%"; the metric axis starts where the data start; the sparsity axis
    shows the compression (×10 at 90 %, ×20 at 95 %); the curves over training give the metric its own
    panel (no metric drawn on the 0-100 sparsity axis)."""
    monkeypatch.setattr("kasp.ui.tables.PRECOMPUTED", tmp_path / "none.json")
    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))
    points, teacher, published, _ = curve_data(task)
    fig = accuracy_sparsity_figure(points, teacher, published, metric_label(task), task,
                                   baseline=majority_metric(task))
    title = fig.layout.yaxis.title.text
    assert ("×100" in title) == (task in ("cola", "stsb")) and ("%" in title) == (task not in ("cola", "stsb"))
    lo, hi = fig.layout.yaxis.range
    ys = points["metric"].dropna() * 100
    assert lo <= ys.min() and hi >= ys.max() and lo > ys.min() - (hi - lo) * 0.5
    ticks = {round(v, 4): t for v, t in zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext)}
    assert ticks[90] == "90 %<br>×10" and ticks[50] == "50 %<br>×2"
    drawn = {float(round(100 * s)) for s in pd.concat([points["sparsity"], published["sparsity"]]).dropna()}
    lo_x = fig.layout.xaxis.range[0]
    shown = {x for x in drawn if x >= lo_x} | ({0.0} if lo_x <= 0 else set())
    gap = 0.07 * (100 - lo_x)
    assert set(ticks) <= shown and 90 in ticks  # no tick without data; the lesson's 90 % always
    assert all(b - a >= gap - 1e-6 for a, b in zip(sorted(ticks), sorted(ticks)[1:]))  # labels never overlap
    assert all(min(abs(x - t) for t in ticks) < gap for x in shown)  # a point without its own tick is beside one
    comp = accuracy_sparsity_figure(points, teacher, published, metric_label(task), task, compression=True)
    ticks = {round(v, 6): t for v, t in zip(comp.layout.xaxis.tickvals, comp.layout.xaxis.ticktext)}
    assert comp.layout.xaxis.type == "log" and ticks[20.0] == "×20<br>95 %"
    kasp = next(t for t in comp.data if t.name == "KASP (precomputed sweep)")
    assert max(kasp.x) == pytest.approx(1 / (1 - points[points["method"] == "kasp"]["sparsity"].max()))
    run = load_shipped(task)["runs"][0]
    train = pd.DataFrame(run["progress"]["train"])
    evals = pd.DataFrame([{"step": e["step"], **{k: v for k, v in e["metrics"].items() if isinstance(v, float)}}
                          for e in run["progress"]["eval"]])
    tc = training_curves(train, evals, task)
    axes = {tr.yaxis for tr in tc.data}
    assert len(axes) == len(tc.data)  # each quantity on its own axis
    assert list(tc.layout.yaxis.range) == [0, 100]
    if len(tc.data) > 1:
        lo2, hi2 = tc.layout.yaxis2.range  # from the task's floor (majority class, or 0 for a correlation) to the best
        ys2 = evals[get_task(task).main_metric].dropna() * 100
        floor = majority_metric(task) if task not in ("cola", "stsb") else 0.0
        assert lo2 <= min(100 * (floor or 0), ys2.min()) and ys2.max() < hi2 <= 100
        assert ("×100" in tc.layout.yaxis2.title.text) == (task in ("cola", "stsb"))


@pytest.mark.slow
def test_presenter_mode_from_the_address(tmp_path, monkeypatch):
    """?present=1 switches presenter mode on (larger type, sidebar collapsed) and stays in the address."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path))
    root = ROOT
    at = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.session_state["present"] and at.toggle(key="_present_widget").value
    assert at.query_params.get("present") in ("1", ["1"])
    assert any(style.PRESENTER_CSS.strip()[:20] in (h.proto.body or "") for h in at.get("html"))
    plain = AppTest.from_file(str(root / "app.py"), default_timeout=60)
    plain.run()
    assert not plain.session_state["present"] and not any("font-size: 19px" in (h.proto.body or "")
                                                           for h in plain.get("html"))


def test_the_live_panel_draws_quantities_in_their_own_colours_never_a_methods():
    """Loss terms, sparsity, schedule and dev metric (Prune's live panel, Results' curves) take kasp.ui.style's
    quantity colours: green stays the small dense model's, blue KASP's."""
    from kasp.ui.figures import dev_metric_figure, live_sparsity_figure, loss_figure

    train = pd.DataFrame({"step": [1, 10, 20], "loss": [3.0, 2.0, 1.5], "attention": [1.0, 0.8, 0.6],
                          "hidden": [0.9, 0.7, 0.5], "prediction": [0.6, 0.5, 0.4], "sparsity": [0.0, 0.3, 0.5]})
    curve = pd.DataFrame({"step": [0, 10, 20], "sparsity": [0.0, 0.35, 0.5]})
    evals = pd.DataFrame({"step": [10, 20], "mcc": [0.1, 0.2]})
    method_colours = {style.METHOD_COLOURS[m] for m in ("kasp", "magnitude", "small-dense")}
    figs = [loss_figure(train, ["loss", "attention", "hidden", "prediction"]), live_sparsity_figure(curve, train),
            dev_metric_figure(evals, "cola")]
    colours = {tr.line.color for f in figs for tr in f.data}
    assert not colours & method_colours and None not in colours
    assert figs[2].data[0].line.color == style.QUANTITY_COLOURS["dev metric"]
    assert "×100" in figs[2].layout.yaxis.title.text and figs[2].layout.yaxis.range is None  # from the data


def test_a_teacher_runs_curves_show_its_loss_not_a_flat_sparsity():
    """A fine-tuning run prunes nothing: its first panel is the training loss (a sparsity line at 0 % says nothing)."""
    train = pd.DataFrame({"step": [10, 20, 30], "loss": [0.7, 0.5, 0.3], "sparsity": [0.0, 0.0, 0.0]})
    fig = training_curves(train, pd.DataFrame(), "sst2")
    assert [t.name for t in fig.data] == ["training loss"] and fig.layout.yaxis.type == "log"
    assert fig.layout.title.text == "Training loss over training"
    pruned = training_curves(train.assign(sparsity=[0.1, 0.5, 0.9]), pd.DataFrame(), "sst2")
    assert [t.name for t in pruned.data] == ["sparsity (%)"]
