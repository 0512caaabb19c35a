"""The app's logic without Streamlit: labels, the recipe form, checks before launch, ownership, the queue."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from kasp.training import estimate
from kasp.experiments import jobs
from kasp.ui import checks, curves, devset, engine, launch, session, tables
from kasp.cli import main
from kasp.spec.config import ADOPTED, STEP_BUDGETS, make_config
from kasp.data.glue import load_split
from kasp.ground.errors import KaspError
from kasp.ui.figures import accuracy_sparsity_figure, attention_heatmap
from kasp.ground.runs import RunDir


# --- labels --------------------------------------------------------------------------------------

def test_glue_names_and_each_tasks_metric():
    assert [engine.task_name(t) for t in ("sst2", "cola", "mrpc", "stsb", "rte", "qnli", "wnli")] == \
        ["SST-2", "CoLA", "MRPC", "STS-B", "RTE", "QNLI", "WNLI"]
    assert engine.metric_heading("cola") == "Matthews correlation"
    assert engine.metric_heading("stsb") == "Pearson/Spearman correlation"
    assert engine.metric_heading("mrpc") == "F1/accuracy"
    assert engine.metric_axis("cola") == "dev Matthews correlation (×100)"
    assert engine.metric_axis("sst2") == "dev accuracy (%)"
    assert engine.format_metric("cola", 0.25) == "25.00 (×100)" and engine.format_metric("rte", None) == "n/a"


def test_figures_name_task_and_metric():
    import pandas as pd

    pts = pd.DataFrame({"method": ["kasp"], "sparsity": [0.9], "metric": [0.8], "spread": [0.0], "n": [1],
                        "source": ["live run"], "label": ["a"]})
    fig = accuracy_sparsity_figure(pts, (0.85, "live run"), None, engine.metric_label("stsb"), "stsb")
    assert fig.layout.title.text == "STS-B: dev Pearson correlation against sparsity"
    assert fig.layout.yaxis.title.text == "dev Pearson correlation (×100)"


def test_attention_heatmap_keeps_repeated_tokens_apart():
    from kasp.models.modeling import default_model_path, load_tokenizer

    tok = load_tokenizer(default_model_path())
    tokens = tok.convert_ids_to_tokens(tok("The cat sat on the mat. A cat is sitting.")["input_ids"])
    n = len(tokens)
    assert len(set(tokens)) == n - 3  # "the", "cat" and "." repeat
    import numpy as np

    att = np.random.default_rng(0).dirichlet(np.ones(n), size=n)
    fig = attention_heatmap(att, tokens, "t")
    hm = fig.data[0]
    assert len(set(hm.y)) == len(set(hm.x)) == n  # one row and one column per token
    assert list(hm.y).index("the·5") != list(hm.y).index("the·1")
    assert np.allclose(np.asarray(hm.z)[5], att[5])  # the row labelled the·5 holds token 5's attention
    with pytest.raises(ValueError, match="does not match"):
        attention_heatmap(att[:3], tokens, "t")


@pytest.mark.parametrize("source", ["shipped model", "sst2", "mrpc", "rte", "stsb", "cola"])
def test_the_cka_chart_draws_every_hidden_state_embeddings_first(source):
    """The Attention page's CKA chart (review at 1024 px): the shipped KASP model's retention.json and every shipped
    sweep store one CKA per hidden state, the embedding output first; every one keeps its bar, the first labelled
    "embeddings" and the others named like the page's other per-layer charts. (Labelled "emb.", "0", "1", ... plotly
    read the axis as numbers: it dropped the embeddings' bar and every other bar sat one layer too low.)"""
    import json

    from kasp.ui.figures import cka_figure, head_heatmap, layer_similarity_figure
    from tests.helpers import ROOT

    if source == "shipped model":
        ret = json.loads((ROOT / "assets" / "models" / "sst2" / "kasp-90" / "retention.json").read_text())
    else:
        ret = next(r["retention"] for r in tables.sweep_runs(source) if r.get("retention"))
    cka = ret["cka"]
    fig = cka_figure(cka)
    bars = fig.data[0]
    assert len(bars.x) == len(bars.y) == len(cka) and list(bars.y) == list(cka)
    assert fig.layout.xaxis.type == "category"  # never read as numbers, so no bar is dropped
    layers = list(head_heatmap(ret.get("similarity") or [[1.0]] * (len(cka) - 1), "t", "c").data[0].y)
    assert list(bars.x) == ["embeddings"] + layers  # then the layers, named as the per-head map names them
    if ret.get("similarity_per_layer"):
        sim = layer_similarity_figure(ret["similarity_per_layer"])
        assert list(sim.data[0].x) == layers and sim.layout.xaxis.type == "category"
    assert len(fig.layout.xaxis.title.text) <= 20  # whole in a half-width column at 1024 px


