"""The small-dense baseline, `kasp sweep` (plan, resume after a kill, results-file validation) and the
accuracy-against-sparsity figure and caption (issue 15). Tiny random BERTs only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from kasp.ground.errors import KaspError

ROOT = Path(__file__).resolve().parent.parent
MINILM = SimpleNamespace(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
LAYER = 4 * 384 * 384 + 2 * 384 * 1536  # encoder linear weights of one MiniLM layer


# --- small-dense -----------------------------------------------------------------------------------
@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97])
def test_size_for_sparsity_matches_the_nonzero_count(s):
    from kasp.core.small_dense import FFN_STEP, size_for_sparsity

    size = size_for_sparsity(MINILM, s)
    target = round((1 - s) * 6 * LAYER)
    assert size.target_nonzeros == target
    assert 6 % size.layers == 0  # the layer map needs k = L_T / L_S whole
    assert size.encoder_linear == size.layers * (4 * 384 ** 2 + 2 * 384 * size.ffn_width)
    assert size.equivalent_sparsity == pytest.approx(1 - size.encoder_linear / (6 * LAYER))
    smallest = 4 * 384 ** 2 + 2 * 384 * FFN_STEP  # one layer, narrowest FFN: no smaller student exists
    if target >= smallest:
        assert abs(size.encoder_linear - target) <= LAYER  # within one layer's granularity
        assert abs(size.encoder_linear - target) <= size.layers * 384 * FFN_STEP  # in fact within half an FFN step
    else:
        assert (size.layers, size.ffn_width) == (1, FFN_STEP)


def test_size_for_sparsity_known_shapes():
    from kasp.core.small_dense import size_for_sparsity

    # 50 %: three full layers exactly, the top layer of each block of two (layer map i*k + k - 1)
    s = size_for_sparsity(MINILM, 0.5)
    assert (s.layers, s.ffn_width, s.kept_layers, s.encoder_linear) == (3, 1536, (1, 3, 5), 3 * LAYER)
    # 90 %: 1,061,683 non-zeros -> one layer (the top one) with 614.4 FFN neurons -> 608
    s = size_for_sparsity(MINILM, 0.9)
    assert (s.layers, s.ffn_width, s.kept_layers) == (1, 608, (5,))
    with pytest.raises(ValueError, match="sparsity"):
        size_for_sparsity(MINILM, 1.0)


def test_shrunk_student_keeps_the_chosen_weights_and_reloads(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from conftest import make_tiny_checkpoint
    from kasp.models.modeling import count_parameters, load_classifier
    from kasp.core.small_dense import shrink_to, size_for_sparsity

    src = make_tiny_checkpoint(tmp_path / "m", layers=4, hidden=32, heads=4, num_labels=2, dropout=0.0)
    full = load_classifier(str(src)).eval()
    model = load_classifier(str(src)).eval()
    size = size_for_sparsity(model.config, 0.6)  # 40 % of 4 x 8,192 = 13,107 -> 2 layers of FFN 32 (12,288)
    assert (size.layers, size.ffn_width, size.kept_layers) == (2, 32, (1, 3))
    shrink_to(model, size)
    assert count_parameters(model)["encoder_linear"] == size.encoder_linear == 12288
    old, new = full.bert.encoder.layer, model.bert.encoder.layer
    assert torch.equal(new[0].attention.self.query.weight, old[1].attention.self.query.weight)
    assert torch.equal(new[1].attention.output.dense.weight, old[3].attention.output.dense.weight)
    # the kept FFN neurons are the 32 of 64 with the largest |W_in row| * |W_out column|
    fin, fout = old[3].intermediate.dense.weight, old[3].output.dense.weight
    top = torch.topk(fin.norm(dim=1) * fout.norm(dim=0), 32).indices.sort().values
    assert torch.equal(new[1].intermediate.dense.weight, fin[top])
    assert torch.equal(new[1].output.dense.weight, fout[:, top])
    model.save_pretrained(tmp_path / "small")
    back = AutoModelForSequenceClassification.from_pretrained(tmp_path / "small", use_safetensors=True).eval()
    assert (back.config.num_hidden_layers, back.config.intermediate_size) == (2, 32)
    x = torch.tensor([[101, 2023, 2003, 1037, 3231, 102]])
    assert torch.allclose(back(input_ids=x).logits, model(input_ids=x).logits, atol=1e-6)


def test_small_dense_run_is_a_run_like_any_other(tiny_store, tiny_pretrained, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from kasp.cli import main
    from kasp.analysis.retention import compare
    from kasp.ground.runs import RunDir
    from kasp.ui.tables import runs_frame

    out = tiny_store / "small-dense-run"
    rc = main(["prune", "--task", "sst2", "--method", "small-dense", "--sparsity", "0.6", "--model", str(tiny_pretrained),
               "--max-steps", "6", "--max-train-samples", "128", "--max-eval-samples", "32", "--eval-every", "3",
               "--runs-dir", str(tiny_store), "--out", str(out), "--no-progress"])
    assert rc == 0
    rep = RunDir(out).report()
    sd = rep["small_dense"]
    # tiny model: 2 layers of 4*32^2 + 2*32*64 = 8,192 -> 40 % of 16,384 = 6,554 -> 1 layer, FFN 32 (6,144)
    assert (sd["layers"], sd["ffn_width"], sd["encoder_linear"]) == (1, 32, 6144)
    assert rep["parameters"]["encoder_linear"] == 6144 and rep["target_sparsity"] == 0.6
    assert rep["sparsity"]["pruned_zeros"] == 0  # dense: no masks
    m = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint", use_safetensors=True)
    assert m.config.num_hidden_layers == 1
    capsys.readouterr()
    assert main(["inspect", str(out), "--json", "--no-sizes"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 1 and info["parameters"]["encoder_linear"] == 6144
    r = compare(str(tiny_store / "teacher"), str(out), "sst2", samples=8)  # depth 2 -> 1 through the layer map
    assert len(r.similarity) == 1 and 0.0 <= r.mean_similarity <= 1.0
    row = runs_frame(tiny_store).set_index("id").loc["small-dense-run"]
    assert row["measured_sparsity"] == pytest.approx(sd["equivalent_sparsity"])  # plotted where its size belongs


# --- the plan and the results file -----------------------------------------------------------------
def test_plan_of_the_issue_sweep():
    from kasp.experiments.results import plan_runs

    plan = plan_runs([0.5, 0.7, 0.9, 0.95], seeds=[42, 43], small_dense_sparsities=[0.5, 0.9],
                     multi_seed_sparsities=[0.9])
    keys = [r.key for r in plan]
    assert len(keys) == len(set(keys)) == 4 * 2 + 2 + 3
    assert [r.key for r in plan if r.seed == 43] == ["kasp@0.9/seed43", "magnitude@0.9/seed43", "small-dense@0.9/seed43"]
    from kasp.experiments.sweep import SweepOptions

    full = SweepOptions(task="sst2").plan(MINILM)  # the default sparsities on MiniLM-L6
    small = [r.sparsity for r in full if r.method == "small-dense"]
    assert small == [0.5, 0.7, 0.8, 0.9, 0.95]  # 97 % would be the same one-layer, 32-neuron student as 95 %
    assert len(full) == 6 * 2 + 5
    with pytest.raises(KaspError, match="outside"):
        plan_runs([90])
    with pytest.raises(KaspError, match="unknown sweep method"):
        plan_runs([0.9], methods=["kasp", "lottery"])


def test_an_augmented_sweep_runs_apart_from_the_plain_one(tmp_path):
    """``kasp sweep --augment N``: every run's recipe carries the augmentation, its runs and results file
    are named apart (the plain sweep's are never touched), and glue sentences with the magnitude
    baseline (no teacher to label them) are refused before anything trains."""
    from kasp.experiments.sweep import SweepOptions, check_settings

    plain = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,))
    aug = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,), augment=30)
    assert aug.results_path() == tmp_path / "sweeps" / "mrpc-augment-words30.json" != plain.results_path()
    assert aug.sweep_dir() != plain.sweep_dir()
    run = aug.plan()[0]
    cfg = aug.run_config(run, "teacher")
    assert (cfg.augment, cfg.augment_source) == (30, "words")
    assert plain.run_config(run, "teacher").augment == 0
    bad = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp", "magnitude"), sparsities=(0.9,),
                       augment=1, augment_source="glue")
    with pytest.raises(KaspError, match="invalid sweep settings.*glue"):
        check_settings(bad, bad.plan())


def test_recipe_overrides_make_a_trial_of_their_own(tmp_path):
    """``kasp sweep --set FIELD=VALUE``: the knob trials of issue 14 (two seeds each, KASP at 0.9)."""
    from kasp.experiments.sweep import SweepOptions, parse_overrides

    ov = parse_overrides(["temperature=2", "lr=2e-4", "hidden-weight=0.5"])
    assert ov == (("temperature", 2), ("lr", 2e-4), ("hidden_weight", 0.5))
    opt = SweepOptions(task="sst2", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,), seeds=(42, 43),
                       overrides=ov)
    assert opt.results_path().name == "sst2-temperature2-lr0.0002-hidden_weight0.5.json"
    cfgs = [opt.run_config(r, "teacher") for r in opt.plan()]
    assert [(c.seed, c.temperature, c.lr, c.hidden_weight) for c in cfgs] == [(42, 2, 2e-4, 0.5), (43, 2, 2e-4, 0.5)]
    # two trials with their own results files (e.g. other step budgets) never share run folders
    a = SweepOptions(task="sst2", runs_dir=str(tmp_path), results=str(tmp_path / "class-steps300.json"))
    b = SweepOptions(task="sst2", runs_dir=str(tmp_path), results=str(tmp_path / "class-steps500.json"))
    assert a.sweep_dir() != b.sweep_dir() and a.sweep_dir().parent == tmp_path / "sweeps"
    for bad, msg in ((["tau"], "write FIELD=VALUE"), (["tau=2"], "not a recipe field"),
                     (["max_steps=10"], "sets max_steps itself")):
        with pytest.raises(KaspError, match=msg):
            parse_overrides(bad)


def _valid_results() -> dict:
    return {"format": "kasp-sweep", "schema_version": 1, "task": "sst2", "model": "default", "main_metric": "accuracy",
            "teacher": {"run_id": "t", "metric": 0.9}, "runs": [
                {"key": "kasp@0.9/seed42", "method": "kasp", "sparsity": 0.9, "seed": 42, "metric": 0.86,
                 "metrics": {"accuracy": 0.86, "n": 872}, "measured_sparsity": 0.9, "recipe": {}, "wall_seconds": 800.0,
                 "teacher_id": "t"}]}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "is not valid JSON"),
    (lambda d: {"runs": []}, "is not a KASP sweep results file"),
    (lambda d: [1, 2], "is not a KASP sweep results file"),
    (lambda d: {**d, "schema_version": 7}, "newer than this KASP reads"),
    (lambda d: {**d, "schema_version": 0}, "broken KASP sweep results file: at schema_version"),
    (lambda d: {k: v for k, v in d.items() if k != "teacher"}, "'teacher' is a required property"),
    (lambda d: {**d, "runs": [{**d["runs"][0], "metric": "86 %"}]}, "at runs/0/metric"),
    (lambda d: {**d, "runs": [{**d["runs"][0], "method": "lottery"}]}, "at runs/0/method"),
])
def test_bad_results_files_get_a_clear_message(tmp_path, mutate, message):
    from kasp.experiments.results import load_results

    p = tmp_path / "sst2.json"
    bad = mutate(_valid_results())
    p.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(KaspError, match=message) as e:
        load_results(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    assert load_results(_write(tmp_path / "ok.json", _valid_results()))["runs"][0]["metric"] == 0.86


def _write(p: Path, obj) -> Path:
    p.write_text(json.dumps(obj))
    return p


def test_sweep_refuses_a_broken_results_file_and_leaves_it(tmp_path, capsys):
    from kasp.cli import main

    p = tmp_path / "sst2.json"
    p.write_text('{"format": "kasp-sweep", "schema_version": 1, "runs": "oops"')
    before = p.read_bytes()
    assert main(["sweep", "--task", "sst2", "--results", str(p), "--runs-dir", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "is not valid JSON" in err and "Traceback" not in err
    assert p.read_bytes() == before


# --- resume after a kill ---------------------------------------------------------------------------
def _sweep_cmd(tiny_store: Path, tiny_pretrained: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "kasp", "sweep", "--task", "sst2", "--model", str(tiny_pretrained),
            "--teacher", str(tiny_store / "teacher"), "--runs-dir", str(results.parent / "store"),
            "--results", str(results), "--sparsities", "0.8", "--max-steps", "12", "--max-train-samples", "128",
            "--max-eval-samples", "32", "--retention-samples", "8"]


def _entries(results: Path) -> dict[str, dict]:
    try:
        return {e["key"]: e for e in json.loads(results.read_text())["runs"]}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_sweep_killed_mid_run_resumes_without_redoing_finished_runs(tiny_store, tiny_pretrained, tmp_path):
    """SIGKILL the sweep while its second run trains; the restart redoes only that run."""
    results = tmp_path / "sweep" / "sst2.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_sweep_cmd(tiny_store, tiny_pretrained, results), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    sweep_dir = results.parent / "store" / "sweeps" / "sst2"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait for the first recorded run, then for the second run's progress log
            first = _entries(results)
            if len(first) >= 1 and any((d / "progress.jsonl").is_file() for d in sweep_dir.iterdir()
                                       if d.name != next(iter(first.values()))["run_id"]):
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it could be killed:\n{proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("the sweep recorded no run in 240 s")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = _entries(results)
    assert 1 <= len(killed) < 3, "the kill should land while the second run trains"
    validated = __import__("kasp.experiments.results", fromlist=["load_results"]).load_results(results)  # never half-written
    assert len(validated["runs"]) == len(killed)

    second = subprocess.run(_sweep_cmd(tiny_store, tiny_pretrained, results), env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    final = _entries(results)
    assert sorted(final) == sorted(["kasp@0.8/seed42", "magnitude@0.8/seed42", "small-dense@0.8/seed42"])
    for key, e in killed.items():  # finished before the kill: kept as they were, not run again
        assert final[key] == e
    started = second.stderr.count("starting ")
    assert started == 3 - len(killed)
    assert f"{len(killed)} of 3 runs already in" in second.stderr
    assert "runs done; about" in second.stderr and "left" in second.stderr
    # a third start has nothing to do
    from kasp.experiments.sweep import SweepOptions

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), max_steps=12, max_train_samples=128,
                       max_eval_samples=32, teacher=str(tiny_store / "teacher"), runs_dir=str(results.parent / "store"),
                       results=str(results))
    cfgs = {r.key: opt.run_config(r, str(tiny_store / "teacher" / "checkpoint")) for r in opt.plan()}
    assert all(final[k]["recipe"] | {"teacher": None} == c.to_dict() | {"teacher": None} for k, c in cfgs.items())
    before = results.read_bytes()
    again = __import__("kasp.experiments.sweep", fromlist=["run_sweep"]).run_sweep(opt)
    assert results.read_bytes() == before, "a sweep with nothing to run must leave its file untouched"
    assert {e["key"] for e in again["runs"]} == set(final)
    e = final["small-dense@0.8/seed42"]
    assert e["small_dense"]["layers"] == 1 and e["nonzero_encoder_linear"] == e["small_dense"]["encoder_linear"]
    k = final["kasp@0.8/seed42"]
    assert k["measured_sparsity"] == pytest.approx(0.8, abs=1e-3) and k["retention"]["samples"] == 8
    assert k["recipe"]["max_steps"] == 12 and k["progress"]["eval"] and k["per_matrix_sparsity"]
    assert not (sweep_dir / "kasp-s80-seed42" / "checkpoint").exists()  # weights are not kept


# --- figure and caption ----------------------------------------------------------------------------
def _points(rows):
    return pd.DataFrame(rows, columns=["method", "nominal", "sparsity", "metric", "spread", "n", "source", "label"])


def test_sweep_points_mean_and_spread():
    from kasp.experiments.results import sweep_points

    res = _valid_results()
    res["runs"].append({**res["runs"][0], "key": "kasp@0.9/seed43", "seed": 43, "metric": 0.84})
    res["runs"].append({**res["runs"][0], "key": "small-dense@0.9/seed42", "method": "small-dense", "metric": 0.8,
                        "measured_sparsity": 0.0, "small_dense": {"equivalent_sparsity": 0.8984}})
    p = sweep_points(res).set_index("method")
    assert p.loc["kasp", "metric"] == pytest.approx(0.85) and p.loc["kasp", "spread"] == pytest.approx(0.01)
    assert p.loc["kasp", "n"] == 2 and p.loc["small-dense", "n"] == 1
    assert p.loc["small-dense", "sparsity"] == pytest.approx(0.8984) and p.loc["small-dense", "nominal"] == 0.9


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


# --- the pages draw a shipped sweep (no run in the store) ------------------------------------------
def _synthetic_sweep(task: str, main_metric: str) -> dict:
    """A structurally complete results file (test data for the pages, not results)."""
    runs = []
    for seed, off in ((42, 0.0), (43, 0.004)):
        for method, s, v in (("kasp", 0.5, 0.80), ("kasp", 0.9, 0.76), ("magnitude", 0.5, 0.79),
                             ("magnitude", 0.9, 0.70), ("small-dense", 0.9, 0.68)):
            runs.append({"key": f"{method}@{s:g}/seed{seed}", "method": method, "sparsity": s, "seed": seed,
                         "metric": v + off, "metrics": {main_metric: v + off}, "wall_seconds": 300.0,
                         "measured_sparsity": 0.0 if method == "small-dense" else s, "recipe": {"max_steps": 200},
                         "teacher_id": "t", "small_dense": {"equivalent_sparsity": 0.8985} if method == "small-dense" else None})
    return {"format": "kasp-sweep", "schema_version": 1, "task": task, "model": "default", "main_metric": main_metric,
            "teacher": {"run_id": "t", "metric": 0.82}, "plan": {"budget": {"max_steps": 200}}, "runs": runs}


@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
def test_overview_draws_the_shipped_sweep_without_runs(task, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    import kasp.experiments.results
    from kasp.data.glue import get_task

    shipped = tmp_path / "sweeps" / f"{task}.json"
    shipped.parent.mkdir()
    shipped.write_text(json.dumps(_synthetic_sweep(task, get_task(task).main_metric)))
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


# --- the class preset ------------------------------------------------------------------------------
def test_class_recipe_has_a_section_per_command(tmp_path):
    from kasp.spec.config import load_recipe, make_config
    from kasp.training.estimate import estimate_seconds

    ft, pr = load_recipe("class", "finetune"), load_recipe("class", "prune")
    teacher = make_config("finetune", "finetune", "sst2", **ft)
    student = make_config("prune", "kasp", "sst2", **pr)
    assert teacher.sparsity == 0 and student.sparsity == 0.9
    # the preset's purpose: ~2 min teacher, <= 5 min prune at the platform notes' speed of MiniLM on 2 cores
    t_est, _ = estimate_seconds("finetune", teacher.max_steps, evals=1, store=tmp_path)
    p_est, _ = estimate_seconds("kasp", student.max_steps, evals=student.max_steps // student.eval_every, store=tmp_path)
    assert t_est <= 150 and p_est <= 300
    with pytest.raises(KaspError, match="no section for `kasp evaluate`"):
        load_recipe("class", "evaluate")
    with pytest.raises(KaspError, match="not found: give a JSON file or one of .*class"):
        load_recipe("klass", "prune")


def test_cli_class_recipe_flags_override(tiny_store, tiny_pretrained):
    from kasp.cli import main
    from kasp.ground.runs import RunDir

    out = tiny_store / "class-run"
    assert main(["prune", "--task", "sst2", "--recipe", "class", "--method", "magnitude", "--model", str(tiny_pretrained),
                 "--max-steps", "4", "--max-train-samples", "64", "--max-eval-samples", "16", "--runs-dir", str(tiny_store),
                 "--out", str(out), "--no-progress"]) == 0
    rec = RunDir(out).recipe()
    assert (rec["sparsity"], rec["method"], rec["max_steps"], rec["eval_every"]) == (0.9, "magnitude", 4, 100)


def test_sweep_trains_its_teacher_once_and_reuses_it(tiny_pretrained, tmp_path):
    from kasp.ground.runs import list_runs
    from kasp.experiments.sweep import SweepOptions, run_sweep

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.5,), methods=("kasp",), teacher_steps=4,
                       max_steps=4, max_train_samples=64, max_eval_samples=16, runs_dir=str(tmp_path / "store"),
                       retention_samples=0)
    first = run_sweep(opt)
    teachers = [r for r in list_runs(tmp_path / "store") if r.recipe().get("kind") == "finetune"]
    assert len(teachers) == 1 and first["teacher"]["trained_by_sweep"] is True
    assert first["teacher"]["run_id"] == teachers[0].id and first["plan"]["budget"]["teacher_steps"] == 4
    assert [e["key"] for e in first["runs"]] == ["kasp@0.5/seed42"] and first["runs"][0]["retention"] is None
    second = run_sweep(opt)  # nothing to do: same teacher, same recipe
    assert len([r for r in list_runs(tmp_path / "store") if r.recipe().get("kind") == "finetune"]) == 1
    assert second["runs"] == first["runs"] and second["teacher"]["trained_by_sweep"] is False
    opt.max_steps = 6  # a changed recipe is run again
    third = run_sweep(opt)
    assert third["runs"][0]["recipe"]["max_steps"] == 6 and third["runs"][0]["finished"] >= first["runs"][0]["finished"]


def test_bad_sweep_settings_are_refused_before_any_training(tmp_path, capsys):
    from kasp.cli import main

    for flags in (["--max-steps", "-5"], ["--max-seq-length", "600"], ["--max-train-samples", "0"]):
        for dry in ([], ["--dry-run"]):
            rc = main(["sweep", "--task", "mrpc", "--runs-dir", str(tmp_path / "store"), *flags, *dry])
            assert rc == 2
            assert "invalid sweep settings" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())  # no teacher was trained


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


def test_runs_recorded_before_a_new_recipe_field_are_not_redone():
    """A results file written before a recipe field existed (e.g. time_budget, None by default) still
    matches the same run's recipe now; a real change of a field does not."""
    from kasp.spec.config import make_config
    from kasp.experiments.sweep import _comparable

    now = make_config("prune", "kasp", "mrpc", sparsity=0.9, max_steps=200).to_dict()
    before = {k: v for k, v in now.items() if k != "time_budget"}
    assert _comparable(before) == _comparable(now)
    assert _comparable({**before, "lr": 2e-4}) != _comparable(now)


def test_an_interrupted_sweep_run_continues_from_its_last_evaluation_point(tiny_store, tiny_pretrained, tmp_path,
                                                                            capsys):
    """Stopped after its first evaluation point, a sweep's run is continued (not redone) when the sweep
    starts again, and ends with the same weights' story and metric as an uninterrupted sweep."""
    from kasp.experiments.sweep import SweepOptions, run_sweep
    from kasp.training.train import Cancelled

    def opt(name):
        return SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=("kasp",),
                            max_steps=12, max_train_samples=128, max_eval_samples=32, retention_samples=0,
                            teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path / "store"),
                            results=str(tmp_path / f"{name}.json"))

    stopped = opt("stopped")
    run_dir = stopped.sweep_dir() / "kasp-s80-seed42"
    with pytest.raises(Cancelled):  # stop once the first resume state (step 3 of 12) is written
        run_sweep(stopped, should_stop=lambda: (run_dir / "resume.json").is_file())
    capsys.readouterr()
    resumed = run_sweep(stopped)
    err = capsys.readouterr().err
    assert "kasp@0.8/seed42 was interrupted: resuming it from resume-3" in err
    whole = run_sweep(opt("whole"))
    a, b = resumed["runs"][0], whole["runs"][0]
    assert a["metric"] == b["metric"] and a["per_matrix_sparsity"] == b["per_matrix_sparsity"]
    assert a["weights_story"] == b["weights_story"]
    steps = [r["step"] for r in a["progress"]["train"]]
    assert steps == sorted(set(steps))  # no progress record twice

    # a damaged resume state: the run starts again from the beginning instead of stopping the sweep
    damaged = opt("damaged")
    run_dir = damaged.sweep_dir() / "kasp-s80-seed42"
    with pytest.raises(Cancelled):
        run_sweep(damaged, should_stop=lambda: (run_dir / "resume.json").is_file())
    for f in run_dir.glob("resume-*/tensors.safetensors"):
        f.write_bytes(b"not a safetensors file")
    capsys.readouterr()
    again = run_sweep(damaged)
    assert "could not resume" in capsys.readouterr().err
    assert again["runs"][0]["metric"] == b["metric"]


