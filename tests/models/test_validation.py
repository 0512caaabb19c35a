"""Issue 11, "never a wrong number": every damaged checkpoint gives the right score or a one-line KaspError.

Each test stands for a kind: fitness for the task (tokenizer, head, labels, finite weights, shapes),
inputs longer than the position table, every safetensors dtype in the size report, prune leftovers,
safe export writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from kasp.cli import main
from kasp.ground.errors import KaspError

from tests.helpers import ROOT, make_tiny_checkpoint

N = 32  # RTE dev examples scored per case


def _rte_model(path: Path) -> Path:
    """A tiny RTE classifier whose head leans hard towards 'entailment' (class 0), so that scoring with the
    classes swapped gives a clearly different accuracy (1 - a instead of a)."""
    from transformers import AutoModelForSequenceClassification

    d = make_tiny_checkpoint(path, seed=5)
    model = AutoModelForSequenceClassification.from_pretrained(d)
    with torch.no_grad():
        model.classifier.weight.mul_(0.01)
        model.classifier.bias.copy_(torch.tensor([3.0, 0.0]))
    model.config.id2label = {0: "entailment", 1: "not_entailment"}
    model.config.label2id = {"entailment": 0, "not_entailment": 1}
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def rte(tmp_path_factory) -> Path:
    return _rte_model(tmp_path_factory.mktemp("val") / "rte")


@pytest.fixture(scope="module")
def reference(rte) -> float:
    """The intact model's accuracy, computed here without KASP's evaluation code."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kasp.data.glue import load_split

    df = load_split("rte", "dev").head(N)
    tok = AutoTokenizer.from_pretrained(rte)
    model = AutoModelForSequenceClassification.from_pretrained(rte).eval()
    enc = tok(df["text_a"].tolist(), df["text_b"].tolist(), truncation=True, max_length=128, padding=True,
              return_tensors="pt")
    with torch.no_grad():
        pred = model(**enc).logits.argmax(-1)
    acc = float((pred == torch.tensor(df["label"].to_numpy())).double().mean())
    assert abs(acc - 0.5) > 0.05  # swapped classes would give a visibly different number
    return acc


# --- the family of damaged checkpoints ------------------------------------------------------------

def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(d: Path, **changes) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(changes)
    (d / "config.json").write_text(json.dumps(cfg))


def _edit_state(d: Path, fn) -> None:
    f = d / "model.safetensors"
    state = load_file(str(f))
    fn(state)
    save_file(state, str(f), metadata={"format": "pt"})


Q = "bert.encoder.layer.0.attention.self.query.weight"


def _no_tokenizer(d):
    for n in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (d / n).unlink(missing_ok=True)


def _base_model(d):
    shutil.rmtree(d)
    make_tiny_checkpoint(d, num_labels=None, seed=5)


def _swapped_labels(d):  # the same model with its outputs in the other order, named so
    def swap(state):
        state["classifier.weight"] = state["classifier.weight"].flip(0).contiguous()
        state["classifier.bias"] = state["classifier.bias"].flip(0).contiguous()
    _edit_state(d, swap)
    _edit_config(d, id2label={"0": "not_entailment", "1": "entailment"}, label2id={"not_entailment": 0, "entailment": 1})


