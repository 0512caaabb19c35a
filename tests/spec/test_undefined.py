"""Undefined is not zero (issue 26, item 3): metrics that are undefined say so and why, everywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from kasp.ground.errors import KaspError
from kasp.spec.metrics import format_metric_value, format_metrics, glue_metrics, metric_note, metric_value


def test_constant_predictions_give_undefined_correlations_with_the_reason():
    m = glue_metrics("correlation", [2.0, 2.0, 2.0], [1.0, 3.0, 5.0])
    assert m["pearson"] is None and m["spearman"] is None
    assert m["undefined"] == {"pearson": "constant predictions", "spearman": "constant predictions"}
    assert format_metric_value(m, "pearson") == "undefined (constant predictions)"
    g = glue_metrics("correlation", [1.0, 2.0, 3.0], [-1.0, -1.0, -1.0])
    assert g["pearson"] is None and g["undefined"]["pearson"] == "constant gold scores"
    assert json.loads(json.dumps(m))["pearson"] is None  # --json: null plus the reason


def test_f1_without_a_positive_example_is_undefined_beside_its_accuracy():
    m = glue_metrics("f1_accuracy", [0, 0, 0], [0, 0, 0])
    assert m["f1"] is None and m["accuracy"] == 1.0
    assert m["undefined"] == {"f1": "no positive example in the gold labels"}
    assert format_metrics(m) == "f1 undefined (no positive example in the gold labels), accuracy 100.00"
    # with a positive example F1 is defined (0 when the model never finds it)
    assert glue_metrics("f1_accuracy", [0, 0], [1, 0]) == {"f1": 0.0, "accuracy": 0.5}


def test_matthews_of_a_constant_predictor_follows_glue_and_says_so():
    m = glue_metrics("mcc", [1, 1, 1, 1], [1, 0, 1, 0])
    assert m["mcc"] == 0.0
    assert m["convention"] == {"mcc": "constant predictions: GLUE's convention"}
    assert format_metric_value(m, "mcc") == "0.00 (constant predictions: GLUE's convention)"
    assert "convention" not in glue_metrics("mcc", [1, 0, 1, 1], [1, 0, 0, 1])


def test_non_finite_predictions_or_gold_are_refused():
    with pytest.raises(ValueError, match="not finite"):
        glue_metrics("correlation", [1.0, 2.0], [1.0, float("nan")])


def test_an_old_report_with_nan_reads_as_undefined_never_zero():
    assert metric_value({"pearson": float("nan")}, "pearson") is None
    assert metric_note({"pearson": None}, "pearson") == "undefined"
    assert metric_value({"accuracy": 0.0}, "accuracy") == 0.0


def _write_stsb(tmp_path: Path, scores: list[str]) -> Path:
    p = tmp_path / "stsb.tsv"
    rows = "".join(f"a sentence {i}\tanother one {i}\t{s}\n" for i, s in enumerate(scores))
    p.write_text("sentence1\tsentence2\tscore\n" + rows)
    return p


def test_gold_scores_that_are_all_the_same_or_not_finite_are_refused(tmp_path):
    from kasp.data.glue import get_task, read_user_tsv

    with pytest.raises(KaspError, match="every gold score .* is '-1'.*undefined"):
        read_user_tsv(get_task("stsb"), _write_stsb(tmp_path, ["-1", "-1", "-1"]))
    with pytest.raises(KaspError, match="line 3: label 'inf' .* not finite"):
        read_user_tsv(get_task("stsb"), _write_stsb(tmp_path, ["1.0", "inf", "2.0"]))


def _store_with_report(tmp_path: Path, task: str, metrics: dict) -> Path:
    from kasp.ground.runs import RunDir

    store = tmp_path / "runs"
    run = RunDir.create(store / f"20261201-000000-{task}-kasp-s90")
    run.path.joinpath("config.json").write_text(json.dumps({"recipe": {"task": task, "method": "kasp", "sparsity": 0.9,
                                                                        "kind": "prune"}}))
    run.path.joinpath("report.json").write_text(json.dumps({"task": task, "main_metric": "pearson", "metrics": metrics,
                                                             "wall_seconds": 60}))
    run.path.joinpath("status.json").write_text(json.dumps({"state": "done", "step": 10, "total_steps": 10}))
    return store


def test_kasp_runs_prints_the_reason_and_json_gives_null(tmp_path, capsys):
    from kasp.cli import main

    m = glue_metrics("correlation", [2.0, 2.0, 2.0], [1.0, 3.0, 5.0]) | {"n": 3}
    store = _store_with_report(tmp_path, "stsb", m)
    assert main(["runs", "--runs-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert "undefined (constant predictions)" in out and " 0.00" not in out
    assert main(["runs", "--runs-dir", str(store), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["metric"] is None and row["metric_note"] == "constant predictions"


def test_results_table_and_chart_show_a_gap_with_a_note(tmp_path):
    from kasp.ui.figures import accuracy_sparsity_figure, curve_notes
    from kasp.ui.tables import results_table, undefined_runs_note

    m = glue_metrics("correlation", [2.0, 2.0, 2.0], [1.0, 3.0, 5.0]) | {"n": 3}
    store = _store_with_report(tmp_path, "stsb", m)
    table = results_table("stsb", store, precomputed=tmp_path / "none.json")
    assert math.isnan(table["dev metric"].iloc[0]) and table["metric note"].iloc[0] == "constant predictions"
    assert "undefined: 20261201-000000-stsb-kasp-s90 (constant predictions)" in undefined_runs_note(table)
    points = pd.DataFrame({"method": ["kasp", "kasp"], "sparsity": [0.5, 0.9], "metric": [0.4, float("nan")],
                           "spread": [0.0, 0.0], "n": [1, 1], "source": ["live run"] * 2, "label": ["a", "b"],
                           "note": [None, "constant predictions"]})
    fig = accuracy_sparsity_figure(points, task="stsb")
    ys = [y for tr in fig.data for y in (tr.y if tr.y is not None else [])]
    assert 0.0 not in ys and len([y for y in ys if y == y]) >= 1  # the undefined point is not drawn at 0
    assert curve_notes(points) == ["KASP at 90 % (live run): not drawn, undefined (constant predictions)"]


def test_shipped_cola_zero_is_labelled_glue_convention():
    """CoLA's step-budget sweep (400 steps; kept in bench/sweeps-steps since its grid in epochs shipped) answered one
    class at 90 and 95 %: each such 0.00 is labelled GLUE's convention, on the point and in the chart's notes."""
    from kasp.ui.figures import curve_notes
    from kasp.experiments.results import load_results, sweep_points
    from tests.helpers import ROOT

    pts = sweep_points(load_results(ROOT / "bench" / "sweeps-steps" / "cola.json"))
    zero = pts[(pts["metric"] == 0.0) & (pts["spread"] == 0.0)]
    assert len(zero) >= 1
    assert all("constant predictions: GLUE's convention" in n for n in zero["note"])
    assert any("0.00 on all 2 seeds, by GLUE's convention: the student answered one class" in line for line in curve_notes(pts))


def test_cka_of_a_constant_representation_is_undefined_not_zero():
    import torch

    from kasp.analysis.retention import Retention, linear_cka

    x = torch.randn(8, 4)
    assert math.isnan(linear_cka(x, torch.ones(8, 3)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    r = Retention(task="sst2", teacher="t", student="s", samples=8, score_mse=[[0.0]], similarity=[[1.0]],
                  cka=[0.9, float("nan"), 0.5], agreement=None, kl=None, prediction_mse=0.1)
    d = r.to_dict()
    assert d["cka"] == [0.9, None, 0.5] and d["mean_cka"] == 0.5 and "output(s) [1]" in d["undefined"]["cka"]
    r.cka = [0.9, float("nan")]
    assert r.to_dict()["mean_cka"] is None


def test_kasp_evaluate_prints_the_reason_and_json_gives_null(tmp_path, monkeypatch, capsys):
    """A regression model whose every prediction is the same: Pearson and Spearman are undefined."""
    import torch

    import kasp.training.evaluate
    from tests.helpers import make_tiny_checkpoint
    from kasp.cli import main

    ckpt = make_tiny_checkpoint(tmp_path / "stsb", num_labels=1)
    monkeypatch.setattr(kasp.training.evaluate, "predict", lambda model, data, *a, **k: torch.full((len(data), 1), 2.5))
    assert main(["evaluate", str(ckpt), "--task", "stsb", "--max-eval-samples", "8"]) == 0
    out = capsys.readouterr().out
    assert "pearson undefined (constant predictions), spearman undefined (constant predictions)" in out
    assert "0.00" not in out
    assert main(["evaluate", str(ckpt), "--task", "stsb", "--max-eval-samples", "8", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["metrics"]
    assert got["pearson"] is None and got["undefined"]["pearson"] == "constant predictions" and got["n"] == 8


def test_undefined_evaluation_points_are_named_as_gaps_in_the_curve():
    from kasp.ui.curves import eval_gaps_note, progress_frames

    undefined = glue_metrics("correlation", [1.0, 1.0], [0.0, 2.0]) | {"n": 2}
    records = [{"type": "eval", "step": 100, "metrics": undefined},
               {"type": "eval", "step": 200, "metrics": {"pearson": 0.5, "spearman": 0.4, "n": 2}}]
    _, evals = progress_frames(records)
    assert math.isnan(evals["pearson"].iloc[0]) and evals["pearson"].iloc[1] == 0.5 and "undefined" not in evals
    assert eval_gaps_note(records, "stsb") == ("dev Pearson correlation undefined at step(s) 100 (constant predictions): "
                                               "gaps in the curve")
    cola = [{"type": "eval", "step": 50, "metrics": glue_metrics("mcc", [1, 1], [0, 1]) | {"n": 2}}]
    assert eval_gaps_note(cola, "cola") == "dev Matthews correlation 0.00 at step(s) 50 is constant predictions: GLUE's convention"


def test_a_sweep_point_undefined_on_every_seed_is_a_gap_and_no_caption_number():
    from kasp.ui.figures import accuracy_sparsity_figure, curve_caption, curve_notes
    from kasp.experiments.results import sweep_points

    undefined = glue_metrics("correlation", [1.0, 1.0], [0.0, 2.0]) | {"n": 2}
    runs = [{"method": m, "sparsity": 0.9, "measured_sparsity": 0.9, "seed": s, "metric": None, "metrics": undefined,
             "wall_seconds": 60} for m in ("kasp", "magnitude") for s in (42, 43)]
    runs.append({"method": "kasp", "sparsity": 0.5, "measured_sparsity": 0.5, "seed": 42, "metric": 0.6,
                 "metrics": {"pearson": 0.6, "spearman": 0.5, "n": 2}, "wall_seconds": 60})
    pts = sweep_points({"task": "stsb", "main_metric": "pearson", "runs": runs})
    at90 = pts[pts["nominal"] == 0.9]
    assert at90["metric"].isna().all() and (at90["note"] == "constant predictions (2 of 2 seeds)").all()
    fig = accuracy_sparsity_figure(pts, task="stsb")
    assert [y for tr in fig.data for y in tr.y] == [60.0]  # the undefined points are not drawn
    assert "nan" not in curve_caption(pts, "Pearson correlation")
    assert "KASP at 90 % (precomputed sweep): not drawn, undefined (constant predictions (2 of 2 seeds))" in curve_notes(pts)


def test_kasp_runs_lists_an_old_reports_nan_as_undefined_once(tmp_path, capsys):
    """An old report.json holding NaN (no recorded reason): "undefined", not "undefined (undefined)" nor a number."""
    from kasp.cli import main

    store = _store_with_report(tmp_path, "stsb", {"pearson": float("nan"), "spearman": float("nan"), "n": 3})
    assert main(["runs", "--runs-dir", str(store)]) == 0
    out = capsys.readouterr().out
    assert " undefined " in out + " " and "undefined (undefined)" not in out and "nan" not in out.lower()


def test_kasp_attention_prints_an_undefined_layer_cka_as_undef_never_nan(monkeypatch, capsys):
    from kasp.analysis import retention
    from kasp.cli import main
    from kasp.analysis.retention import Retention

    r = Retention(task="stsb", teacher="t", student="s", samples=8, score_mse=[[0.0], [0.0]],
                  similarity=[[1.0], [1.0]], cka=[0.9, float("nan"), 0.5], agreement=None, kl=None, prediction_mse=0.1)
    monkeypatch.setattr(retention, "compare", lambda *a, **k: r)
    assert main(["attention", "t", "s", "--task", "stsb"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "    0  undef   1.00" in out and "CKA is undefined where" in out


def test_one_non_finite_check():
    """kasp.ground.finite: the count of NaN/inf entries of any tensor (float8 widened, integers none), its mask, and the
    check of a Python number (an int beyond the float range is not finite)."""
    import torch

    from kasp.ground.finite import is_finite_number, non_finite_count, non_finite_mask

    t = torch.tensor([[1.0, float("nan")], [float("inf"), -float("inf")]])
    assert non_finite_count(t) == 3 and non_finite_mask(t).tolist() == [[False, True], [True, True]]
    assert non_finite_count(torch.ones(3)) == 0 and non_finite_count(torch.tensor([1, 2])) == 0
    assert non_finite_count(torch.tensor([1e38, 1e38], dtype=torch.float32).repeat(10)) == 0  # sum overflows float32 only
    assert non_finite_count(t.to(torch.bfloat16)) == 3
    if hasattr(torch, "float8_e4m3fn"):
        assert non_finite_count(torch.tensor([1.0, float("nan")]).to(torch.float8_e4m3fn)) == 1
    assert [is_finite_number(v) for v in (1, 2.5, float("nan"), float("inf"), 10**400, True, "1", None)] == \
        [True, True, False, False, False, False, False, False]
