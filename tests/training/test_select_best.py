"""--select-best: a fine-tuning run ends with the weights of its best evaluation point on the held-out slice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kasp.spec.config import make_config
from kasp.training.train import BestPoint


def test_the_best_point_on_the_slice_is_kept_and_ties_keep_the_earlier_one():
    model = nn.Linear(3, 2)
    best = None
    with torch.no_grad():
        model.weight.fill_(1.0)
    best = BestPoint.offer(best, 2, {"accuracy": 0.5}, {"accuracy": 0.8}, model, "accuracy")
    with torch.no_grad():
        model.weight.fill_(2.0)
    best = BestPoint.offer(best, 4, {"accuracy": 0.9}, {"accuracy": 0.7}, model, "accuracy")  # better dev: ignored
    best = BestPoint.offer(best, 6, {"accuracy": 0.9}, {"accuracy": 0.8}, model, "accuracy")  # a tie: earlier kept
    best = BestPoint.offer(best, 8, {"accuracy": 0.9}, {"accuracy": float("nan")}, model, "accuracy")
    assert best.step == 2 and best.metrics == {"accuracy": 0.5} and best.selection == {"accuracy": 0.8}
    assert torch.equal(best.state["weight"], torch.ones(2, 3))  # a copy, not the live tensor
    best = BestPoint.offer(best, 10, {"accuracy": 0.6}, {"accuracy": 0.81}, model, "accuracy")
    assert best.step == 10 and torch.equal(best.state["weight"], torch.full((2, 3), 2.0))
    assert BestPoint.offer(None, 2, {}, None, model, "accuracy") is None  # no slice, no point


def test_the_end_of_the_run_puts_the_best_points_weights_back():
    from types import SimpleNamespace
    from kasp.training.train import _select_best

    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(1.0)
    best = BestPoint.offer(None, 2, {"accuracy": 0.6}, {"accuracy": 0.9}, model, "accuracy")
    with torch.no_grad():
        model.weight.fill_(2.0)  # the last step's weights, worse on the slice
    st = SimpleNamespace(best=best, total=8, raw_student=model, task=SimpleNamespace(main_metric="accuracy"),
                         held_data=[0] * 40, main=False)
    final, selection = _select_best(st, {"accuracy": 0.7}, {"accuracy": 0.5})
    assert (final, selection) == ({"accuracy": 0.6}, {"accuracy": 0.9}) and st.best.step == 2
    assert torch.equal(model.weight, torch.ones(2, 3))
    st.best = None  # the last step wins when it is the best
    assert _select_best(st, {"accuracy": 0.7}, {"accuracy": 0.95}) == ({"accuracy": 0.7}, {"accuracy": 0.95})
    assert st.best.step == 8 and torch.equal(model.weight, torch.ones(2, 3))


@pytest.mark.parametrize("kw, what", [({"holdout": 0}, "--holdout"), ({"holdout": 40, "kind": "prune"}, "finetune")])
def test_select_best_needs_a_finetune_run_with_a_slice(kw, what):
    kind = kw.pop("kind", "finetune")
    with pytest.raises(ValueError, match=what):
        make_config(kind, "kasp" if kind == "prune" else "finetune", "sst2", select_best=True,
                    sparsity=0.9 if kind == "prune" else 0.0, **kw)


@pytest.mark.slow
def test_a_run_ends_with_its_best_points_weights(tiny_pretrained, tmp_path):
    """The report's metrics are the selected evaluation point's, and the saved checkpoint scores them again."""
    from kasp.cli import main
    from kasp.ground.runs import RunDir
    from kasp.training.evaluate import evaluate_checkpoint

    assert main(["finetune", "--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "8", "--lr", "3e-3",
                 "--max-train-samples", "128", "--max-eval-samples", "48", "--holdout", "40", "--eval-every", "2",
                 "--select-best", "--no-progress", "--runs-dir", str(tmp_path / "store"), "--out", str(tmp_path / "r")]) == 0
    run = RunDir(tmp_path / "r")
    rep = run.report()
    evals = [r for r in run.progress() if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4, 6, 8]
    scores = [r["selection_metrics"]["accuracy"] for r in evals]
    chosen = evals[scores.index(max(scores))]  # the first of the best
    assert rep["selected"] == {"step": chosen["step"], "epoch": pytest.approx(chosen["step"] / 4), "of_steps": 8}
    assert rep["metrics"] == chosen["metrics"] and rep["selection_metrics"] == chosen["selection_metrics"]
    again = evaluate_checkpoint(str(run.path), "sst2", max_examples=48, max_seq_length=64)
    assert again["metrics"]["accuracy"] == pytest.approx(chosen["metrics"]["accuracy"])