def _generic_labels(d):
    _edit_config(d, id2label={"0": "LABEL_0", "1": "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})


def _unknown_labels(d):
    _edit_config(d, id2label={"0": "yes", "1": "no"}, label2id={"yes": 0, "no": 1})


def _nan_weight(d):
    _edit_state(d, lambda s: s[Q].__setitem__((0, 0), float("nan")))


def _inf_weight(d):
    _edit_state(d, lambda s: s["bert.encoder.layer.1.output.dense.weight"].__setitem__((3, 1), float("inf")))


def _tokenizer_too_large(d):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(d)
    tok.add_tokens([f"newtoken{i}" for i in range(5)])  # embeddings not resized
    tok.save_pretrained(d)


def _empty_vocab(d):
    from transformers import BertTokenizerFast

    _no_tokenizer(d)
    (d / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    BertTokenizerFast(vocab_file=str(d / "vocab.txt")).save_pretrained(d)


def _hidden_mismatch(d):
    _edit_config(d, hidden_size=96, intermediate_size=192)


def _layers_mismatch(d):
    _edit_config(d, num_hidden_layers=3)


def _fewer_layers_in_config(d):  # transformers would load layer 0 and silently drop layer 1
    _edit_config(d, num_hidden_layers=1)


def _prune_leftovers(d):
    def hooks(state):
        w = state.pop(Q)
        state[Q[:-len("weight")] + "weight_orig"] = w
        state[Q[:-len("weight")] + "weight_mask"] = (w.abs() > w.abs().median()).float()
    _edit_state(d, hooks)


def _three_outputs(d):
    def grow(state):
        state["classifier.weight"] = torch.cat([state["classifier.weight"], state["classifier.weight"][:1]])
        state["classifier.bias"] = torch.cat([state["classifier.bias"], state["classifier.bias"][:1]])
    _edit_state(d, grow)
    _edit_config(d, id2label={"0": "a", "1": "b", "2": "c"}, label2id={"a": 0, "b": 1, "c": 2})


def _truncated(d):
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:5000])


def _extra_file(d):  # harmless: a README and an unrelated json
    (d / "README.md").write_text("notes")
    (d / "training_args.json").write_text("{}")


#: damage -> None (must give exactly the intact model's score) or a fragment of the one-line error
FAMILY = {
    "no tokenizer files": (_no_tokenizer, "no tokenizer files"),
    "base model, no head": (_base_model, "no trained classification head"),
    "labels named in the other order": (_swapped_labels, None),
    "generic LABEL_k names": (_generic_labels, None),
    "unknown label names": (_unknown_labels, "do not match task rte"),
    "NaN in a weight": (_nan_weight, "non-finite"),
    "inf in a weight": (_inf_weight, "non-finite"),
    "tokenizer larger than the embeddings": (_tokenizer_too_large, "embedding matrix has only"),
    "tokenizer with an empty vocabulary": (_empty_vocab, "[UNK]"),
    "config hidden 96, weights 64": (_hidden_mismatch, "disagree"),
    "config 3 layers, weights 2": (_layers_mismatch, "disagree"),
    "config 1 layer, weights 2": (_fewer_layers_in_config, "num_hidden_layers 1 but the weights have 2"),
    "torch.nn.utils.prune leftovers": (_prune_leftovers, "prune.remove"),
    "3 outputs for a 2-class task": (_three_outputs, "needs 2"),
    "truncated weights file": (_truncated, "truncated or corrupt"),
    "extra unrelated files": (_extra_file, None),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FAMILY))
def test_damaged_checkpoint_gives_the_right_score_or_a_clear_error(case, rte, reference, tmp_path, capsys):
    damage, expected = FAMILY[case]
    d = _copy(rte, tmp_path / "ckpt")
    damage(d)
    capsys.readouterr()
    rc = main(["evaluate", str(d), "--task", "rte", "--max-eval-samples", str(N), "--json"])
    out, err = capsys.readouterr()
    if rc == 0:
        score = json.loads(out)["metrics"]["accuracy"]
        assert expected is None, f"{case}: scored {score} instead of refusing"
        assert score == pytest.approx(reference, abs=1e-12), case  # never a number from a broken model
    else:
        assert rc == 2 and err.startswith("kasp: error: ") and err.count("\n") == 1, err  # one line
        assert expected is not None, f"{case}: refused a model that can be scored: {err}"
        assert expected in err, err


