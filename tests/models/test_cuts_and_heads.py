"""Every cut is said, problem_type is checked, and messages point the right way (issue 26, items 4, 5, 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import make_tiny_checkpoint
from kasp.cli import main


@pytest.fixture(scope="module")
def tiny_sst2(tmp_path_factory) -> Path:
    """A tiny random SST-2 classifier (position table 160 rows)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("cuts") / "sst2", num_labels=2, seed=3)


def _set_tokenizer_limit(ckpt: Path, n: int) -> None:
    cfg_path = ckpt / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = n
    cfg_path.write_text(json.dumps(cfg))


# --- item 4: the effective input length is said with every score -------------------------------

def test_evaluate_says_the_input_length_and_which_limit_won(tiny_sst2, tmp_path, capsys):
    import shutil

    assert main(["evaluate", str(tiny_sst2), "--task", "sst2", "--max-eval-samples", "8", "--max-seq-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "inputs cut at 64 tokens (--max-seq-length)" in out and "warning" not in out
    small = tmp_path / "small-tok"
    shutil.copytree(tiny_sst2, small)
    _set_tokenizer_limit(small, 8)
    assert main(["evaluate", str(small), "--task", "sst2", "--max-eval-samples", "8", "--max-seq-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "warning: inputs cut at 8 tokens: the tokenizer's model_max_length (8) is below --max-seq-length 64" in out
    assert main(["evaluate", str(small), "--task", "sst2", "--max-eval-samples", "8", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["max_length"] == 8 and got["input_length"]["limited_by"] == ["tokenizer"] and got["input_length"]["cut"]


def test_the_position_table_is_named_when_it_wins(tiny_sst2, capsys):
    assert main(["evaluate", str(tiny_sst2), "--task", "sst2", "--max-eval-samples", "4", "--max-seq-length", "400"]) == 0
    out = capsys.readouterr().out
    assert "inputs cut at 160 tokens: the model's position table (max_position_embeddings) (160) is below --max-seq-length 400" in out


@pytest.mark.slow
def test_a_finetune_report_records_the_input_length(tiny_store):
    rep = json.loads((tiny_store / "teacher" / "report.json").read_text())
    assert rep["input_length"]["tokens"] == 64 and rep["input_length"]["limited_by"] == ["max_seq_length"]


# --- item 5: problem_type -----------------------------------------------------------------------

def _with_config(src: Path, dst: Path, **changes) -> Path:
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_a_multi_label_checkpoint_is_refused_for_a_single_label_task(tiny_sst2, tmp_path, capsys):
    multi = _with_config(tiny_sst2, tmp_path / "multi", problem_type="multi_label_classification")
    assert main(["evaluate", str(multi), "--task", "sst2", "--max-eval-samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "multi-label classifier (one sigmoid per label)" in err and "'single_label_classification'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_regression_checkpoint_is_refused_as_a_teacher_of_a_classification_task(tiny_sst2, tiny_pretrained, tmp_path, capsys):
    reg = _with_config(tiny_sst2, tmp_path / "reg", problem_type="regression")
    rc = main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--teacher", str(reg), "--max-steps", "2",
               "--sparsity", "0.5", "--runs-dir", str(tmp_path / "s"), "--out", str(tmp_path / "s" / "p"), "--no-progress"])
    assert rc == 2 and "is a regression head (one score) (config.json problem_type 'regression')" in capsys.readouterr().err


def test_a_classifier_problem_type_is_refused_for_sts_b():
    from types import SimpleNamespace

    from kasp.data.glue import get_task
    from kasp.ground.errors import KaspError
    from kasp.models.modeling import check_problem_type

    for pt in ("single_label_classification", "multi_label_classification"):
        with pytest.raises(KaspError, match=r"needs a regression head \(one score\) \('regression'\)"):
            check_problem_type(SimpleNamespace(problem_type=pt), get_task("stsb"), "ckpt")
    check_problem_type(SimpleNamespace(problem_type=None), get_task("stsb"), "ckpt")  # unset: the head size decides


@pytest.mark.parametrize("pt", ["weird", 3])
def test_an_unknown_problem_type_is_named_as_unknown(tiny_sst2, tmp_path, capsys, pt):
    odd = _with_config(tiny_sst2, tmp_path / "odd", problem_type=pt)
    assert main(["evaluate", str(odd), "--task", "sst2", "--max-eval-samples", "4"]) == 2
    err = capsys.readouterr().err
    assert f"config.json's problem_type {str(pt)!r} is none of transformers'" in err and "is 'weird'" not in err
    assert len(err.strip().splitlines()) == 1


def test_an_id2label_of_another_size_than_the_head_names_both(tiny_sst2, tmp_path, capsys):
    """config.json names 3 labels, the head has 2 outputs: every command names both (transformers says only
    "look at the above report"), and export writes nothing."""
    three = _with_config(tiny_sst2, tmp_path / "three", id2label={"0": "a", "1": "b", "2": "c"},
                         label2id={"a": 0, "b": 1, "c": 2})
    for argv in (["evaluate", str(three), "--task", "sst2", "--max-eval-samples", "4"], ["inspect", str(three)],
                 ["export", str(three), str(tmp_path / "out"), "--format", "sparse"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "config.json names 3 label(s)" in err and "head has 2 output(s) (classifier.weight [2, 32])" in err, err
        assert "above report" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_finetune_writes_the_problem_type_it_trained(tiny_store):
    cfg = json.loads((tiny_store / "teacher" / "checkpoint" / "config.json").read_text())
    assert cfg["problem_type"] == "single_label_classification"


@pytest.mark.slow
def test_finetune_overrides_an_inherited_multi_label_problem_type(tiny_pretrained, tmp_path):
    src = _with_config(tiny_pretrained, tmp_path / "pre-multi", problem_type="multi_label_classification")
    assert main(["finetune", "--task", "stsb", "--model", str(src), "--max-steps", "1", "--max-train-samples", "8",
                 "--max-eval-samples", "8", "--eval-every", "0", "--runs-dir", str(tmp_path / "s"),
                 "--out", str(tmp_path / "s" / "ft"), "--no-progress"]) == 0
    cfg = json.loads((tmp_path / "s" / "ft" / "checkpoint" / "config.json").read_text())
    assert cfg["problem_type"] == "regression"


# --- item 9: a head of the wrong size names both sizes -------------------------------------------

def test_a_two_output_head_for_sts_b_names_both_sizes(tiny_sst2, tmp_path, capsys):
    assert main(["evaluate", str(tiny_sst2), "--task", "stsb", "--max-eval-samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "head with 2 output(s), but task stsb needs 1 output (a regression score)" in err
    rc = main(["finetune", "--task", "stsb", "--model", str(tiny_sst2), "--max-steps", "1", "--runs-dir",
               str(tmp_path / "s"), "--out", str(tmp_path / "s" / "ft"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "head with 2 output(s), but this task needs 1" in err and "above report" not in err


# --- item 9: a training wrapper's key prefix, non-UTF-8 files, over-long lines ----------------------

@pytest.mark.parametrize("prefix", ["module.", "model.", "module.model.", "_orig_mod.", "base_model.model.",
                                    "module._orig_mod."])
def test_a_wrapper_prefix_is_named_with_the_fix_by_inspect_export_and_evaluate(tiny_sst2, tmp_path, capsys, prefix):
    import shutil

    from safetensors.torch import load_file, save_file

    d = tmp_path / "wrapped"
    shutil.copytree(tiny_sst2, d)
    f = d / "model.safetensors"
    save_file({prefix + k: v.contiguous() for k, v in load_file(str(f)).items()}, str(f))
    for argv in (["inspect", str(d)], ["export", str(d), str(tmp_path / "out"), "--format", "sparse"],
                 ["evaluate", str(d), "--task", "sst2", "--max-eval-samples", "4"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"every weight name starts with '{prefix}'" in err and "removeprefix" in err, argv
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # export wrote nothing its own loader would refuse


def _tsv(tmp_path: Path, raw: bytes) -> Path:
    p = tmp_path / "data.tsv"
    p.write_bytes(raw)
    return p


def test_a_utf16_tsv_is_named_as_utf16_with_the_fix(tmp_path):
    from kasp.data.glue import get_task, read_user_tsv
    from kasp.ground.errors import KaspError

    text = "sentence\tlabel\na fine film\t1\n"
    with pytest.raises(KaspError, match=r"UTF-16LE text \(it starts with a UTF-16LE byte-order mark\).*iconv -f UTF-16"):
        read_user_tsv(get_task("sst2"), _tsv(tmp_path, text.encode("utf-16")))
    with pytest.raises(KaspError, match=r"looks like UTF-16BE text without a byte-order mark"):
        read_user_tsv(get_task("sst2"), _tsv(tmp_path, text.encode("utf-16-be")))
    with pytest.raises(KaspError, match=r"not UTF-8 text .*byte 0xe9.*Latin-1 or Windows-1252.*iconv -f CP1252"):
        read_user_tsv(get_task("sst2"), _tsv(tmp_path, "sentence\tlabel\nun film rat\u00e9\t0\n".encode("latin-1")))


def test_a_line_over_the_csv_field_limit_is_named_too_long(tmp_path):
    import csv

    from kasp.data.glue import get_task, read_user_tsv
    from kasp.ground.errors import KaspError

    long = "word " * (csv.field_size_limit() // 5 + 10)
    p = _tsv(tmp_path, f"sentence\tlabel\nshort one\t1\n{long}\t0\n".encode())
    with pytest.raises(KaspError, match=r"line 3: .*the line is too long: a field of more than 131,072 characters") as e:
        read_user_tsv(get_task("sst2"), p)
    assert "bad quoting" not in str(e.value)


def test_kasp_attention_says_the_input_length_and_which_limit_won(tiny_sst2, tmp_path, capsys):
    import shutil

    small = tmp_path / "small-tok"
    shutil.copytree(tiny_sst2, small)
    _set_tokenizer_limit(small, 8)
    assert main(["attention", str(small), str(tiny_sst2), "--task", "sst2", "--samples", "8"]) == 0
    out = capsys.readouterr().out
    assert "warning: inputs cut at 8 tokens: the tokenizer's model_max_length (8) is below --max-seq-length" in out
    assert main(["attention", str(tiny_sst2), str(tiny_sst2), "--task", "sst2", "--samples", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_length"]["tokens"] == 128
