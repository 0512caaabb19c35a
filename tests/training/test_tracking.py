"""--report-to: the run's records also go to experiment trackers through Accelerate (TensorBoard here)."""

from __future__ import annotations

import pytest

from kasp.cli import main
from kasp.ground.runs import RunDir


@pytest.mark.slow
def test_report_to_tensorboard_writes_the_run_store_records(tmp_path, tiny_pretrained, tiny_store):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "kasp50"
    rc = main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--teacher", str(tiny_store / "teacher"),
               "--sparsity", "0.5", "--max-steps", "6", "--pruning-events", "3", "--max-train-samples", "96",
               "--max-eval-samples", "32", "--eval-every", "3", "--log-every", "2", "--out", str(out),
               "--runs-dir", str(tmp_path), "--no-progress", "--report-to", "tensorboard"])
    assert rc == 0
    events = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    progress = RunDir(out).progress()
    train = [r for r in progress if r["type"] == "train"]
    evals = [r for r in progress if r["type"] == "eval"]
    for name in ("loss", "attention", "sparsity", "lr"):
        logged = [(e.step, e.value) for e in acc.Scalars(f"train/{name}")]
        assert logged == [(r["step"], pytest.approx(r[name], rel=1e-6, abs=1e-9)) for r in train], name
    logged = [(e.step, e.value) for e in acc.Scalars("eval/metrics/accuracy")]
    assert logged == [(r["step"], pytest.approx(r["metrics"]["accuracy"], rel=1e-6)) for r in evals]
    assert logged[-1][0] == 6


def test_report_to_refuses_unknown_or_missing_trackers(tmp_path, capsys):
    args = ["finetune", "--task", "sst2", "--max-steps", "1", "--runs-dir", str(tmp_path), "--no-progress"]
    assert main([*args, "--report-to", "tensorbored"]) == 2
    assert "unknown tracker" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before a run directory was made
