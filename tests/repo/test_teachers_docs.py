"""The table of teachers trained until they stop improving (docs/results.md) is what scripts/teachers.py makes of
bench/teachers/*.json, and a record keeps what the choice of epoch rests on."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, load_script


def test_the_teachers_table_is_the_teacher_files():
    t = load_script("teachers")
    doc = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    a, b = doc.index(t.START), doc.index(t.END) + len(t.END)
    assert doc[a:b] == t.block(ROOT / "bench" / "teachers"), (
        "docs/results.md's teachers table is stale: run .venv/bin/python scripts/teachers.py table --write docs/results.md")


def test_a_row_quotes_the_kept_epoch_and_tells_dev_chosen_from_slice_chosen(tmp_path):
    """The kept point is the slice's choice; the row also shows the last epoch and the best dev of any epoch, and
    the gap to the published figure."""
    t = load_script("teachers")
    history = [{"step": 100, "epoch": 1, "dev": 0.70, "selection": 0.71},
               {"step": 200, "epoch": 2, "dev": 0.80, "selection": 0.79},
               {"step": 300, "epoch": 3, "dev": 0.84, "selection": 0.75}]
    rec = {"task": "rte", "main_metric": "accuracy", "metrics": {"accuracy": 0.80}, "selection_metrics": {"accuracy": 0.79},
           "selected": {"step": 200, "epoch": 2.0, "of_steps": 300}, "steps": 300, "epochs": 3.0,
           "wall_seconds": 600.0, "history": history}
    (tmp_path / "rte.json").write_text(json.dumps(rec))
    rows = t.rows(tmp_path)
    assert len(rows) == 3
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    assert cells == ["RTE (accuracy)", "—", "3", "2 (200)", "79.00", "80.00", "84.00", "84.00", "68.8", "-11.2", "—", "10.0"]
    rec["inputs_cut"] = {"max_seq_length": 128, "train": 0.1225, "dev": 0.0}
    (tmp_path / "rte.json").write_text(json.dumps(rec))
    assert "| 12.2 % / 0.0 % (over 128 tokens) |" in t.rows(tmp_path)[2]
    # a variant (another learning rate) is a row of its own, after the plain teacher of its task
    (tmp_path / "rte-lr3e-5.json").write_text(json.dumps(rec | {"recipe": {"lr": 3e-5}, "metrics": {"accuracy": 0.6}}))
    (tmp_path / "mrpc.json").write_text(json.dumps(rec | {"task": "mrpc", "main_metric": "f1", "metrics": {"f1": 0.8},
                                                           "selection_metrics": {"f1": 0.8}}))
    rows = t.rows(tmp_path)
    assert [r.split("|")[1:3] for r in rows[2:]] == [[" MRPC (f1) ", " — "], [" RTE (accuracy) ", " — "],
                                                     [" RTE (accuracy) ", " 3e-05 "]]
    assert "| 60.00 |" in rows[4]
    assert "No teacher recorded yet" in t.block(tmp_path / "empty")


@pytest.mark.slow
def test_record_keeps_every_epochs_scores_and_the_kept_step(tiny_pretrained, tmp_path):
    from kasp.cli import main

    t = load_script("teachers")
    assert main(["finetune", "--task", "rte", "--model", str(tiny_pretrained), "--max-steps", "6", "--max-train-samples", "96",
                 "--max-eval-samples", "32", "--holdout", "40", "--eval-every", "3", "--select-best", "--no-progress",
                 "--max-seq-length", "32", "--runs-dir", str(tmp_path / "store"), "--out", str(tmp_path / "r")]) == 0
    d = t.record(tmp_path / "r", tmp_path / "rte.json")
    assert json.loads((tmp_path / "rte.json").read_text()) == json.loads(json.dumps(d))
    assert [h["step"] for h in d["history"]] == [3, 6] and [h["epoch"] for h in d["history"]] == [1.0, 2.0]
    kept = next(h for h in d["history"] if h["step"] == d["selected"]["step"])
    assert d["metrics"]["accuracy"] == kept["dev"] and d["selection_metrics"]["accuracy"] == kept["selection"]
    assert d["holdout_examples"] == 40 and d["recipe"]["select_best"] is True
    # the length cut, measured with the run's tokenizer: at 32 tokens some RTE pairs are cut, at 100,000 none
    cut = d["inputs_cut"]
    assert cut["max_seq_length"] == 32 and 0 < cut["dev"] < 1 and 0 < cut["train"] < 1
    assert t.inputs_cut("rte", str(tiny_pretrained), 100_000) == {"max_seq_length": 100_000, "train": 0.0, "dev": 0.0}
    with pytest.raises(SystemExit, match="no finished run"):
        t.record(tmp_path / "missing", tmp_path / "x.json")
