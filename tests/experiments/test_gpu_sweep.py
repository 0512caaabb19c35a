"""The GPU route (scripts/gpu_sweep.py) on the CPU with a tiny model, and how the app draws its results."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.helpers import ROOT



def _script():
    spec = importlib.util.spec_from_file_location("gpu_sweep", ROOT / "scripts" / "gpu_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_gpu_sweep_runs_every_method_in_parallel_and_merges_per_task(tiny_pretrained, tmp_path, monkeypatch):
    gpu = _script()
    out = tmp_path / "out"
    rc = gpu.main(["--tasks", "mrpc", "--model", str(tiny_pretrained), "--max-train-samples", "48",
                   "--max-eval-samples", "16", "--epochs", "2", "--teacher-epochs", "1", "--sparsities", "0.9",
                   "--max-seq-length", "32", "--retention-samples", "0", "--minutes", "10",
                   "--store", str(tmp_path / "store"), "--out", str(out)])
    logs = {p.name: p.read_text()[-2000:] for p in (tmp_path / "store" / "logs").glob("*.log")}
    assert rc == 0, logs
    res = json.loads((out / "mrpc.json").read_text())
    from kasp.experiments.results import validate_results

    validate_results(res)
    assert res["source"] == "GPU sweep, 2 epochs" and res["plan"]["epochs"] == 2 and res["plan"]["augmented_data"] is False
    assert sorted((r["method"], r["seed"]) for r in res["runs"]) == [(m, s) for m in ("kasp", "magnitude", "small-dense")
                                                                     for s in (42, 43)]
    assert {r["steps"] for r in res["runs"]} == {3}  # 2 epochs of 48 examples in batches of 32
    # the app draws it as its own source, beside the shipped CPU sweep
    import kasp.experiments.results as sweep
    from kasp.ui import curves

    monkeypatch.setattr(sweep, "shipped_gpu_sweep_path", lambda task: out / f"{task}.json")
    pts = curves.curve_data("mrpc", store=tmp_path / "empty").points
    gpu_pts = pts[pts["source"] == "GPU sweep, 2 epochs"]
    assert set(gpu_pts["method"]) == {"kasp", "magnitude", "small-dense"} and (gpu_pts["n"] == 2).all()
    assert (pts["source"] == "precomputed sweep").any()  # the CPU sweep is still drawn


def test_a_broken_gpu_file_is_named_not_raised(tmp_path, monkeypatch):
    import kasp.experiments.results as sweep
    from kasp.ui import curves

    bad = tmp_path / "mrpc.json"
    bad.write_text("{not json")
    monkeypatch.setattr(sweep, "shipped_gpu_sweep_path", lambda task: bad)
    data = curves.curve_data("mrpc", store=tmp_path / "empty")
    assert "not valid JSON" in data.error and (data.points["source"] == "precomputed sweep").any()


@pytest.mark.slow
def test_sweep_stop_after_stops_and_resumes(tiny_store, tiny_pretrained, tmp_path):
    from kasp.cli import main

    args = ["sweep", "--task", "sst2", "--model", str(tiny_pretrained), "--methods", "magnitude", "--sparsities", "0.5",
            "--max-steps", "4", "--max-train-samples", "64", "--max-eval-samples", "16", "--retention-samples", "0",
            "--teacher", str(tiny_store / "teacher"), "--runs-dir", str(tmp_path), "--results", str(tmp_path / "r.json")]
    assert main([*args, "--stop-after", "0.00001"]) == 130  # the minutes are spent before the first step ends
    assert json.loads((tmp_path / "r.json").read_text())["runs"] == []
    assert main(args) == 0  # the same command again finishes it
    assert len(json.loads((tmp_path / "r.json").read_text())["runs"]) == 1


def test_model_pack_round_trips_to_fp16(tiny_pretrained, tmp_path):
    """scripts/gpu_pack.py: the weights come back as exactly their fp16 rounding, with config and tokenizer."""
    import numpy as np
    from safetensors.numpy import load_file

    spec = importlib.util.spec_from_file_location("gpu_pack", ROOT / "scripts" / "gpu_pack.py")
    pack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack)
    size = pack.pack(tiny_pretrained, tmp_path / "m.pack")
    assert 0 < size < (tiny_pretrained / "model.safetensors").stat().st_size  # smaller than the fp32 file
    out = pack.unpack(tmp_path / "m.pack", tmp_path / "model")
    a, b = load_file(str(tiny_pretrained / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert b[k].dtype == np.float16 and np.array_equal(b[k], a[k].astype(np.float16)), k
    assert (out / "config.json").read_text() == (tiny_pretrained / "config.json").read_text()
    from kasp.models.modeling import load_classifier, load_tokenizer

    assert load_tokenizer(str(out)).vocab_size > 0
    assert next(load_classifier(str(out), num_labels=2).parameters()).dtype.is_floating_point
    bad = tmp_path / "bad.pack"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a KASP model pack"):
        pack.unpack(bad, tmp_path / "x")
