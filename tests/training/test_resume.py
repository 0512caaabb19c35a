"""`--resume`: a run stopped after its first evaluation point, resumed, ends with the weights of an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from kasp.cli import main
from kasp.spec.config import make_config
from kasp.ground.runs import RunDir

ARGS = dict(sparsity=0.8, max_steps=12, pruning_events=6, max_train_samples=160, max_eval_samples=32,
            eval_every=4, log_every=2, batch_size=16)


def _cfg(model):
    return make_config("prune", "kasp", "sst2", model=str(model), **ARGS)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(tiny_store, tiny_pretrained, capsys):
    from kasp.training.train import Cancelled, train

    cfg = _cfg(tiny_pretrained)
    whole = RunDir.create(tiny_store / "resume-whole")
    train(cfg, whole, store=tiny_store, progress_bar=False)
    assert not list(whole.path.glob("resume*"))  # a finished run keeps no resume state

    cut = RunDir.create(tiny_store / "resume-cut")
    steps = {"n": 0}

    def stop():  # polled after every step: stop at step 6, two steps past the evaluation point at 4
        steps["n"] += 1
        return steps["n"] >= 6

    with pytest.raises(Cancelled):
        train(cfg, cut, should_stop=stop, store=tiny_store, progress_bar=False)
    assert cut.state() == "cancelled" and not cut.checkpoint.exists()
    assert json.loads((cut.path / "resume.json").read_text())["step"] == 4
    assert max(r["step"] for r in cut.progress()) == 6

    rc = main(["prune", "--resume", str(cut.path), "--runs-dir", str(tiny_store), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert cut.state() == "done"
    a = load_file(str(whole.checkpoint / "model.safetensors"))
    b = load_file(str(cut.checkpoint / "model.safetensors"))
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []  # bitwise: CPU, same ops in the same order
    # the progress log reads as one run: steps 5 and 6 of the first attempt were dropped, then re-logged
    steps_whole = [(r["type"], r["step"]) for r in whole.progress()]
    steps_cut = [(r["type"], r["step"]) for r in cut.progress()]
    assert steps_cut == steps_whole
    losses = {r["step"]: r["loss"] for r in whole.progress() if r["type"] == "train"}
    for r in cut.progress():
        if r["type"] == "train":
            assert r["loss"] == pytest.approx(losses[r["step"]], rel=1e-6)
    assert cut.report()["metrics"] == whole.report()["metrics"]
    assert not list(cut.path.glob("resume*"))
    # the weights' story reads as one run too: same snapshots at the same steps, same pictures
    from kasp.training.weights_story import story_records

    story_whole, story_cut = story_records(whole.path), story_records(cut.path)
    assert len(story_whole) >= 4  # layout, start, pruning events, end
    assert [r.get("step") for r in story_cut] == [r.get("step") for r in story_whole]
    assert story_cut == story_whole

    # a finished run has nothing to resume; recipe flags are refused with --resume
    assert main(["prune", "--resume", str(cut.path), "--no-progress"]) == 2
    assert "already finished" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_refusals(tmp_path, capsys):
    assert main(["prune", "--resume", str(tmp_path), "--no-progress"]) == 2
    assert "not a KASP run directory" in capsys.readouterr().err
    run = RunDir.create(tmp_path / "r")
    run.write_config(make_config("prune", "kasp", "sst2", sparsity=0.5).to_dict(), {})
    run.set_status("cancelled")
    assert main(["prune", "--resume", str(run.path), "--no-progress"]) == 2
    assert "no resume state" in capsys.readouterr().err
    assert main(["prune", "--resume", str(run.path), "--sparsity", "0.7"]) == 2
    assert "drop --sparsity" in capsys.readouterr().err


def test_pruner_state_dict_round_trip():
    from transformers import BertConfig, BertForSequenceClassification

    from kasp.core.masks import MagnitudePruner

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)
    a, b = BertForSequenceClassification(cfg), BertForSequenceClassification(cfg)
    pa, pb = MagnitudePruner(a, 0.7, 100, 10), MagnitudePruner(b, 0.7, 100, 10)
    for t in range(0, 40):
        pa.step(t)
    state = pa.state_dict()
    pb.load_state_dict(state)
    assert pb.events == pa.events == 3 and pb.current_sparsity == pa.current_sparsity
    assert all(torch.equal(pa.masks[k], pb.masks[k]) for k in pa.masks)
    for name, lin in pb.linears.items():  # the loaded masks are applied at once
        assert torch.all(lin.weight[~pb.masks[name]] == 0)
    with pytest.raises(ValueError, match="total_steps"):
        MagnitudePruner(b, 0.7, 200, 10).load_state_dict(state)
