"""The dense ONNX export (kasp/models/onnx_export.py): ONNX Runtime matches PyTorch on dev logits; refusals; latency rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir

pytestmark = pytest.mark.slow  # every test here uses a pruned run the module trains

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pruned_ckpt(tiny_store, tmp_path_factory) -> Path:
    """The tiny teacher, magnitude-pruned to 90 % (masks folded), as a checkpoint that records its task."""
    from transformers import AutoModelForSequenceClassification

    from kasp.core.masks import MagnitudePruner

    src = RunDir(tiny_store / "teacher").checkpoint
    d = tmp_path_factory.mktemp("onnx") / "s90"
    shutil.copytree(src, d)
    model = AutoModelForSequenceClassification.from_pretrained(d)
    MagnitudePruner(model, 0.9, total_steps=1).finish()
    model.save_pretrained(d)
    return d


def test_onnx_runtime_matches_pytorch_on_dev_logits(pruned_ckpt, tmp_path, capsys):
    from kasp.data.glue import encode, load_split
    from kasp.models.modeling import load_classifier, load_tokenizer
    from kasp.models.onnx_export import INPUTS, batches, onnx_logits, session, torch_logits

    out = tmp_path / "onnx"
    assert main(["export", str(pruned_ckpt), str(out), "--format", "onnx", "--samples", "48"]) == 0
    assert "match PyTorch's within" in capsys.readouterr().out
    check = json.loads((out / "onnx_check.json").read_text())
    assert check["dev_examples"] == 48 and check["task"] == "sst2" and check["max_abs_diff"] <= 1e-4
    assert (out / "README.md").is_file() and (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    # independently of the exporter's own check: other dev examples, other batch sizes and lengths
    model = load_classifier(str(pruned_ckpt))
    tok = load_tokenizer(str(pruned_ckpt))
    data = encode(load_split("sst2", "dev").iloc[100:170], tok, 128)
    sess = session(out / "model.onnx")
    assert [i.name for i in sess.get_inputs()] == list(INPUTS)
    for bs in (1, 7, 32):
        feeds = batches(data, bs)
        ref, got = torch_logits(model, feeds), onnx_logits(sess, feeds)
        assert ref.shape == got.shape == (70, 2)
        assert float(np.abs(ref - got).max()) <= 1e-4, bs
    assert float(np.abs(ref).max()) > 1e-3  # logits that are not all zero: the comparison means something


def test_export_is_refused_when_logits_differ(pruned_ckpt, tmp_path, monkeypatch):
    import kasp.models.onnx_export as ox

    real = ox.onnx_logits
    monkeypatch.setattr(ox, "onnx_logits", lambda sess, feeds: real(sess, feeds) + 1e-3)
    with pytest.raises(KaspError, match=r"differ from PyTorch's by up to .* \(> 0.0001\).*nothing was written"):
        ox.export_onnx(pruned_ckpt, tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))


def test_export_refuses_bad_input(tiny_pretrained, pruned_ckpt, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    assert main(["export", str(pruned_ckpt), str(tmp_path / "full"), "--format", "onnx"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "mine"
    assert main(["export", str(tiny_pretrained), str(tmp_path / "o"), "--format", "onnx"]) == 2
    assert "no trained classification head" in capsys.readouterr().err
    assert main(["export", str(pruned_ckpt), str(tmp_path / "s"), "--task", "sst2"]) == 2
    assert "--task is for --format onnx" in capsys.readouterr().err


def test_quick_latency_rows(pruned_ckpt):
    from kasp.models.onnx_export import quick_latency

    res = quick_latency(pruned_ckpt, repeats=2)
    rows = res["rows"]
    assert {(r["runtime"], r["batch"]) for r in rows} == {(rt, b) for rt in ("PyTorch fp32", "ONNX Runtime fp32",
                                                                           "ONNX Runtime int8") for b in (1, 32)}
    assert all(r["median_ms"] > 0 and r["threads"] == 1 for r in rows)
    assert res["max_abs_diff"] <= 1e-4 and torch.get_num_threads() >= 1


def test_inspect_page_measures_latency_on_request(pruned_ckpt, tmp_path, monkeypatch):
    from tests.helpers import open_page

    at = open_page("inspect.py", tmp_path, monkeypatch, timeout=180)
    at.radio[0].set_value("A local directory").run()
    at.text_input[0].set_value(str(pruned_ckpt)).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not [d for d in at.dataframe if "ONNX Runtime int8 (ms)" in d.value.columns]  # nothing until asked
    at.button(key="latency").click().run()
    assert not at.exception, [e.message for e in at.exception]
    table = [d.value for d in at.dataframe if "ONNX Runtime int8 (ms)" in d.value.columns][0]
    assert list(table["batch"]) == [1, 32] and (table["PyTorch fp32 (ms)"] > 0).all()
    assert any("Measured live on this machine" in c.value and "max abs logit" in c.value for c in at.caption)


@pytest.mark.parametrize("error", [OSError(28, "No space left on device", "/tmp/kasp-latency-x/model.onnx"),
                                   RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nmore")])
def test_the_latency_button_says_one_line_when_the_export_fails(pruned_ckpt, tmp_path, monkeypatch, error):
    """Disk full in the temporary folder, or ONNX Runtime failing on the model: one error line, no traceback."""
    from kasp.ui import measure
    from tests.helpers import open_page

    def fail(*a, **k):
        raise error

    monkeypatch.setattr(measure, "quick_latency", fail)  # the name the Inspect page calls (kasp.ui.measure)
    at = open_page("inspect.py", tmp_path, monkeypatch, timeout=180)
    at.radio[0].set_value("A local directory").run()
    at.text_input[0].set_value(str(pruned_ckpt)).run()
    at.button(key="latency").click().run()
    assert not at.exception, [e.message for e in at.exception]
    errors = [e.value for e in at.error if "latency could not be measured" in e.value]
    assert len(errors) == 1 and "\n" not in errors[0], [e.value for e in at.error]
    assert ("the disk is full" in errors[0]) if isinstance(error, OSError) else "Load model failed" in errors[0]