_README_TASKS = {"MRPC": "mrpc", "RTE": "rte", "STS-B": "stsb", "CoLA": "cola", "SST-2": "sst2"}


def _readme_table(header: str) -> list[list[str]]:
    """The body rows (cells stripped) of docs/results.md's Markdown table that starts with ``header``
    (the tables moved there from the README)."""
    readme = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    table = readme[readme.index(header):]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[:table.index("\n\n")].splitlines()[2:]]


def _kasp90_seeds(runs) -> dict[int, float]:
    """Metric ×100 per seed of the KASP runs at 90 % of a results file's ``runs``."""
    return {e["seed"]: e["metric"] * 100 for e in runs if e["method"] == "kasp" and e["sparsity"] == 0.9}


def test_the_results_pages_sweep_table_is_the_shipped_results():
    """Every number of docs/results.md's table of shipped sweeps (KASP, magnitude, small-dense: mean, and
    ± half the range over seeds) is what assets/sweeps/<task>.json holds, and every shipped point is in it."""
    import re
    from kasp.experiments.results import load_results, shipped_sweep_path

    shown, task = {}, None
    for cells in _readme_table("| task (metric), teacher | budget a run |"):
        if cells[0]:
            task = _README_TASKS[cells[0].split(" (")[0]]
        sp = float(cells[2].rstrip(" %")) / 100
        for method, cell in zip(("kasp", "magnitude", "small-dense"), cells[3:6]):
            m = re.match(r"([\d.]+)(?: ± ([\d.]+))?", cell)
            if m:  # ‡: a value by GLUE's convention for a constant predictor (metrics.convention)
                shown[(task, method, sp)] = (float(m.group(1)), float(m.group(2) or 0), "‡" in cell)
    shipped = {}
    for t in _README_TASKS.values():
        runs = load_results(shipped_sweep_path(t))["runs"]
        for key in {(e["method"], e["sparsity"]) for e in runs}:
            group = [e for e in runs if (e["method"], e["sparsity"]) == key]
            vals = [e["metric"] * 100 for e in group]
            shipped[(t, key[0], round(key[1], 2))] = (round(sum(vals) / len(vals), 2), round((max(vals) - min(vals)) / 2, 2),
                                                      any("convention" in e["metrics"] for e in group))
    assert shown == shipped