def test_swapped_labels_note_and_engine_agree(rte, reference, tmp_path):
    from kasp.training.evaluate import evaluate_checkpoint, evaluation_notes

    d = _copy(rte, tmp_path / "swapped")
    _swapped_labels(d)
    res = evaluate_checkpoint(str(d), "rte", max_examples=N)
    assert res["metrics"]["accuracy"] == pytest.approx(reference) and res["label_order"] == [1, 0]
    assert "entailment = output 1" in " ".join(evaluation_notes(res))


def test_non_finite_logits_are_refused():
    from kasp.data.glue import get_task
    from kasp.training.evaluate import score_logits

    with pytest.raises(KaspError, match="non-finite outputs"):
        score_logits(get_task("sst2"), torch.tensor([[0.1, float("nan")], [1.0, 0.0]]), torch.tensor([0, 0]))


def test_base_model_refused_as_teacher_and_finetune_without_tokenizer(tmp_path, tiny_pretrained, capsys):
    rc = main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--teacher", str(tiny_pretrained),
               "--sparsity", "0.5", "--max-steps", "2", "--runs-dir", str(tmp_path / "s"), "--no-progress"])
    assert rc == 2 and "no trained classification head" in capsys.readouterr().err
    d = _copy(tiny_pretrained, tmp_path / "notok")
    _no_tokenizer(d)
    rc = main(["finetune", "--task", "sst2", "--model", str(d), "--max-steps", "2", "--runs-dir", str(tmp_path / "s"),
               "--out", str(tmp_path / "s" / "ft"), "--no-progress"])
    assert rc == 2 and "no tokenizer files" in capsys.readouterr().err
    assert json.loads((tmp_path / "s" / "ft" / "status.json").read_text())["state"] == "failed"
    assert not (tmp_path / "s" / "ft" / "checkpoint").exists()


# --- inputs longer than the position table ---------------------------------------------------------

