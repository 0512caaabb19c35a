"""Predictions side by side: the table for a tiny live run against `kasp evaluate` and plain transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import open_page
from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.analysis.predict import (class_names, dev_example, disagreements, gold_label, logits_for, prediction_runs,
                          predict_texts)
from kasp.data.glue import TASKS, get_task

SENTENCE = "a gorgeous , witty , seductive movie ."


@pytest.fixture(scope="module")
def pred_store(tmp_path_factory, tiny_store, tiny_pretrained) -> Path:
    store = tmp_path_factory.mktemp("predstore")
    shutil.copytree(tiny_store / "teacher", store / "teacher")
    assert main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "6", "--pruning-events", "3",
                 "--max-train-samples", "96", "--max-eval-samples", "32", "--eval-every", "0", "--log-every", "3",
                 "--sparsity", "0.8", "--method", "magnitude", "--runs-dir", str(store), "--no-progress",
                 "--out", str(store / "mag80")]) == 0
    # a student that surely disagrees: mag80 with its classifier negated (argmax flips on every example)
    from transformers import AutoModelForSequenceClassification

    shutil.copytree(store / "mag80", store / "flipped")
    ckpt = store / "flipped" / "checkpoint"
    model = AutoModelForSequenceClassification.from_pretrained(ckpt)
    model.classifier.weight.data.neg_()
    model.classifier.bias.data.neg_()
    model.save_pretrained(ckpt)
    return store


@pytest.mark.slow
def test_table_matches_kasp_evaluate_and_transformers(pred_store, tmp_path, capsys):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    student = pred_store / "mag80"
    table = predict_texts({"teacher": str(pred_store / "teacher"), "student": str(student)}, "sst2", SENTENCE,
                          teacher="teacher")
    assert list(table["model"]) == ["teacher", "student"]
    assert {"prediction", "P(negative)", "P(positive)", "agrees with teacher", "gold"} <= set(table.columns)
    row = table[table["model"] == "student"].iloc[0]
    # kasp evaluate on a one-line TSV labelled with the table's prediction scores 100 %, the other label 0 %
    for label, expected in ((class_names(get_task("sst2")).index(row["prediction"]), 1.0),
                            (1 - class_names(get_task("sst2")).index(row["prediction"]), 0.0)):
        tsv = tmp_path / f"one{label}.tsv"
        tsv.write_text(f"sentence\tlabel\n{SENTENCE}\t{label}\n")
        assert main(["evaluate", str(student), "--data", str(tsv), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["metrics"]["accuracy"] == expected
    # the probabilities are the plain transformers model's softmax
    ckpt = student / "checkpoint"
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForSequenceClassification.from_pretrained(ckpt).eval()
    with torch.no_grad():
        p = torch.softmax(model(**tok(SENTENCE, return_tensors="pt")).logits, -1)[0]
    assert row["P(negative)"] == pytest.approx(float(p[0]), abs=1e-5)
    assert row["P(positive)"] == pytest.approx(float(p[1]), abs=1e-5)
    assert table.iloc[0]["agrees with teacher"]  # the teacher agrees with itself
    assert table["gold"].iloc[0] == "positive"  # this sentence is in the SST-2 dev set, labelled 1


def test_gold_only_for_dev_examples_and_pairs():
    a, b = dev_example("rte", 3)
    assert b and gold_label("rte", a, b) is not None
    assert gold_label("rte", a, "something else entirely") is None
    assert gold_label("sst2", "not a sentence of the dev set at all, surely") is None


@pytest.mark.slow
def test_disagreements_really_disagree(pred_store):
    t, s = str(pred_store / "teacher"), str(pred_store / "mag80")
    idx = disagreements(t, [s, str(pred_store / "flipped")], "sst2", n=64)
    task = get_task("sst2")
    from kasp.data.glue import load_split

    dev = load_split(task, "dev").head(64)
    ref = logits_for(t, task, dev).argmax(-1)
    differ = (logits_for(s, task, dev).argmax(-1) != ref) | (logits_for(str(pred_store / "flipped"), task, dev).argmax(-1) != ref)
    assert differ.any() and sorted(idx) == list(np.flatnonzero(differ))


@pytest.mark.slow
def test_bad_input_errors(pred_store):
    with pytest.raises(KaspError, match="type a sentence"):
        predict_texts({"t": str(pred_store / "teacher")}, "sst2", "  ")
    with pytest.raises(KaspError, match="second one"):
        predict_texts({"t": str(pred_store / "teacher")}, "rte", "A man sleeps.")
    with pytest.raises(KaspError, match="needs 1"):
        predict_texts({"t": str(pred_store / "teacher")}, "stsb", "A man sleeps.", "A man is asleep.")


@pytest.mark.slow
def test_prediction_runs_lists_teacher_and_student(pred_store):
    runs = prediction_runs("sst2", pred_store)
    assert [t["id"] for t in runs["teachers"]] == ["teacher"]
    assert [s["id"] for s in runs["students"]] == ["mag80", "flipped"]
    assert runs["students"][0]["teacher"].startswith(str(pred_store / "teacher"))
    assert runs["students"][0]["short"] == "magnitude baseline, 80 %" and runs["teachers"][0]["short"] == "dense teacher"


def _page(store, monkeypatch, shipped: bool = False):
    """The Predictions page on ``store``; without the models that ship with KASP unless ``shipped`` (these tests are
    about the store's own runs; tests/ui/test_shipped_pages.py covers the shipped ones)."""
    if not shipped:
        import kasp.ui.models

        monkeypatch.setattr(kasp.ui.models, "shipped_store", lambda: None)
    return open_page("predict.py", store, monkeypatch, timeout=120)


@pytest.mark.slow
def test_predict_page_table_and_disagreement_button(pred_store, monkeypatch):
    at = _page(pred_store, monkeypatch)
    df = at.dataframe[0].value
    # the students read the same short ("magnitude baseline, 80 %"): each row is named by its full label, id first
    assert list(df["model"]) == ["dense teacher", "mag80 (magnitude baseline, 80 %)",
                                 "flipped (magnitude baseline, 80 %)"]
    first = at.session_state["predict_a_sst2"]
    assert first == dev_example("sst2", 0)[0] and df["gold"].iloc[0] == "positive"  # dev example 0 is labelled 1
    at.button(key="predict_pick_btn").click().run()
    assert not at.exception
    picked = at.session_state["predict_a_sst2"]
    df = at.dataframe[0].value
    assert not df[df["model"] != "dense teacher"]["agrees with teacher"].all()
    assert df["gold"].iloc[0] is not None  # a dev example
    assert any("disagreement 1 of" in c.value for c in at.caption)
    at.button(key="predict_pick_btn").click().run()
    assert at.session_state["predict_a_sst2"] != picked  # the next disagreement


@pytest.mark.slow
def test_predict_page_without_runs_says_so(tmp_path, monkeypatch):
    at = _page(tmp_path, monkeypatch)
    text = " ".join(i.value for i in at.info)
    assert "No finished SST-2 run with a checkpoint" in text and "cannot predict here" in text


@pytest.mark.slow
def test_predict_page_says_when_a_short_tokenizer_cuts_the_sentence(pred_store, tmp_path, monkeypatch):
    """A student whose tokenizer_config.json says model_max_length 8: its prediction is of the first 8 tokens,
    and the page says so, naming the student and the limit (issue 26, every cut is said)."""
    import json

    store = tmp_path / "store"
    shutil.copytree(pred_store, store)
    cfg_path = store / "mag80" / "checkpoint" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = 8
    cfg_path.write_text(json.dumps(cfg))
    at = _page(store, monkeypatch)
    warnings = [w.value for w in at.warning if "inputs cut at 8 tokens" in w.value]
    assert len(warnings) == 1 and warnings[0].startswith("mag80") and "model_max_length (8)" in warnings[0]
    assert not [w for w in at.warning if w.value.startswith(("dense teacher", "flipped"))]


def test_one_class_name_table():
    """The Predictions table names the classes from the task table (kasp.spec.tasks), written with spaces:
    the same names the checkpoints carry in id2label (MRPC: "equivalent", not "paraphrase")."""
    for task in TASKS.values():
        if task.is_regression:
            assert class_names(task) == ["0"]
            continue
        assert class_names(task) == [n.replace("_", " ") for n in task.class_names]
    assert class_names(get_task("mrpc")) == ["not equivalent", "equivalent"]
    assert class_names(get_task("rte")) == ["entailment", "not entailment"]