def test_the_results_pages_knob_table_is_the_shipped_trials():
    """docs/results.md's table of recipe knobs (SST-2, KASP at 90 %) quotes bench/trials/sst2-*.json and the
    sweep's baseline seed by seed, with mean, half the range and the difference to the baseline; every
    finished SST-2 knob trial is in it."""
    from kasp.experiments.results import load_results, shipped_sweep_path

    labels = {"temperature τ = 2": {"temperature": 2}, "learning rate 2e-4": {"lr": 2e-4},
              "learning rate 5e-5": {"lr": 5e-5}, "prediction weight 3": {"prediction_weight": 3}}
    shipped = {"none": _kasp90_seeds(load_results(shipped_sweep_path("sst2"))["runs"])}
    for f in sorted((ROOT / "bench" / "trials").glob("sst2-*.json")):
        res = load_results(f)
        if res["runs"]:
            label = next(k for k, v in labels.items() if v == res["plan"]["overrides"])
            shipped[label] = _kasp90_seeds(res["runs"])
    base = sum(shipped["none"].values()) / 2
    shown = {}
    for cells in _readme_table("| change | seed 42 | seed 43 |"):
        line = " | ".join(cells)
        label = "none" if cells[0].startswith("none") else cells[0]
        shown[label] = {42: float(cells[1]), 43: float(cells[2])}
        vals = list(shipped[label].values())
        mean = sum(vals) / 2
        assert cells[3] == f"{mean:.2f} ± {(max(vals) - min(vals)) / 2:.2f}", line
        if label != "none":
            assert cells[4] == f"{mean - base:+.2f}".replace("-", "−"), line
    assert shown == {k: {s: round(v, 2) for s, v in d.items()} for k, d in shipped.items()}