@pytest.fixture(scope="module")
def short_positions(tmp_path_factory) -> Path:
    """A tiny SST-2 classifier whose position table has only 12 rows (shorter than most dev sentences)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kasp.models.modeling import default_model_path

    d = tmp_path_factory.mktemp("short") / "ckpt"
    tok = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(1)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=12, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def test_long_texts_are_cut_at_the_models_limit(short_positions, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kasp.data.glue import load_split
    from kasp.analysis.retention import compare, load_for_attention, sentence_attention

    assert main(["evaluate", str(short_positions), "--task", "sst2", "--max-eval-samples", "40", "--json",
                 "--max-seq-length", "128"]) == 0
    got = json.loads(capsys.readouterr().out)
    df = load_split("sst2", "dev").head(40)
    tok = AutoTokenizer.from_pretrained(short_positions)
    model = AutoModelForSequenceClassification.from_pretrained(short_positions).eval()
    enc = tok(df["text_a"].tolist(), truncation=True, max_length=12, padding=True, return_tensors="pt")
    with torch.no_grad():
        acc = float((model(**enc).logits.argmax(-1) == torch.tensor(df["label"].to_numpy())).double().mean())
    assert got["metrics"]["accuracy"] == pytest.approx(acc) and got["max_length"] == 12
    model, tok = load_for_attention(str(short_positions))
    tokens, maps = sentence_attention(model, tok, "a long sentence " * 20, max_seq_length=64)
    assert len(tokens) == 12 and maps[0].shape[-1] == 12
    r = compare(str(short_positions), str(short_positions), "sst2", samples=8, max_seq_length=128)
    assert r.agreement == 1.0


@pytest.mark.slow
def test_finetune_cuts_at_the_position_table(short_positions, tmp_path, capsys):
    rc = main(["finetune", "--task", "sst2", "--model", str(short_positions), "--max-steps", "2",
               "--max-train-samples", "32", "--max-eval-samples", "16", "--max-seq-length", "64",
               "--runs-dir", str(tmp_path), "--out", str(tmp_path / "ft"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ft" / "status.json").read_text())["state"] == "done"


# --- every safetensors dtype in the size report; bfloat16 end to end --------------------------------

def test_bfloat16_checkpoint_inspects_exports_and_scores(rte, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    from kasp.analysis.inspection import size_report
    from kasp.models.export import export_sparse, load_sparse

    d = tmp_path / "bf16"
    model = AutoModelForSequenceClassification.from_pretrained(rte)
    from kasp.core.masks import MagnitudePruner

    MagnitudePruner(model, 0.75, total_steps=1).finish()
    model.to(torch.bfloat16).save_pretrained(d)
    for n in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(rte / n, d / n)
    state = load_file(str(d / "model.safetensors"))
    assert state[Q].dtype == torch.bfloat16
    assert main(["inspect", str(d)]) == 0
    assert "75.00 %" in capsys.readouterr().out
    sizes = size_report(d)
    lin = [t for k, t in state.items() if ".encoder.layer." in k and k.endswith(".weight") and "LayerNorm" not in k]
    assert sizes["dense_encoder_linear"] == sum(2 * t.numel() for t in lin)  # 2 bytes per bfloat16 value
    export_sparse(d, tmp_path / "exp")
    back = load_sparse(tmp_path / "exp")
    for k, t in state.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k].view(torch.int16) if t.dtype == torch.bfloat16 else back[k],
                                                       t.view(torch.int16) if t.dtype == torch.bfloat16 else t), k
    assert main(["evaluate", str(d), "--task", "rte", "--max-eval-samples", "8"]) == 0
    from kasp.models.modeling import load_classifier

    m = load_classifier(str(d))  # computed in float32, weights up-cast exactly
    w = m.bert.encoder.layer[0].attention.self.query.weight
    assert w.dtype == torch.float32 and torch.equal(w, state[Q].float())


def test_every_safetensors_dtype_counts_from_raw_bytes(rte, tmp_path):
    from kasp.analysis.inspection import analyse

    d = _copy(rte, tmp_path / "dtypes")
    extra = {"extra.f8": torch.zeros(3, dtype=torch.float8_e4m3fn), "extra.f8b": torch.ones(3).to(torch.float8_e5m2),
             "extra.f16": torch.ones(5, dtype=torch.float16), "extra.f64": torch.zeros(2, dtype=torch.float64),
             "extra.bool": torch.ones(7, dtype=torch.bool), "extra.u8": torch.zeros(4, dtype=torch.uint8),
             "extra.i8": torch.zeros(4, dtype=torch.int8), "extra.i16": torch.zeros(4, dtype=torch.int16),
             "extra.u16": torch.zeros(4, dtype=torch.uint16), "extra.i32": torch.zeros(4, dtype=torch.int32),
             "extra.u32": torch.zeros(4, dtype=torch.uint32), "extra.i64": torch.zeros(4, dtype=torch.int64),
             "extra.u64": torch.zeros(4, dtype=torch.uint64)}
    save_file(extra, str(d / "extra.safetensors"))
    base = analyse(rte)
    info = analyse(d)
    raw = 3 + 3 + 10 + 16 + 7 + 4 + 4 + 8 + 8 + 16 + 16 + 32 + 32
    assert info["sizes"]["sparse_export"] - base["sizes"]["sparse_export"] == raw
    assert info["sizes"]["dense"] == base["sizes"]["dense"] + (d / "extra.safetensors").stat().st_size
    assert info["parameters"]["other"] - base["parameters"]["other"] == sum(t.numel() for t in extra.values())


# --- torch.nn.utils.prune leftovers: folded for inspect and export, refused for scoring -------------------

def test_prune_leftovers_are_folded_exactly(rte, tmp_path, capsys):
    from torch.nn.utils import prune
    from transformers import AutoModelForSequenceClassification

    from kasp.models.export import load_sparse

    model = AutoModelForSequenceClassification.from_pretrained(rte)
    mods = [model.bert.encoder.layer[i].attention.self.query for i in range(2)] + [model.bert.encoder.layer[1].output.dense]
    for m in mods:
        prune.l1_unstructured(m, "weight", amount=0.6)
    d = tmp_path / "hooks"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))
    shutil.copy(rte / "config.json", d)
    shutil.copy(rte / "tokenizer.json", d)
    shutil.copy(rte / "tokenizer_config.json", d)
    for m in mods:
        prune.remove(m, "weight")
    expected = model.state_dict()
    assert main(["export", str(d), str(tmp_path / "exp")]) == 0  # no ZeroDivisionError, no half-written folder
    back = load_sparse(tmp_path / "exp")
    assert set(back) == set(expected)
    for k in expected:
        assert torch.equal(back[k], expected[k]), k
    capsys.readouterr()
    assert main(["inspect", str(d), "--no-sizes"]) == 0
    out = capsys.readouterr().out
    assert "torch.nn.utils.prune" in out and "no encoder Linear weights" not in out
    assert main(["evaluate", str(d), "--task", "rte", "--max-eval-samples", "4"]) == 2
    assert "prune.remove" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "exp"), "--task", "rte"]) == 2  # a sparse export is not a checkpoint dir


# --- config vs weights, and export's safe writes ----------------------------------------------------

def test_config_weights_disagreement_names_both_sizes(rte, tmp_path, capsys):
    d = _copy(rte, tmp_path / "mism")
    _hidden_mismatch(d)
    assert main(["inspect", str(d)]) == 2
    err = capsys.readouterr().err
    assert "config.json says hidden_size 96 but the weights have 32" in err
    assert main(["export", str(d), str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["mism"]


def test_export_never_touches_what_it_did_not_create(rte, tmp_path, capsys, monkeypatch):
    import kasp.models.export as export

    mine = tmp_path / "d" / "mydata.tmp"
    mine.mkdir(parents=True)
    (mine / "precious.txt").write_text("keep me")
    assert main(["export", str(rte), str(tmp_path / "d" / "mydata")]) == 0
    assert (mine / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["mydata", "mydata.tmp"]
    # a file as target: one line, nothing changed
    f = tmp_path / "d" / "afile"
    f.write_text("x")
    capsys.readouterr()
    assert main(["export", str(rte), str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err and f.read_text() == "x"
    # a non-empty folder: refused, untouched
    assert main(["export", str(rte), str(mine)]) == 2 and (mine / "precious.txt").read_text() == "keep me"

    # a failure while writing leaves nothing behind
    def boom(*a, **k):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("safetensors.torch.save_file", boom)
    capsys.readouterr()
    assert main(["export", str(rte), str(tmp_path / "d" / "new")]) == 2
    assert "No space left" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["afile", "mydata", "mydata.tmp"]


# --- one place per concept --------------------------------------------------------------------------

@pytest.mark.slow
def test_figures_do_not_import_torch():
    """The app's figures are plotly only (the layers themselves are tests/repo/test_layers.py's contracts)."""
    code = "import sys, kasp.ui.figures; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_one_pruned_set_for_masks_inspection_and_export(rte):
    from transformers import AutoModelForSequenceClassification

    from kasp.models.checkpoint import load_state
    from kasp.models.export import encode_sparse
    from kasp.models.modeling import prunable_linears
    from kasp.spec.pruned_set import matrix_name

    model = AutoModelForSequenceClassification.from_pretrained(rte)
    by_module = {f"{n}": id(m.weight) for n, m in prunable_linears(model).items()}
    params = {id(p): k for k, p in model.named_parameters()}
    keys = {matrix_name(params[i]): params[i] for i in by_module.values()}
    assert set(keys) == set(by_module)  # masks (modules) and the key parser name the same matrices
    state = load_state(rte)
    _, shapes = encode_sparse(state)
    assert set(shapes) == set(keys.values())  # the export splits exactly those


def test_inspect_flags_non_finite_tensors(rte, tmp_path, capsys):
    d = _copy(rte, tmp_path / "nan")
    _nan_weight(d)
    assert main(["inspect", str(d), "--no-sizes"]) == 0
    out = capsys.readouterr().out
    assert f"warning: 1 tensor(s) hold NaN or inf values: {Q} (1)" in out
    assert main(["inspect", str(d), "--no-sizes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["non_finite"] == {Q: 1}


def test_pairs_on_a_model_with_one_token_type_and_bad_arguments(tmp_path, capsys):
    """A BERT-layout model with a single token type (as RoBERTa-style models have) on a sentence-pair task:
    segment ids are folded into its table, never an IndexError; the score is the one computed by hand."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from kasp.data.glue import load_split
    from kasp.models.modeling import default_model_path

    d = tmp_path / "onetype"
    tok = AutoTokenizer.from_pretrained(default_model_path())
    torch.manual_seed(3)
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=4, intermediate_size=64, type_vocab_size=1,
                                             max_position_embeddings=160)).save_pretrained(d)
    tok.save_pretrained(d)
    capsys.readouterr()
    assert main(["evaluate", str(d), "--task", "rte", "--max-eval-samples", "16", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["metrics"]["accuracy"]
    df = load_split("rte", "dev").head(16)
    enc = tok(df["text_a"].tolist(), df["text_b"].tolist(), truncation=True, max_length=128, padding=True,
              return_tensors="pt")
    enc["token_type_ids"] = torch.zeros_like(enc["token_type_ids"])
    model = BertForSequenceClassification.from_pretrained(d).eval()
    with torch.no_grad():
        acc = float((model(**enc).logits.argmax(-1) == torch.tensor(df["label"].to_numpy())).double().mean())
    assert got == pytest.approx(acc)
    for args, msg in ((["--max-eval-samples", "-5"], "--max-eval-samples must be a positive"),
                      (["--batch-size", "0"], "--batch-size must be a positive"),
                      (["--max-seq-length", "0"], "--max-seq-length must be a positive")):
        assert main(["evaluate", str(d), "--task", "rte", *args]) == 2
        assert msg in capsys.readouterr().err
    assert main(["attention", str(d), str(d), "--task", "rte", "--samples", "0"]) == 2
    assert "samples must be a positive" in capsys.readouterr().err


@pytest.mark.slow
def test_kasp_checkpoints_name_their_classes_and_cross_task_scoring_is_refused(tiny_store, tmp_path, capsys):
    teacher = tiny_store / "teacher"
    cfg = json.loads((teacher / "checkpoint" / "config.json").read_text())
    assert cfg["id2label"] == {"0": "negative", "1": "positive"} and cfg["kasp_task"] == "sst2"
    assert main(["evaluate", str(teacher), "--task", "cola", "--max-eval-samples", "8"]) == 2
    assert "do not match task cola" in capsys.readouterr().err
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "status.json").write_text(json.dumps({"state": "failed"}))
    (run / "config.json").write_text(json.dumps({"recipe": {}}))
    assert main(["inspect", str(run)]) == 2
    assert "a KASP run without a checkpoint (state failed)" in capsys.readouterr().err


def test_predictions_page_maps_labels_like_kasp_evaluate(rte, tmp_path):
    """The Predictions page's engine goes through the same fitness check: a checkpoint whose outputs are
    named in the other order gives the intact model's probabilities in KASP's class order."""
    import numpy as np

    from kasp.data.glue import get_task, load_split
    from kasp.analysis.predict import logits_for

    d = _copy(rte, tmp_path / "swapped-pred")
    _swapped_labels(d)
    df = load_split("rte", "dev").head(8)
    task = get_task("rte")
    assert np.allclose(logits_for(str(d), task, df), logits_for(str(rte), task, df), atol=1e-5)
    with pytest.raises(KaspError):  # a head for another task is refused, as by kasp evaluate
        logits_for(str(rte), get_task("stsb"), load_split("stsb", "dev").head(2))
