"""Plain helpers shared by the tests, in one place: every test module imports them the same way,
``from tests.helpers import ROOT, open_page`` (the shared fixtures are in tests/conftest.py). No test
module imports another test module (tests/repo/test_test_suite.py checks it)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
"""The repository root (the folder that holds kasp/, pages/, docs/, tests/)."""


def load_script(name: str, folder: str = "scripts"):
    """A maintainer script of ``scripts/`` (or of ``folder``, e.g. "bench"; not a package) imported as a module,
    e.g. ``load_script("pack_shipped")``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def synthetic_sweep(task: str, main_metric: str) -> dict:
    """A structurally complete results file (test data for the pages, not results)."""
    runs = []
    for seed, off in ((42, 0.0), (43, 0.004)):
        for method, s, v in (("kasp", 0.5, 0.80), ("kasp", 0.9, 0.76), ("magnitude", 0.5, 0.79),
                             ("magnitude", 0.9, 0.70), ("small-dense", 0.9, 0.68)):
            runs.append({"key": f"{method}@{s:g}/seed{seed}", "method": method, "sparsity": s, "seed": seed,
                         "metric": v + off, "metrics": {main_metric: v + off}, "wall_seconds": 300.0,
                         "measured_sparsity": 0.0 if method == "small-dense" else s, "recipe": {"max_steps": 200},
                         "teacher_id": "t", "small_dense": {"equivalent_sparsity": 0.8985} if method == "small-dense" else None})
    return {"format": "kasp-sweep", "schema_version": 1, "task": task, "model": "default", "main_metric": main_metric,
            "teacher": {"run_id": "t", "metric": 0.82}, "plan": {"budget": {"max_steps": 200}}, "runs": runs}


def valid_sweep_results() -> dict:
    return {"format": "kasp-sweep", "schema_version": 1, "task": "sst2", "model": "default", "main_metric": "accuracy",
            "teacher": {"run_id": "t", "metric": 0.9}, "runs": [
                {"key": "kasp@0.9/seed42", "method": "kasp", "sparsity": 0.9, "seed": 42, "metric": 0.86,
                 "metrics": {"accuracy": 0.86, "n": 872}, "measured_sparsity": 0.9, "recipe": {}, "wall_seconds": 800.0,
                 "teacher_id": "t"}]}


def step_budget_sweeps(monkeypatch, *tasks: str) -> None:
    """Make the shipped sweep of each of ``tasks`` the step-budget sweep kept in ``bench/sweeps-steps/`` when its
    grid in epochs shipped (``scripts/ship_sweep.py``), for the tests of what the pages said of those sweeps (e.g.
    CoLA's 400 steps, where no method learnt the task at 90 %). Other tasks keep their shipped file."""
    from kasp.experiments import results

    shipped = results.shipped_sweep_path
    kept = {t: ROOT / "bench" / "sweeps-steps" / f"{t}.json" for t in tasks}
    missing = [str(p) for p in kept.values() if not p.is_file()]
    assert not missing, f"no step-budget sweep kept: {missing}"
    monkeypatch.setattr(results, "shipped_sweep_path", lambda task: kept.get(task) or shipped(task))
