"""--augment: TinyBERT-style word replacement and unlabelled GLUE sentences, seeded and cached."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from kasp.training.augment import TINYBERT_P, WordReplacer, augmented_frame, glue_sentences, neighbours, word_augment
from kasp.spec.config import make_config


@pytest.fixture(scope="module")
def replacer():
    from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer

    path = default_model_path()
    emb = load_classifier(path, num_labels=2).get_input_embeddings().weight
    return WordReplacer(load_tokenizer(path), emb)


@pytest.fixture(scope="module")
def sst2_sample():
    from kasp.data.glue import load_split

    return load_split("sst2", "train").head(150).reset_index(drop=True)


def test_neighbours_are_nearest_by_cosine():
    vocab = {"cat": 0, "dog": 1, "car": 2, "##s": 3, "van": 4}
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0], [0.1, 0.9]])
    nb = neighbours(emb, vocab, ["cat", "car"], k=2)
    assert nb == {"cat": ["dog", "van"], "car": ["van", "dog"]}  # never itself, never a "##" piece


def test_same_seed_same_copies_other_seed_other_copies(replacer, sst2_sample):
    a = word_augment(sst2_sample, replacer, 3, seed=1)
    b = word_augment(sst2_sample, replacer, 3, seed=1)
    c = word_augment(sst2_sample, replacer, 3, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["text_a"].equals(c["text_a"].reindex(a.index))
    assert 1.5 * len(sst2_sample) < len(a) <= 3 * len(sst2_sample)  # up to N distinct copies per example


def test_replacement_rate_and_labels(replacer, sst2_sample):
    out = word_augment(sst2_sample, replacer, 4, seed=0)
    changed = eligible = 0
    for new, row in zip(out["text_a"], out["source_row"]):
        orig = [w for w, _ in replacer.words(sst2_sample["text_a"][row])]
        copy = [w for w, _ in replacer.words(new)]
        assert len(orig) == len(copy)  # whole words replace whole words
        for o, c in zip(orig, copy):
            if replacer.eligible(o) and replacer.candidates.get(o.lower()):
                eligible += 1
                changed += o != c
            else:
                assert o == c  # stop words, punctuation and multi-piece words are never touched
    rate = changed / eligible
    # p_t = 0.4 per eligible word; dropping unchanged and repeated tries lifts it slightly
    assert TINYBERT_P - 0.05 < rate < TINYBERT_P + 0.12, rate
    # an augmented copy keeps the gold label of its example
    assert (out["label"].to_numpy() == sst2_sample["label"].to_numpy()[out["source_row"].to_numpy()]).all()


def test_pairs_augment_each_sentence_separately(replacer):
    from kasp.data.glue import load_split

    df = load_split("rte", "train").head(20).reset_index(drop=True)
    out = word_augment(df, replacer, 2, seed=0)
    for a, b, row in zip(out["text_a"], out["text_b"], out["source_row"]):
        assert (a == df["text_a"][row]) != (b == df["text_b"][row])  # exactly one side changed


def test_cache_is_built_once_and_keyed(tmp_path, monkeypatch, tiny_pretrained):
    from kasp.models.modeling import load_tokenizer

    monkeypatch.setenv("KASP_CACHE_DIR", str(tmp_path))
    tok = load_tokenizer(str(tiny_pretrained))
    cfg = make_config("prune", "kasp", "sst2", sparsity=0.5, max_train_samples=40, augment=2)
    first, path, cached = augmented_frame(cfg, tok, str(tiny_pretrained))
    assert not cached and path.is_file() and path.suffix == ".jsonl" and path.parent == tmp_path / "augment"
    again, path2, cached2 = augmented_frame(cfg, tok, str(tiny_pretrained))
    assert cached2 and path2 == path
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again.reset_index(drop=True), check_dtype=False)
    other = make_config("prune", "kasp", "sst2", sparsity=0.5, max_train_samples=40, augment=3)
    assert augmented_frame(other, tok, str(tiny_pretrained))[1] != path
    assert len(list((tmp_path / "augment").glob("*.jsonl"))) == 2


def test_glue_source_is_unlabelled_other_task_text():
    single = glue_sentences("sst2", 300, seed=0)
    assert len(single) == 300 and set(single["source_task"]) <= {"cola", "mrpc", "stsb", "rte", "wnli"}
    assert single["text_b"].isna().all() and (single["label"] == -1).all()
    pair = glue_sentences("stsb", 100, seed=0)
    assert "stsb" not in set(pair["source_task"]) and pair["text_b"].notna().all()
    assert pair["label"].isna().all()  # regression: no gold score
    pd.testing.assert_frame_equal(pair, glue_sentences("stsb", 100, seed=0))


def test_glue_source_needs_distillation_only():
    with pytest.raises(ValueError, match="teacher only"):
        make_config("prune", "magnitude", "sst2", sparsity=0.5, augment=2, augment_source="glue")
    with pytest.raises(ValueError, match="teacher only"):
        make_config("finetune", task="sst2", augment=2, augment_source="glue")
    make_config("prune", "kasp", "sst2", sparsity=0.5, augment=2, augment_source="glue")


def test_regression_rows_without_gold_score_learn_the_teacher():
    from transformers import BertConfig, BertForSequenceClassification

    from kasp.core.distill import KaspLoss

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     num_labels=1)
    teacher, student = BertForSequenceClassification(cfg).eval(), BertForSequenceClassification(cfg).eval()
    loss = KaspLoss(student, teacher, attention_weight=0, hidden_weight=0, regression=True)
    ids = torch.tensor([[2, 5, 7], [2, 6, 8]])
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([float("nan"), 3.0])}
    _, terms, out = loss(student, batch)
    with torch.no_grad():
        t = teacher(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.squeeze(-1)
    s = out.logits.squeeze(-1)
    expected = ((s[0] - t[0]) ** 2 + (s[1] - 3.0) ** 2).detach() / 2  # teacher's prediction for row 0, gold for row 1
    assert math.isfinite(float(terms["prediction"].detach()))
    assert float(terms["prediction"].detach()) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.slow
def test_prune_run_with_augmentation(tiny_store, tiny_pretrained, tmp_path, monkeypatch):
    from kasp.cli import main
    from kasp.ground.runs import RunDir

    monkeypatch.setenv("KASP_CACHE_DIR", str(tmp_path / "cache"))
    # the SST-2 teacher stands in for a CoLA one: KASP refuses a teacher whose class names are another
    # task's (negative/positive), so this copy gets generic names (LABEL_k = class k)
    import json
    import shutil

    shutil.copytree(tiny_store / "teacher", tmp_path / "teacher")
    cfg_path = tmp_path / "teacher" / "checkpoint" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    cfg_path.write_text(json.dumps(cfg))
    common = ["prune", "--task", "cola", "--teacher", str(tmp_path / "teacher"), "--model", str(tiny_pretrained),
              "--sparsity", "0.5", "--max-train-samples",
              "64", "--max-eval-samples", "16", "--epochs", "1", "--eval-every", "0", "--batch-size", "16",
              "--runs-dir", str(tiny_store), "--no-progress"]
    assert main([*common, "--augment", "2", "--out", str(tiny_store / "aug2")]) == 0
    rep = RunDir(tiny_store / "aug2").report()
    assert 64 * 2 < rep["train_examples"] <= 64 * 3
    assert rep["steps"] == 4  # --epochs counts passes over the task's own 64 examples
    prov = RunDir(tiny_store / "aug2").config()["provenance"]
    assert prov["augmented_data"] == {"copies": 2, "source": "words"}
    assert main([*common, "--augment", "1", "--augment-source", "glue", "--out", str(tiny_store / "glue1")]) == 0
    assert RunDir(tiny_store / "glue1").report()["train_examples"] == 128
