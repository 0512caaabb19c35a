"""Every cut is said, problem_type is checked, and messages point the right way (issue 26, items 4, 5, 9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_checkpoint
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


def test_a_finetune_report_records_the_input_length(tiny_store):
    rep = json.loads((tiny_store / "teacher" / "report.json").read_text())
    assert rep["input_length"]["tokens"] == 64 and rep["input_length"]["limited_by"] == ["max_seq_length"]
