"""The command line: refusals of unsafe or unsupported checkpoints, the shipped paper recipes and unknown
recipe fields."""

from __future__ import annotations

import json

from kasp.cli import main
from kasp.spec.config import make_config


def test_refuses_pickle_and_unsupported(tmp_path, capsys):
    d = tmp_path / "pickled"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    assert main(["inspect", str(d)]) == 2
    assert "never unpickles" in capsys.readouterr().err
    (d / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert main(["inspect", str(d)]) == 2
    assert "bert, roberta" in capsys.readouterr().err


def test_paper_recipes_are_valid_and_unknown_fields_refused(tmp_path, capsys):
    from kasp.cli import _load_recipe

    for name in ("paper-mrpc", "paper-qnli", "paper-rte", "paper-cola"):
        r = _load_recipe(name)
        cfg = make_config("prune", r.pop("method"), r.pop("task"), **r)
        assert cfg.lr == 3e-5 and cfg.batch_size == 32 and cfg.max_seq_length == 128 and cfg.sparsity == 0.95
        assert cfg.lr_schedule == "constant" and cfg.model == "bert-base-uncased"
        t = _load_recipe(name + "-teacher")
        assert make_config("finetune", task=t.pop("task"), **t).model == "bert-base-uncased"
    assert _load_recipe("paper-mrpc")["epochs"] == 12 and _load_recipe("paper-qnli")["epochs"] == 5
    bad = tmp_path / "r.json"
    bad.write_text('{"learning_rate": 1}')
    assert main(["prune", "--recipe", str(bad), "--runs-dir", str(tmp_path)]) == 2
    assert "unknown field(s) ['learning_rate']" in capsys.readouterr().err
