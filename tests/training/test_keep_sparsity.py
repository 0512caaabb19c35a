"""Keep-mask fine-tuning: `kasp finetune --keep-sparsity` and the Trainer route's KeepSparsityCallback."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.spec.pruned_set import matrix_name
from kasp.ground.runs import RunDir

pytestmark = pytest.mark.slow  # every test here trains

SMALL = ["--task", "sst2", "--max-train-samples", "128", "--max-eval-samples", "40", "--eval-every", "0",
         "--log-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def pruned_run(tiny_store, tiny_pretrained) -> RunDir:
    """A finished 70 %-sparse KASP run (its directory is what `--model` gets)."""
    out = tiny_store / "keep-src"
    assert main(["prune", *SMALL, "--max-steps", "6", "--pruning-events", "3", "--sparsity", "0.7",
                 "--model", str(tiny_pretrained), "--runs-dir", str(tiny_store), "--out", str(out)]) == 0
    return RunDir(out)


def _pruned_set(path) -> dict[str, torch.Tensor]:
    state = load_file(str(path / "model.safetensors"))
    return {k: v for k, v in state.items() if matrix_name(k)}


def _finetune(store, out, model, *extra) -> RunDir:
    assert main(["finetune", *SMALL, "--max-steps", "6", "--lr", "1e-3", "--model", str(model),
                 "--runs-dir", str(store), "--out", str(store / out), *extra]) == 0
    return RunDir(store / out)


def test_keep_sparsity_keeps_every_matrix_exactly(pruned_run, tiny_store, caplog):
    start = _pruned_set(pruned_run.checkpoint)
    with caplog.at_level(logging.WARNING, logger="kasp.training.train"):
        run = _finetune(tiny_store, "keep-ft", pruned_run.path, "--keep-sparsity")  # a run directory as --model
    assert not [r for r in caplog.records if "fill" in r.getMessage()]
    end = _pruned_set(run.checkpoint)
    assert start.keys() == end.keys() and len(start) == 12
    moved = 0.0
    for k in start:
        assert torch.equal(end[k] == 0, start[k] == 0), f"{k}: the zeros moved"  # same positions, so same sparsity
        moved = max(moved, float((end[k] - start[k]).abs().max()))
    assert moved > 1e-4  # the kept weights did train
    assert run.report()["per_matrix_sparsity"] == pruned_run.report()["per_matrix_sparsity"]
    assert run.recipe()["keep_sparsity"] is True
    facts = json.loads((run.checkpoint / "config.json").read_text())["kasp"]
    assert facts["keep_sparsity"] is True and facts["sparsity"]["encoder_linear"] == pytest.approx(0.7, abs=1e-3)


def test_without_the_flag_it_warns_and_the_zeros_fill_in(pruned_run, tiny_store, caplog):
    with caplog.at_level(logging.WARNING, logger="kasp.training.train"):
        run = _finetune(tiny_store, "dense-ft", pruned_run.checkpoint)  # the checkpoint directory as --model
    msgs = [r.getMessage() for r in caplog.records if r.name == "kasp.training.train"]
    assert any("70.0 % sparse" in m and "--keep-sparsity" in m and "fill" in m for m in msgs), msgs
    assert run.report()["sparsity"]["pruned_sparsity"] < 0.1  # AdamW moved (almost) every zero


def test_a_dense_start_does_not_warn(tiny_store, tiny_pretrained, caplog):
    from kasp.spec.config import make_config
    from kasp.training.train import _keep_mask_setup
    from kasp.models.modeling import load_classifier

    model = load_classifier(str(tiny_pretrained), num_labels=2)
    with caplog.at_level(logging.WARNING, logger="kasp.training.train"):
        assert _keep_mask_setup(make_config("finetune", task="sst2"), model) is None
    assert not caplog.records


def test_keep_sparsity_on_a_dense_model_says_there_is_nothing_to_keep(tiny_store, tiny_pretrained, caplog):
    from kasp.spec.config import make_config
    from kasp.models.modeling import load_classifier
    from kasp.training.train import _keep_mask_setup

    model = load_classifier(str(tiny_pretrained), num_labels=2)
    with caplog.at_level(logging.WARNING, logger="kasp.training.train"):
        keeper = _keep_mask_setup(make_config("finetune", task="sst2", keep_sparsity=True), model)
    assert keeper is not None and keeper.sparsity == 0
    msgs = [r.getMessage() for r in caplog.records if r.name == "kasp.training.train"]
    assert len(msgs) == 1 and "has no zeros" in msgs[0] and "nothing to keep" in msgs[0], msgs


def test_keep_sparsity_is_for_finetune_only(capsys):
    from kasp.spec.config import config_from_options

    with pytest.raises(KaspError, match="keep_sparsity is for `kasp finetune`"):
        config_from_options("prune", {"sparsity": 0.9, "keep_sparsity": True})
    with pytest.raises(KaspError, match="keep_sparsity must be true or false"):
        config_from_options("finetune", {"keep_sparsity": "yes"})
    with pytest.raises(SystemExit):
        main(["prune", "--sparsity", "0.9", "--keep-sparsity"])
    assert "unrecognized arguments: --keep-sparsity" in capsys.readouterr().err


def test_trainer_route_keeps_the_zeros(pruned_run, tmp_path, caplog):
    from transformers import TrainingArguments

    from kasp.spec.config import make_config
    from kasp.data.glue import load_task_data
    from kasp.training.hf_trainer import EncodedDataset, KaspTrainer, KeepSparsityCallback
    from kasp.models.modeling import load_classifier, load_tokenizer

    ck = str(pruned_run.checkpoint)
    cfg = make_config("finetune", task="sst2", model=ck, max_train_samples=64)
    train_data, _ = load_task_data(cfg, load_tokenizer(ck))

    def trainer(callbacks):
        model = load_classifier(ck)
        args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=3, per_device_train_batch_size=16,
                                 learning_rate=1e-3, optim="adamw_torch", report_to=[], logging_steps=1,
                                 save_strategy="no", use_cpu=True, disable_tqdm=True)
        return model, KaspTrainer(model=model, teacher=None, args=args, task_loss_weight=1.0, attention_weight=0.0,
                                  hidden_weight=0.0, prediction_weight=0.0, train_dataset=EncodedDataset(train_data),
                                  data_collator=EncodedDataset.collator(train_data), callbacks=callbacks)

    start = {k: v == 0 for k, v in _pruned_set(pruned_run.checkpoint).items()}
    with caplog.at_level(logging.WARNING, logger="kasp.training.hf_trainer"):
        model, t = trainer([KeepSparsityCallback()])
    assert not caplog.records
    t.train()
    state = model.state_dict()
    for k, zeros in start.items():
        assert torch.equal(state[k] == 0, zeros), k
    assert any(h.get("sparsity") == pytest.approx(0.7, abs=1e-3) for h in t.state.log_history)
    with caplog.at_level(logging.WARNING, logger="kasp.training.hf_trainer"):
        trainer([])  # no callback that keeps or makes masks: the warning
    assert any("--keep-sparsity" in r.getMessage() and "KeepSparsityCallback" in r.getMessage() for r in caplog.records)
