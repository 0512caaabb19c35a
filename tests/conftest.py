"""Shared fixtures: tiny random BERT checkpoints (no network) built on the shipped MiniLM tokenizer, and a run
store with a tiny teacher. Plain helper functions are in tests/helpers.py."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import make_tiny_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# caches (teacher outputs, augmented sets) of the tests' tiny models stay out of the user's ~/.cache
os.environ.setdefault("KASP_CACHE_DIR", tempfile.mkdtemp(prefix="kasp-test-cache-"))


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