def test_default_example_is_the_first_dev_pair():
    a, b = devset.default_example("rte")
    dev = load_split("rte", "dev")
    assert (a, b) == (dev.iloc[0]["text_a"], dev.iloc[0]["text_b"])
    a, b = devset.default_example("sst2")
    assert b is None and a == load_split("sst2", "dev").iloc[0]["text_a"]


# --- the recipe form and the checks before launch ------------------------------------------------

def test_form_defaults_come_from_the_cli_recipe():
    d = launch.form_defaults("prune", "magnitude", "cola")
    cfg = make_config("prune", "magnitude", "cola", sparsity=0.9)
    assert {k: d[k] for k in ("lr", "task_loss_weight", "attention_weight", "seed", "eval_every", "temperature")} == \
        {k: getattr(cfg, k) for k in ("lr", "task_loss_weight", "attention_weight", "seed", "eval_every", "temperature")}
    n = len(load_split("cola", "train"))
    assert d["max_steps"] == math.ceil(cfg.epochs * n / cfg.batch_size)  # epochs-bounded recipe as steps
    # SST-2 prunes 2,000 steps, KASP 2,500 (the recipe study's): the form opens counting them (no recipe default
    # is a wall-time budget)
    d = launch.form_defaults("prune", "kasp", "sst2")
    assert d["time_budget"] is None and make_config("prune", "kasp", "sst2").time_budget is None
    assert d["max_steps"] == ADOPTED[("kasp", "sst2")]["max_steps"] == 2500
    assert launch.form_defaults("prune", "magnitude", "sst2")["max_steps"] == STEP_BUDGETS[("prune", "sst2")] == 2000


def test_launch_is_validated_like_the_cli(capsys, tmp_path):
    with pytest.raises(KaspError, match="sparsity must be in") as e:
        launch.validate_launch("prune", {"task": "sst2", "sparsity": 1.5})
    assert main(["prune", "--task", "sst2", "--sparsity", "1.5", "--runs-dir", str(tmp_path)]) == 2
    assert str(e.value) in capsys.readouterr().err  # the same message as the command line
    with pytest.raises(KaspError, match="required for prune"):
        launch.validate_launch("prune", {"task": "sst2"})
    assert launch.validate_launch("prune", {"task": "sst2", "sparsity": 0.0}).sparsity == 0.0  # 0 <= s < 1
    with pytest.raises(KaspError, match="works offline"):
        launch.validate_launch("prune", {"task": "sst2", "sparsity": 0.5, "model": "bert-base-uncased"})
    with pytest.raises(KaspError, match="QNLI training set is not shipped"):
        launch.validate_launch("finetune", {"task": "qnli"})
    assert launch.validate_launch("finetune", {"task": "rte", "max_steps": 5}).max_steps == 5


