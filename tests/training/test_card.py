"""Checkpoints that carry their own story: the model card and config.json's ``kasp`` block (kasp/training/card.py)."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from kasp.cli import main
from kasp.ground.runs import RunDir

PRUNE = ["prune", "--task", "sst2", "--max-steps", "8", "--pruning-events", "4", "--max-train-samples", "128",
         "--max-eval-samples", "40", "--eval-every", "0", "--log-every", "4", "--no-progress", "--seed", "7"]


@pytest.fixture(scope="module")
def pruned_run(tiny_store, tiny_pretrained) -> RunDir:
    out = tiny_store / "card-kasp80"
    rc = main([*PRUNE, "--model", str(tiny_pretrained), "--sparsity", "0.8", "--runs-dir", str(tiny_store),
               "--out", str(out)])
    assert rc == 0
    return RunDir(out)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.mark.slow
def test_card_and_config_carry_the_reports_figures(pruned_run):
    rep, recipe = pruned_run.report(), pruned_run.recipe()
    cfg = json.loads((pruned_run.checkpoint / "config.json").read_text())
    facts = cfg["kasp"]
    assert facts["task"] == "sst2" and facts["kind"] == "prune" and facts["method"] == "kasp"
    assert facts["metric"]["name"] == rep["main_metric"] == "accuracy"
    assert facts["metric"]["value"] == rep["metrics"]["accuracy"]
    assert facts["metric"]["dev_examples"] == rep["metrics"]["n"] == 40
    assert facts["sparsity"]["encoder_linear"] == rep["sparsity"]["pruned_sparsity"]
    assert facts["sparsity"]["all_parameters"] == rep["sparsity"]["overall_sparsity"]
    assert facts["sparsity"]["target"] == 0.8 and facts["sparsity"]["encoder_linear"] == pytest.approx(0.8, abs=1e-3)
    assert facts["wall_seconds"] == rep["wall_seconds"] and facts["steps"] == rep["steps"] == 8
    assert facts["seed"] == 7 and facts["recipe"] == recipe
    assert facts["teacher"]["path"] == rep["teacher"]["path"]
    assert "NAACL" in facts["paper"] and "Xu" in facts["paper"]

    card = (pruned_run.checkpoint / "README.md").read_text()
    meta = _front_matter(card)
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"]["config"] == "sst2"
    assert result["metrics"][0]["type"] == "accuracy" and result["metrics"][0]["value"] == rep["metrics"]["accuracy"]
    assert meta["kasp"]["dev_examples"] == 40 and meta["kasp"]["seed"] == 7
    assert meta["kasp"]["encoder_linear_sparsity"] == rep["sparsity"]["pruned_sparsity"]
    assert meta["kasp"]["all_parameters_sparsity"] == rep["sparsity"]["overall_sparsity"]
    assert f"{rep['metrics']['accuracy'] * 100:.2f} % on 40 dev examples" in card
    assert "AutoModelForSequenceClassification.from_pretrained" in card and "10.18653/v1/2021.naacl-main.188" in card

    # the block does not get in the way of plain transformers
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(pruned_run.checkpoint)
    assert model.config.kasp["metric"]["value"] == rep["metrics"]["accuracy"]


@pytest.mark.slow
def test_teacher_checkpoint_has_a_card_too(tiny_store):
    run = RunDir(tiny_store / "teacher")
    facts = json.loads((run.checkpoint / "config.json").read_text())["kasp"]
    assert facts["kind"] == "finetune" and facts["teacher"] is None
    assert facts["metric"]["value"] == run.report()["metrics"]["accuracy"]
    assert facts["sparsity"]["encoder_linear"] == run.report()["sparsity"]["pruned_sparsity"]


@pytest.mark.slow
def test_a_copied_checkpoint_still_tells_what_it_is(pruned_run, tmp_path, capsys):
    rep = pruned_run.report()
    elsewhere = tmp_path / "somewhere" / "model"
    shutil.copytree(pruned_run.checkpoint, elsewhere)  # no run directory around it any more
    capsys.readouterr()
    assert main(["inspect", str(elsewhere), "--json", "--no-sizes"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["card"]["metric"]["value"] == rep["metrics"]["accuracy"]
    assert info["card"]["sparsity"]["encoder_linear"] == rep["sparsity"]["pruned_sparsity"]
    assert info["recipe"] == pruned_run.recipe()  # from the card, since no run config.json is beside it
    assert main(["inspect", str(elsewhere), "--no-sizes"]) == 0
    text = capsys.readouterr().out
    assert f"dev accuracy: {rep['metrics']['accuracy'] * 100:.2f} % on 40 dev examples" in text
    assert "method KASP, seed 7, 8 steps" in text
    # the sparse export keeps the card
    assert main(["export", str(elsewhere), str(tmp_path / "sparse")]) == 0
    assert (tmp_path / "sparse" / "README.md").read_text() == (elsewhere / "README.md").read_text()
    assert json.loads((tmp_path / "sparse" / "config.json").read_text())["kasp"]["seed"] == 7


@pytest.mark.slow
def test_results_download_carries_card_and_report(pruned_run):
    from kasp.ui.downloads import checkpoint_zip

    zf = zipfile.ZipFile(io.BytesIO(checkpoint_zip(pruned_run)))
    names = set(zf.namelist())
    rid = pruned_run.id
    assert {f"{rid}/README.md", f"{rid}/config.json", f"{rid}/report.json", f"{rid}/model.safetensors"} <= names
    assert json.loads(zf.read(f"{rid}/report.json")) == pruned_run.report()
    assert json.loads(zf.read(f"{rid}/config.json"))["kasp"]["metric"]["dev_examples"] == 40


@pytest.mark.slow
def test_inspect_page_shows_the_card(pruned_run, tmp_path, monkeypatch):
    from tests.helpers import open_page

    elsewhere = tmp_path / "copy"
    shutil.copytree(pruned_run.checkpoint, elsewhere)
    at = open_page("inspect.py", pruned_run.path.parent, monkeypatch)
    at.radio[0].set_value("A local directory").run()
    at.text_input[0].set_value(str(elsewhere)).run()
    assert not at.exception, [e.message for e in at.exception]
    acc = pruned_run.report()["metrics"]["accuracy"] * 100
    assert any(f"{acc:.2f} % on 40 dev examples" in m.value for m in at.markdown)
    assert any("What this checkpoint says about itself" in h.value for h in at.subheader)


def test_card_refuses_a_report_without_its_facts(tmp_path):
    from kasp.training.card import write_model_card
    from kasp.ground.errors import KaspError

    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(KaspError, match="lacks metrics"):
        write_model_card(tmp_path, {"task": "sst2", "kind": "prune", "method": "kasp", "main_metric": "accuracy",
                                    "sparsity": {}}, {})


# --- undefined metrics and damaged blocks (issue 26 kinds 3 and 7, on issue 28's card) -------------

def _report(task: str, main: str, metrics: dict) -> dict:
    return {"task": task, "kind": "prune", "method": "kasp", "main_metric": main, "metrics": metrics,
            "sparsity": {"pruned_sparsity": 0.9, "overall_sparsity": 0.4}, "target_sparsity": 0.9, "steps": 10,
            "wall_seconds": 60.0}


def test_the_card_never_shows_an_undefined_metric_as_a_number_and_says_glues_convention():
    from kasp.training.card import card_facts, card_summary, render_card
    from kasp.spec.metrics import glue_metrics

    stsb = card_facts(_report("stsb", "pearson", {**glue_metrics("correlation", [0.5] * 4, [1, 2, 3, 4]), "n": 4}),
                      {"seed": 1})
    lines = "\n".join(card_summary(stsb))
    assert "dev Pearson correlation: undefined (constant predictions) on 4 dev examples" in lines, lines
    assert "| dev Pearson correlation | undefined (constant predictions) on 4 dev examples |" in render_card(stsb)
    assert "?" not in lines.split("dev ")[1].split("\n")[0]
    cola = card_facts(_report("cola", "mcc", {**glue_metrics("mcc", [1] * 4, [0, 1, 0, 1]), "n": 4}), {"seed": 1})
    assert "0.00 ×100 (constant predictions: GLUE's convention) on 4" in "\n".join(card_summary(cola))
    assert "0.00 ×100 (constant predictions: GLUE's convention) on 4" in render_card(cola)


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"teacher": "somewhere"}, {"task": None}, {"task": "nosuch"}, {"metric": [1]},
                                    {"sparsity": "x"}, {"recipe": [1]}])
def test_a_damaged_kasp_block_is_named_never_a_traceback(pruned_run, tmp_path, capsys, change):
    ck = tmp_path / "ck"
    shutil.copytree(pruned_run.checkpoint, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["kasp"].update(change)
    (ck / "config.json").write_text(json.dumps(cfg))
    assert main(["inspect", str(ck)]) == 0
    out = capsys.readouterr().out
    assert "config.json's `kasp` block is damaged" in out and "made by KASP" not in out
    assert "per-matrix sparsity" in out  # the measured figures are still shown


@pytest.mark.slow
@pytest.mark.parametrize("change", [{"metric": {"name": "accuracy", "value": "high"}},
                                    {"sparsity": {"encoder_linear": "x", "target": float("nan")}},
                                    {"wall_seconds": float("nan")}, {"metric": {"name": "accuracy", "value": float("nan")}}])
def test_odd_values_in_a_kasp_block_are_shown_as_unknown(pruned_run, tmp_path, capsys, change):
    ck = tmp_path / "ck"
    shutil.copytree(pruned_run.checkpoint, ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["kasp"].update(change)
    (ck / "config.json").write_text(json.dumps(cfg))
    assert main(["inspect", str(ck)]) == 0
    out = capsys.readouterr().out
    made = out.split("made by KASP")[1].split("KASP recipe")[0]
    assert "nan" not in made.lower(), made


@pytest.mark.slow
def test_the_inspect_page_shows_a_card_that_is_not_utf8(pruned_run, tmp_path, monkeypatch):
    from tests.helpers import open_page

    run = RunDir.create(tmp_path / "store" / "r")
    shutil.copytree(pruned_run.checkpoint, run.checkpoint)
    run.set_status("done")
    (run.checkpoint / "README.md").write_bytes(b"---\nx: 1\n---\n\xff\xfe caf\xe9 \x00")
    at = open_page("inspect.py", tmp_path / "store", monkeypatch)
    assert any("What this checkpoint says about itself" in h.value for h in at.subheader)


@pytest.mark.slow
def test_the_results_download_never_carries_a_file_from_outside_the_run(pruned_run, tmp_path):
    """A run copied into the store with links planted in it (checkpoint/secret -> a server file, report.json ->
    another): the zip holds the run's own plain files only; a checkpoint folder that is a link is refused."""
    from kasp.ground.errors import KaspError
    from kasp.ui.downloads import checkpoint_zip

    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    run = RunDir(tmp_path / "store" / "copied")
    shutil.copytree(pruned_run.path, run.path)
    (run.checkpoint / "secret.txt").symlink_to(secret)
    (run.path / "report.json").unlink()
    (run.path / "report.json").symlink_to(secret)
    (run.checkpoint / "sub").mkdir()
    data = checkpoint_zip(run)
    assert b"PRIVATE KEY" not in data and b"PRIVATE KEY" not in b"".join(
        zipfile.ZipFile(io.BytesIO(data)).read(n) for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert f"{run.id}/model.safetensors" in names and f"{run.id}/secret.txt" not in names and f"{run.id}/sub/" not in names
    linked = RunDir(tmp_path / "store" / "linked")
    linked.path.mkdir()
    (linked.path / "checkpoint").symlink_to(pruned_run.checkpoint)
    with pytest.raises(KaspError, match="checkpoint folder is a link"):
        checkpoint_zip(linked)


def test_card_summary_names_the_method_as_the_app_does_and_a_teacher_that_is_not_here(tmp_path):
    """The summary the Inspect page shows writes the method's display name ("KASP", "magnitude baseline"), and
    says when the recorded teacher path does not exist on this machine (it was the training machine's)."""
    from kasp.training.card import card_facts, card_summary

    report = {**_report("sst2", "accuracy", {"accuracy": 0.9, "n": 4}), "method": "magnitude",
              "teacher": {"path": "/nowhere/runs/ship/sst2-teacher/checkpoint", "metrics": {}}}
    lines = card_summary(card_facts(report, {"seed": 1}))
    assert "method magnitude baseline, seed 1" in lines[0], lines
    assert "teacher: /nowhere/runs/ship/sst2-teacher/checkpoint (recorded on the machine that trained this " \
           "checkpoint; no such path on this machine)" in lines
    here = tmp_path / "teacher"
    here.mkdir()
    lines = card_summary(card_facts({**report, "method": "kasp", "teacher": {"path": str(here)}}, {"seed": 1}))
    assert "method KASP, seed 1" in lines[0] and f"teacher: {here}" in lines
