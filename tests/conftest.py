"""Shared fixtures: tiny random BERT checkpoints (no network) built on the shipped MiniLM tokenizer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# caches (teacher outputs, augmented sets) of the tests' tiny models stay out of the user's ~/.cache
os.environ.setdefault("KASP_CACHE_DIR", tempfile.mkdtemp(prefix="kasp-test-cache-"))

ROOT = Path(__file__).resolve().parent.parent


def make_tiny_checkpoint(path: Path, layers: int = 2, hidden: int = 32, heads: int = 4, num_labels: int | None = 2,
                         seed: int = 0, model_type: str = "bert", dropout: float = 0.1) -> Path:
    """Save a tiny random BERT-family checkpoint (safetensors) with the default model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    from kasp.models.modeling import default_model_path

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


def open_page(page: str, store: Path, monkeypatch, timeout: int = 60, query: dict | None = None, **state):
    """Run one page of the app with AppTest on the run store ``store`` (task SST-2, default model unless
    ``state`` says otherwise; other ``state`` keys go into session_state), with the page address's
    query parameters ``query``; assert it raised nothing."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    at = AppTest.from_file(str(ROOT / "pages" / page), default_timeout=timeout)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.session_state["task"] = state.pop("task", "sst2")
    at.session_state["model"] = state.pop("model", "default")
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _decode_plotly(obj):
    """Plotly >= 6 ships numeric arrays as {"dtype", "bdata", "shape"} (base64); turn them back into lists."""
    import base64

    import numpy as np

    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            shape = obj.get("shape")
            if isinstance(shape, str):  # 2-D arrays: "rows, cols"
                shape = [int(n) for n in shape.split(",")]
            return (arr.reshape(shape) if shape else arr).tolist()
        return {k: _decode_plotly(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode_plotly(v) for v in obj]
    return obj


def plotly_charts(at) -> list[dict]:
    """The plotly figures an AppTest run drew, as plain dicts with decoded arrays."""
    import json

    return [_decode_plotly(json.loads(c.proto.spec)) for c in at.get("plotly_chart")]