def test_model_name_is_checked(tmp_path, tiny_pretrained, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert checks.check_model("default") is None
    assert checks.check_model(str(tiny_pretrained)) is None
    msg = checks.check_model("bert-base-uncased")
    assert "default" in msg and "local folder" in msg
    assert "no config.json" in checks.check_model(str(tmp_path))
    assert checks.check_model("bert-base-uncased", offline=False) is None  # online a Hub id may be used
    assert "Hub id" in checks.check_model("not a/valid/name", offline=False)


def test_majority_baseline_and_teacher_warning():
    labels = load_split("sst2", "dev")["label"]
    rate = labels.value_counts().max() / len(labels)
    assert devset.majority_baseline("sst2")["accuracy"] == pytest.approx(rate)
    assert devset.majority_baseline("cola")["mcc"] == 0.0  # a constant answer has no correlation
    assert devset.majority_baseline("stsb") is None
    assert "most frequent label" in checks.teacher_warning("sst2", {"metrics": {"accuracy": rate - 0.01}})
    assert checks.teacher_warning("sst2", {"metrics": {"accuracy": rate + 0.01}}) is None
    assert checks.teacher_warning("stsb", {"metrics": {"pearson": 0.1}}) is None


# --- ownership and the queue -------------------------------------------------------------------

def _queued(store: Path, name: str, owner: str | None) -> RunDir:
    run = RunDir.create(store / name)
    run.set_status("queued", job={"kind": "prune", "options": {"task": "sst2", "sparsity": 0.5, "max_steps": 100}},
                   queued_at=1.0, source="app", owner=owner)
    return run


def test_launch_records_owner_and_only_the_owner_controls(tmp_path, monkeypatch):
    monkeypatch.setenv("KASP_MAX_JOBS", "0")  # nothing starts
    run = jobs.launch("prune", {"task": "sst2", "sparsity": 0.5}, tmp_path, owner="tab-A-token")
    assert jobs.owner(run) == "tab-A-token"
    assert jobs.can_control(run, "tab-A-token")
    assert not jobs.can_control(run, "tab-B-token")
    assert jobs.can_control(run, "tab-B-token", operator=True)
    cli = RunDir.create(tmp_path / "from-the-cli")
    cli.set_status("running", pid=os.getpid())
    assert not jobs.can_control(cli, "tab-A-token") and jobs.can_control(cli, None, operator=True)


def test_queue_position_text_and_gate(tmp_path, monkeypatch):
    monkeypatch.setenv("KASP_MAX_JOBS", "1")
    monkeypatch.setenv("KASP_MAX_QUEUED", "2")
    running = RunDir.create(tmp_path / "20260101-000000-sst2-finetune")
    running.set_status("running", pid=os.getpid(), step=50, total_steps=100, started=1000.0, owner="A")
    first = _queued(tmp_path, "20260101-000001-sst2-kasp-s50", "B")
    second = _queued(tmp_path, "20260101-000002-sst2-kasp-s50", "C")
    assert jobs.queue_position(first) == {"position": 1, "of": 2, "ahead": [], "running": [running.id]}
    assert jobs.queue_position(running) is None
    # the running run is half done after 100 s: 100 s left; the queued one ahead is estimated from its recipe
    est, _ = estimate.estimate_seconds("kasp", 100, store=tmp_path, task="sst2")
    with monkeypatch.context() as m:
        m.setattr(launch.time, "time", lambda: 1100.0)
        assert launch.remaining_seconds(running) == pytest.approx(100.0)
        text = launch.queue_text(second)
    assert text == (f"queued, position 2 of 2, waiting for {first.id}; estimated start in about "
                    f"{max(1, round((100 + est) / 60))} min ({launch.time.strftime('%H:%M', launch.time.gmtime(1100 + 100 + est))} UTC)")
    assert jobs.queue_full(tmp_path)
    assert "queue is full" in launch.launch_gate("sst2", "default", "D", tmp_path)
    assert "Your run" in launch.launch_gate("sst2", "default", "B", tmp_path)
    jobs.cancel(second)
    assert launch.launch_gate("sst2", "default", "D", tmp_path) is None
    assert "works offline" in launch.launch_gate("sst2", "bert-base-uncased", "D", tmp_path)


def test_panel_keeps_own_finished_runs_until_dismissed(tmp_path):
    mine = _queued(tmp_path, "20260101-000001-sst2-kasp-s50", "A")
    other = _queued(tmp_path, "20260101-000002-sst2-kasp-s50", "B")
    assert [r.id for r in session.panel_runs("A", tmp_path)] == [mine.id, other.id]  # every active run
    jobs.cancel(mine)
    jobs.cancel(other)
    assert [r.id for r in session.panel_runs("A", tmp_path)] == [mine.id]  # the own cancelled run stays
    assert [r.id for r in session.panel_runs("B", tmp_path)] == [other.id]
    jobs.dismiss(mine)
    assert session.panel_runs("A", tmp_path) == [] and mine.state() == "cancelled"
    with pytest.raises(KaspError, match="only a finished"):
        jobs.dismiss(_queued(tmp_path, "20260101-000003-sst2-kasp-s50", "A"))


def test_session_token_and_operator(monkeypatch):
    t = session.session_token()
    assert session.session_token(t) == t  # a token from the page address survives a reload
    assert session.session_token("x") != "x" and session.session_token("<script>") != "<script>"
    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    monkeypatch.delenv("KASP_OPERATOR_KEY", raising=False)
    assert not session.operator_mode() and not session.operator_mode("anything")
    monkeypatch.setenv("KASP_OPERATOR_KEY", "lecturer-secret-2026")
    assert session.operator_mode("lecturer-secret-2026") and not session.operator_mode("guess")
    assert not session.operator_mode("lecturer-secret-202") and not session.operator_mode("lecturer-secret-2026x")
    assert not session.operator_mode("clé-é-ünïcode-ß") and session.operator_key_problem() is None  # non-ASCII: no TypeError
    monkeypatch.setenv("KASP_OPERATOR", "1")
    assert session.operator_mode()


def test_a_short_operator_key_is_refused(monkeypatch, capsys):
    """A KASP_OPERATOR_KEY under 16 characters matches nothing, `kasp app` refuses to start with it."""
    from kasp.cli import main

    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    monkeypatch.setenv("KASP_OPERATOR_KEY", "short-secret-15")  # 15 characters
    assert not session.operator_mode("short-secret-15")
    assert "shorter than the 16 required" in session.operator_key_problem()
    state = {}
    assert "shorter than the 16 required" in session.operator_attempt(state, "short-secret-15")
    assert not state.get("operator")
    monkeypatch.setattr("os.execve", lambda *a: pytest.fail("the app was started"))
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert "KASP_OPERATOR_KEY is 15 characters long" in err and err.count("\n") == 1
    monkeypatch.setenv("KASP_OPERATOR_KEY", "x" * 16)
    assert session.operator_key_problem() is None and session.operator_mode("x" * 16)


def test_a_session_takes_at_most_five_wrong_operator_keys(monkeypatch):
    monkeypatch.delenv("KASP_OPERATOR", raising=False)
    monkeypatch.setenv("KASP_OPERATOR_KEY", "the-lecturers-long-key")
    state: dict = {}
    notes = [session.operator_attempt(state, f"guess-{i}") for i in range(5)]
    assert notes[0] == "Wrong operator key: 4 more attempts in this session."
    assert notes[3] == "Wrong operator key: 1 more attempt in this session."
    assert notes[4] == "Wrong operator key: this session accepts no more operator keys."
    assert state == {"operator_failures": 5}
    assert "accepts no more" in session.operator_attempt(state, "the-lecturers-long-key")  # even the right one
    assert not state.get("operator") and state["operator_failures"] == 5
    fresh: dict = {"operator_failures": 4}
    assert session.operator_attempt(fresh, "the-lecturers-long-key") is None and fresh["operator"] is True
    monkeypatch.delenv("KASP_OPERATOR_KEY")
    assert "no operator key" in session.operator_attempt({}, "anything")


def test_results_table_queued_run_and_empty_task(tmp_path):
    _queued(tmp_path, "20260101-000001-sst2-kasp-s50", "A")
    t = tables.results_table("sst2", tmp_path, precomputed=tmp_path / "none.json")
    assert t.iloc[0][["task", "method", "state", "target sparsity (%)"]].tolist() == ["SST-2", "kasp", "queued", 50.0]
    cola = tables.results_table("cola", tmp_path, precomputed=tmp_path / "none.json")  # only the shipped sweep
    assert set(cola["source"]) == {"precomputed sweep"} and "sweep/teacher" in set(cola["id"])
    assert tables.results_table("wnli", tmp_path, precomputed=tmp_path / "none.json").empty  # no sweep ships


def test_retention_rows_measured_at_the_asked_size(tmp_path):
    import json

    run = RunDir.create(tmp_path / "r")
    (run.path / "retention.json").write_text(json.dumps({"samples_requested": 128, "mean_similarity": 0.9,
                                                         "mean_cka": 0.8, "agreement": 0.95}))
    rows, missing = tables.retention_rows([run], 128)
    assert rows["attention similarity"].tolist() == [0.9] and missing == []
    rows, missing = tables.retention_rows([run], 256)
    assert rows.empty and missing == [run]


def test_one_colour_per_method_on_every_page():
    """The retention scatter (Attention) uses the same method colours as the accuracy curves (Overview,
    Results): a class sees KASP in one colour and magnitude in another everywhere."""
    import pandas as pd

    from kasp.ui.figures import METHOD_COLOURS, retention_scatter

    df = pd.DataFrame({"sparsity (%)": [90, 90, 70], "CKA": [0.85, 0.72, 0.9], "run": ["a", "b", "c"],
                       "method": ["kasp", "magnitude", "kasp"], "source": ["live run", "live run", "precomputed run"],
                       "agreement (%)": [92, 86, 93]})
    colours = {t.name.split(" (")[0]: t.marker.color for t in retention_scatter(df, "CKA").data}
    assert colours == {"KASP": METHOD_COLOURS["kasp"], "magnitude baseline": METHOD_COLOURS["magnitude"]}


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_the_scores_of_the_shipped_runs_are_the_seed_means_the_overview_draws(task):
    """Predictions on a task with no shipped weights (review: MRPC's table gave seed 42's KASP 81.48 and magnitude
    75.91 at 90 %, the Overview their means over seeds 42 and 43, 80.77 and 77.96): one row per condition, its
    mean over the seeds, the seed count and the spread, the numbers of the Overview's curve."""
    points = curves.curve_data(task).points
    sweep = points[points["source"] == "precomputed sweep"]
    scores = tables.shipped_scores(task)
    metric = engine.metric_axis(task)
    for method, name in (("kasp", "KASP"), ("magnitude", "magnitude baseline")):
        drawn = sweep[(sweep["method"] == method) & (sweep["nominal"] == 0.9)].iloc[0]
        rows = scores[(scores["method"] == name) & (scores["sparsity (%)"].round() == 90)]
        assert len(rows) == 1, rows  # one row for the condition, not one per seed
        assert rows[metric].iloc[0] == pytest.approx(drawn["metric"] * 100)
        assert rows["seeds"].iloc[0] == drawn["n"] == 2
        assert rows["spread"].iloc[0] == pytest.approx(drawn["spread"] * 100)
    from kasp.experiments.results import load_shipped

    seeds = [100 * e["metric"] for e in load_shipped(task)["runs"] if e["method"] == "kasp" and e["sparsity"] == 0.9]
    kasp = scores[(scores["method"] == "KASP") & (scores["sparsity (%)"].round() == 90)]
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # a mean, not seed 42's score, is what the row must show
    assert float(kasp[metric].iloc[0]) == pytest.approx(sum(seeds) / 2)


def test_small_dense_runs_sit_at_the_sparsity_their_size_equals():
    """A small-dense run has no zeros; every view places it at the sparsity its size stands for."""
    from kasp.ground.runs import measured_sparsity

    small = {"sparsity": {"pruned_sparsity": 0.0}, "small_dense": {"equivalent_sparsity": 0.9005}}
    assert measured_sparsity(small) == 0.9005
    assert measured_sparsity({"sparsity": {"pruned_sparsity": 0.9}}) == 0.9
    assert measured_sparsity({"sparsity": {"pruned_sparsity": 0.0}}) == 0.0
    assert measured_sparsity({}) is None


@pytest.mark.parametrize("task", ["sst2", "mrpc", "rte", "stsb", "cola"])
def test_shipped_sweep_runs_are_rows_with_their_recipe_and_numbers(task):
    """Issue 25, item 1: every run of a shipped sweep is a precomputed row (Results), a retention point
    (Attention) and a score (Predictions), with the numbers of assets/sweeps/<task>.json."""
    from kasp.experiments.results import load_shipped

    res = load_shipped(task)
    runs = tables.sweep_runs(task)
    assert [r["id"] for r in runs] == ["sweep/teacher"] + [f"sweep/{e['key']}" for e in res["runs"]]
    assert all(r["command"].startswith(f"kasp sweep --task {task}") for r in runs)
    frame = tables.sweep_frame(task)
    assert set(frame["source"]) == {"precomputed sweep"}
    by_id = dict(zip(frame["id"], frame["metric"]))
    for e in res["runs"]:
        if e["metric"] is not None:
            assert by_id[f"sweep/{e['key']}"] == pytest.approx(e["metric"])
    ret = tables.precomputed_retention(task)
    assert len(ret[ret["source"] == "precomputed sweep"]) == sum(1 for e in res["runs"] if e.get("retention"))
    scores = tables.shipped_scores(task)
    small = scores[scores["method"] == "small dense"]
    planned = {100 * e["sparsity"] for e in res["runs"] if e["method"] == "small-dense"}
    assert len(small) and set(small["sparsity (%)"]) == planned  # where its size puts it, not its 0 % zeros
    rec = tables.shipped_run("sweep/kasp@0.9/seed42", task)
    train, evals = curves.progress_frames(rec["progress"])
    assert len(train) and len(evals)  # its curves over training draw on the Results page