def test_the_results_pages_augmentation_table_is_the_shipped_runs():
    """docs/results.md's augmentation table (KASP at 90 %, seeds 42 / 43 and their mean) quotes the sweeps'
    runs without augmentation and bench/augment/<task>-augment-<source><N>.json with it; a cell says
    "not run" only where no such file holds both seeds, and N is TinyBERT's for the task."""
    from kasp.training.augment import TINYBERT_N
    from kasp.experiments.results import load_results, shipped_sweep_path

    def cell(path):
        if not path.is_file():
            return "not run"
        runs = load_results(path)["runs"]
        v = _kasp90_seeds(runs)
        conv = any("convention" in e["metrics"] for e in runs if e["method"] == "kasp" and e["sparsity"] == 0.9)
        return (f"{v[42]:.2f} / {v[43]:.2f} ({(v[42] + v[43]) / 2:.2f})" + (" ‡" if conv else "")  # ‡: GLUE's convention
                if sorted(v) == [42, 43] else "not run")

    rows = _readme_table("| task (metric), words N | without augmentation |")
    assert len(rows) == len(_README_TASKS)
    for cells in rows:
        line = " | ".join(cells)
        task = _README_TASKS[cells[0].split(" (")[0]]
        n = TINYBERT_N[task]
        assert cells[0].endswith(f", {n}"), line
        expected = [cell(shipped_sweep_path(task))] + [cell(ROOT / "bench" / "augment" / f"{task}-augment-{s}{k}.json")
                                                       for s, k in (("words", n), ("glue", 1))]
        assert cells[1:] == expected, line


