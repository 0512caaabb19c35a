"""The held-out selection slice (--holdout): a fixed part of the training set, never trained on, scored."""

from __future__ import annotations

import pytest

from kasp.spec.config import make_config
from kasp.data.glue import load_split, train_frames
from kasp.ground.errors import KaspError


def test_the_slice_is_fixed_across_seeds_and_never_trained_on():
    full = load_split("rte", "train")
    a_train, a_held = train_frames(make_config("prune", "kasp", "rte", sparsity=0.9, holdout=200, seed=42))
    b_train, b_held = train_frames(make_config("prune", "kasp", "rte", sparsity=0.9, holdout=200, seed=43))
    assert len(a_held) == 200 and len(a_train) == len(full) - 200
    assert a_held.equals(b_held)  # the same examples for every seed
    assert sorted(a_train.index.tolist()) == list(range(len(a_train)))
    merged = sorted(map(tuple, a_train[["text_a", "text_b"]].values.tolist() + a_held[["text_a", "text_b"]].values.tolist()))
    assert merged == sorted(map(tuple, full[["text_a", "text_b"]].values.tolist()))  # a partition of the split
    c_train, c_held = train_frames(make_config("prune", "kasp", "rte", sparsity=0.9, holdout=200, holdout_seed=1))
    assert not c_held.equals(a_held)
    # max_train_samples draws from what is left, never from the slice
    d_train, d_held = train_frames(make_config("prune", "kasp", "rte", sparsity=0.9, holdout=200, max_train_samples=500))
    assert len(d_train) == 500 and d_held.equals(a_held)
    held = set(map(tuple, a_held[["text_a", "text_b"]].values.tolist()))
    assert not held & set(map(tuple, d_train[["text_a", "text_b"]].values.tolist()))
    assert train_frames(make_config("prune", "kasp", "rte", sparsity=0.9))[1] is None


def test_a_slice_as_large_as_the_split_is_refused():
    n = len(load_split("rte", "train"))
    with pytest.raises(KaspError, match="would leave no training example"):
        train_frames(make_config("prune", "kasp", "rte", sparsity=0.9, holdout=n))
    with pytest.raises(ValueError, match="holdout must be >= 0"):
        make_config("prune", "kasp", "rte", sparsity=0.9, holdout=-1)


@pytest.mark.slow
def test_a_run_reports_its_selection_metric(tiny_store, tiny_pretrained, tmp_path):
    from kasp.cli import main
    from kasp.ground.runs import RunDir

    assert main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--sparsity", "0.5", "--max-steps", "4",
                 "--max-train-samples", "64", "--max-eval-samples", "32", "--holdout", "40", "--eval-every", "2",
                 "--no-progress", "--runs-dir", str(tiny_store), "--out", str(tmp_path / "r")]) == 0
    run = RunDir(tmp_path / "r")
    rep = run.report()
    assert rep["holdout_examples"] == 40 and 0 <= rep["selection_metrics"]["accuracy"] <= 100
    assert rep["dev_examples"] == 32 and rep["train_examples"] == 64
    evals = [r for r in run.progress() if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4] and all("selection_metrics" in r for r in evals)
    assert run.recipe()["holdout"] == 40 and run.recipe()["holdout_seed"] == 0
