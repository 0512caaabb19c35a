"""Shared fixtures: tiny random BERT checkpoints (no network) built on the shipped MiniLM tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


def make_tiny_checkpoint(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, num_labels: int | None = 2,
                         seed: int = 0, model_type: str = "bert", dropout: float = 0.1) -> Path:
    """Save a tiny random BERT-family checkpoint (safetensors) with the default model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from kasp.modeling import default_model_path

    tok = AutoTokenizer.from_pretrained(default_model_path())
    cfg = AutoConfig.for_model(model_type, vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=160,
                               pad_token_id=0, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                               **({"num_labels": num_labels} if num_labels else {}))
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg) if num_labels else AutoModel.from_config(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory) -> Path:
    """A tiny 'pre-trained' BERT (base model, no classifier head)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "pretrained", num_labels=None)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory, tiny_pretrained) -> Path:
    """A run store holding a tiny fine-tuned SST-2 teacher made by the engine (kasp finetune)."""
    from kasp.cli import main

    store = tmp_path_factory.mktemp("store")
    rc = main(["finetune", "--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "8",
               "--max-train-samples", "256", "--max-eval-samples", "64", "--eval-every", "4", "--log-every", "2",
               "--runs-dir", str(store), "--out", str(store / "teacher"), "--no-progress"])
    assert rc == 0
    return store


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the test item (the browser test screenshots failures)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
