"""The shipped models (kasp/models/shipped.py, scripts/pack_shipped.py): packed from finished runs, unpacked into
a run store on first use, and what the app shows for them measured on exactly the shipped weights."""

from __future__ import annotations

import json

import pytest

from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir
from tests.helpers import load_script



def _pack_script():
    return load_script("pack_shipped")


def test_the_shipped_models_are_small_and_intact():
    """What ships in assets/models: under 40 MB in all (issue 25), no file of 20 MB or more (the repository's
    limit), each weights file as the manifest hashed it, and the manifest lists every part of each export."""
    from kasp.models.export import weight_files
    from kasp.models.shipped import _sha256, manifest, models_dir

    runs = manifest()["runs"]
    assert runs, "no model ships: run scripts/train_shipped.sh and scripts/pack_shipped.py"
    files = [f for f in models_dir().rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) < 40e6
    assert max(f.stat().st_size for f in files) < 20e6, max(files, key=lambda f: f.stat().st_size)
    for r in runs:
        compact = models_dir() / r["task"] / r["name"] / "compact"
        assert [f.name for f in weight_files(compact)] == list(r["files"]), r["name"]
        for name, sha in r["files"].items():
            assert _sha256(compact / name) == sha, (r["name"], name)


@pytest.fixture(scope="module")
def packed(tmp_path_factory, tiny_pretrained):
    """A tiny teacher and a tiny KASP student, trained with --freeze-word-embeddings and packed like the real ones."""
    store = tmp_path_factory.mktemp("ship")
    common = ["--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "6", "--max-train-samples", "128",
              "--max-eval-samples", "32", "--runs-dir", str(store), "--no-progress", "--freeze-word-embeddings"]
    assert main(["finetune", *common, "--out", str(store / "sst2-teacher")]) == 0
    assert main(["prune", *common, "--sparsity", "0.9", "--pruning-events", "3", "--teacher", str(store / "sst2-teacher"),
                 "--out", str(store / "sst2-kasp-90")]) == 0
    out = tmp_path_factory.mktemp("assets") / "models"
    mod = _pack_script()
    import sys

    argv, sys.argv = sys.argv, ["pack_shipped.py", "--store", str(store), "--out", str(out)]
    try:
        assert mod.main() == 0
    finally:
        sys.argv = argv
    return out


@pytest.mark.slow
def test_pack_writes_runs_manifest_and_scores_of_the_packed_weights(packed):
    m = json.loads((packed / "manifest.json").read_text())
    assert [(r["name"], r["teacher"]) for r in m["runs"]] == [("teacher", None), ("kasp-90", "teacher")]
    info = json.loads((packed / "sst2" / "kasp-90" / "shipped.json").read_text())
    assert info["dev"]["n"] == 872 and 0.0 <= info["dev"]["accuracy"] <= 1.0  # the whole dev set, not the run's 32
    assert list(m["runs"][1]["files"]) == ["sparse.safetensors"]  # a tiny model fits one file
    assert (packed / "sst2" / "kasp-90" / "compact" / "sparse.safetensors").stat().st_size == info["bytes"]
    ret = json.loads((packed / "sst2" / "kasp-90" / "retention.json").read_text())
    assert ret["samples_requested"] == 128 and 0.0 <= ret["mean_similarity"] <= 1.0
    assert not (packed / "sst2" / "teacher" / "retention.json").exists()
    from kasp.models.shipped import models_dir

    assert models_dir() != packed  # packing left the installed models' folder as it was


@pytest.mark.slow
def test_shipped_store_unpacks_runs_that_score_as_shipped(packed, tmp_path, monkeypatch):
    import kasp.models.shipped as shipped
    from kasp.training.evaluate import evaluate_checkpoint

    monkeypatch.setattr(shipped, "models_dir", lambda: packed)
    store = shipped.shipped_store(tmp_path / "cache")
    student = RunDir(store / "shipped-sst2-kasp-90")
    teacher = RunDir(store / "shipped-sst2-teacher")
    assert student.state() == "done" and teacher.state() == "done"
    assert student.report()["teacher"]["path"] == str(teacher.path)  # pointed at the unpacked teacher
    info = shipped.shipped_info(student.path)
    res = evaluate_checkpoint(str(student.path), "sst2", max_seq_length=info["max_seq_length"])
    assert res["metrics"]["accuracy"] == pytest.approx(info["dev"]["accuracy"], abs=1.5 / 872)
    assert shipped.shipped_store(tmp_path / "cache") == store  # second call: already there
    from kasp.ui.tables import retention_rows

    rows, missing = retention_rows([student], 128)  # shipped measures, no button to measure them again
    assert not missing and list(rows["source"]) == ["shipped model"]
    # a damaged checkout is named, with the fix
    f = packed / "sst2" / "kasp-90" / "compact" / "sparse.safetensors"
    data = f.read_bytes()
    try:
        f.write_bytes(data[:-8] + b"XXXXXXXX")
        with pytest.raises(KaspError, match="differs from the one KASP shipped.*git checkout"):
            shipped.shipped_store(tmp_path / "other-cache")
    finally:
        f.write_bytes(data)


@pytest.mark.slow
def test_pack_refuses_a_run_with_trained_word_embeddings(tiny_store, tmp_path):
    mod = _pack_script()
    with pytest.raises(SystemExit, match="freeze-word-embeddings"):
        mod.pack(RunDir(tiny_store / "teacher"), "sst2", "teacher", tmp_path, None)


def test_a_shipped_students_card_names_the_unpacked_teacher(tmp_path):
    """The shipped students' model card and config.json's ``kasp`` block were written on the training machine and
    name its teacher path (/work/main/runs/ship/...); unpacked, they name the unpacked teacher run, as the report
    and recipe do, so the Inspect page's "What this checkpoint says about itself" points at a folder that exists."""
    import shutil

    from kasp.models.shipped import _point_at_teacher, manifest, models_dir, run_id
    from kasp.training.card import card_summary, read_card_facts

    students = [r for r in manifest()["runs"] if r.get("teacher")]
    assert students, "no shipped student"
    r = students[0]
    src = models_dir() / r["task"] / r["name"]
    run = tmp_path / run_id(r["task"], r["name"])
    (run / "checkpoint").mkdir(parents=True)
    for f in ("report.json", "config.json"):
        shutil.copy2(src / f, run / f)
    for f in ("config.json", "README.md"):
        shutil.copy2(src / "compact" / f, run / "checkpoint" / f)
    before = json.loads((run / "checkpoint" / "config.json").read_text())["kasp"]["teacher"]["path"]
    assert not (tmp_path / before).exists()  # the training machine's path
    teacher = tmp_path / run_id(r["task"], r["teacher"])
    (teacher / "checkpoint").mkdir(parents=True)
    _point_at_teacher(run, teacher)
    cfg = json.loads((run / "checkpoint" / "config.json").read_text())
    assert cfg["kasp"]["teacher"]["path"] == str(teacher / "checkpoint")
    assert cfg["kasp"]["recipe"]["teacher"] == str(teacher)
    assert cfg["model_type"] == "bert" and cfg["kasp_task"] == r["task"]  # the rest of config.json kept
    card = (run / "checkpoint" / "README.md").read_text()
    assert before not in card and f"`{teacher / 'checkpoint'}`" in card
    lines = card_summary(read_card_facts(cfg))
    assert f"teacher: {teacher / 'checkpoint'}" in lines
    assert json.loads((run / "report.json").read_text())["teacher"]["path"] == str(teacher)
