"""AppTest of each page on a run store produced by the engine itself (tiny model)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kasp.cli import main
from kasp.runs import RunDir

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "pages"


@pytest.fixture(scope="module")
def app_store(tmp_path_factory, tiny_store, tiny_pretrained) -> Path:
    """Teacher + a KASP run + a magnitude run + a failed run, all written by `kasp`."""
    store = tmp_path_factory.mktemp("appstore")
    shutil.copytree(tiny_store / "teacher", store / "teacher")
    common = ["--task", "sst2", "--model", str(tiny_pretrained), "--max-steps", "6", "--pruning-events", "3",
              "--max-train-samples", "96", "--max-eval-samples", "32", "--eval-every", "3", "--log-every", "2",
              "--runs-dir", str(store), "--no-progress"]
    assert main(["prune", *common, "--sparsity", "0.8", "--method", "kasp", "--out", str(store / "kasp80")]) == 0
    assert main(["prune", *common, "--sparsity", "0.5", "--method", "magnitude", "--out", str(store / "mag50")]) == 0
    assert main(["prune", *common, "--sparsity", "0.5", "--teacher", str(store / "missing"),
                 "--out", str(store / "broken")]) == 2
    return store


def _run(page: str, store: Path, monkeypatch, **state) -> AppTest:
    monkeypatch.setenv("KASP_RUNS_DIR", str(store))
    at = AppTest.from_file(str(PAGES / page), default_timeout=60)
    at.session_state["task"] = "sst2"
    at.session_state["model"] = state.pop("model", "default")
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _decode(obj):
    """Plotly >= 6 ships numeric arrays as {"dtype", "bdata"} (base64); turn them back into lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            return arr.reshape(obj["shape"]).tolist() if "shape" in obj else arr.tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _charts(at: AppTest) -> list[dict]:
    return [_decode(json.loads(c.proto.spec)) for c in at.get("plotly_chart")]


def test_results_table_lists_every_run(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    df = at.dataframe[0].value
    live = df[df["source"] == "live run"]
    assert set(live["id"]) == {"teacher", "kasp80", "mag50", "broken"}
    states = dict(zip(live["id"], live["state"]))
    assert states == {"teacher": "done", "kasp80": "done", "mag50": "done", "broken": "failed"}
    kasp = live[live["id"] == "kasp80"].iloc[0]
    assert kasp["measured sparsity (%)"] == pytest.approx(RunDir(app_store / "kasp80").report()["sparsity"]["pruned_sparsity"] * 100)
    assert "does not exist" in live[live["id"] == "broken"].iloc[0]["error"]


def test_results_charts_and_heatmap(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    charts = _charts(at)
    scatter = charts[0]
    assert "sparsity" in scatter["layout"]["xaxis"]["title"]["text"]
    methods = {tr["legendgroup"].split(",")[0] for tr in scatter["data"]}
    assert {"kasp", "magnitude"} <= methods
    heat = next(c for c in charts if c["data"][0]["type"] == "heatmap")
    z = heat["data"][0]["z"]
    assert len(z) == 2 and all(len(r) == 6 for r in z)  # 2 layers x (Q, K, V, O, FFN-in, FFN-out)
    assert heat["data"][0]["x"] == ["Q", "K", "V", "O", "FFN-in", "FFN-out"]


def test_results_shows_error_of_failed_run(app_store, monkeypatch):
    at = _run("results.py", app_store, monkeypatch)
    at.selectbox[0].set_value("broken").run()
    assert not at.exception
    assert any("does not exist" in e.value for e in at.error)


def test_prune_page_names_teacher_and_estimates(app_store, monkeypatch, tiny_pretrained):
    at = _run("prune.py", app_store, monkeypatch, model=str(tiny_pretrained))
    assert any("teacher" in c.value for c in at.caption)
    assert any("Estimated run time" in m.value for m in at.markdown)
    assert at.button  # the form's Launch button exists and is enabled
    launch = [b for b in at.button if b.label == "Launch"][0]
    assert not launch.disabled


def test_prune_page_without_teacher_offers_finetune(tmp_path, monkeypatch):
    at = _run("prune.py", tmp_path, monkeypatch)
    assert any("fine-tuned teacher" in w.value for w in at.warning)
    assert any(b.label == "Fine-tune the teacher" for b in at.button)
    assert [b for b in at.button if b.label == "Launch"][0].disabled


def test_overview_schedule_and_curves(app_store, monkeypatch):
    at = _run("overview.py", app_store, monkeypatch)
    charts = _charts(at)
    sched = charts[0]
    ys = sched["data"][0]["y"]
    assert ys[0] == 0 and ys[-1] == pytest.approx(90.0)
    assert len(sched["data"][1]["x"]) == 100  # the mask-update points
    at.slider[0].set_value(0.5).run()
    assert _charts(at)[0]["data"][0]["y"][-1] == pytest.approx(50.0)
    curve = charts[1]
    xs = sorted(x for tr in curve["data"] for x in tr["x"])
    assert any(abs(x - 80) < 1 for x in xs) and any(abs(x - 50) < 1 for x in xs)  # the live kasp80 and mag50 runs