# --- one sweep per task and store (issue 26) ------------------------------------------------------
_HOLD = ("import sys, time\n"
         "from kasp.experiments.sweep import sweep_lock\n"
         "with sweep_lock(sys.argv[1], sys.argv[2]):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(120)\n")


def test_a_second_sweep_of_the_same_task_and_store_stops_at_once(tmp_path, capsys):
    from kasp.cli import main
    from kasp.experiments.sweep import sweep_lock

    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, "mrpc", str(store)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        rc = main(["sweep", "--task", "mrpc", "--runs-dir", str(store), "--methods", "kasp", "--sparsities", "0.5"])
        err = capsys.readouterr().err
        assert rc == 2 and time.time() - t0 < 30  # no teacher was fine-tuned, nothing waited
        assert err.count("\n") == 1 and f"pid {holder.pid}" in err and "started 20" in err and "UTC" in err
        assert "another kasp sweep of mrpc is running" in err and "nothing was started" in err
        assert sorted(p.name for p in store.iterdir()) == ["sweeps"]  # no run, no results file
        assert not [p for p in (store / "sweeps").iterdir() if not p.name.startswith(".sweep-mrpc.")]
        with pytest.raises(KaspError, match=f"pid {holder.pid}"):  # a second holder in this process too
            with sweep_lock("mrpc", store):
                pass
        with sweep_lock("rte", store):  # another task on the same store: free
            pass
        with sweep_lock("mrpc", tmp_path / "other-store"):  # the same task on another store: free
            pass
    finally:
        holder.kill()
        holder.wait()
    with sweep_lock("mrpc", store):  # the holder was killed: the system released its lock
        assert json.loads((store / "sweeps" / ".sweep-mrpc.holder.json").read_text())["pid"] == os.getpid()
    assert not (store / "sweeps" / ".sweep-mrpc.holder.json").exists()


def test_a_sweep_run_killed_after_its_report_is_recorded_not_retrained(tiny_store, tiny_pretrained, tmp_path, capsys):
    from kasp.ground.runs import RunDir
    from kasp.experiments.sweep import SweepOptions, run_sweep

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=("kasp",), max_steps=4,
                       max_train_samples=64, max_eval_samples=16, retention_samples=0, keep_checkpoints=True,
                       teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path))
    first = run_sweep(opt)["runs"][0]
    run = RunDir(tmp_path / "sweeps" / "sst2" / "kasp-s80-seed42")
    progress = (run.path / "progress.jsonl").read_bytes()
    # as if the process had been killed after writing its report, before its final status and its results entry
    run.set_status("running", pid=2 ** 22 + 54321)  # a pid no process has
    opt.results_path().unlink()
    capsys.readouterr()
    again = run_sweep(opt)["runs"][0]
    assert "finished before the last stop but was not recorded: recording it" in capsys.readouterr().err
    assert run.state() == "done" and (run.path / "progress.jsonl").read_bytes() == progress  # not trained again
    assert again["metric"] == first["metric"] and again["run_id"] == first["run_id"]
