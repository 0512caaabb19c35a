"""The inspect page on a checkpoint the engine made (AppTest)."""

from __future__ import annotations

import os

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # its run store's teacher is trained (tiny_store)


def test_inspect_page_on_an_engine_checkpoint(tiny_store, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(tiny_store))
    at = AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=60)
    at.session_state["task"] = "sst2"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    run_ids = at.selectbox[0].options
    assert "teacher" in run_ids
    at.selectbox[0].set_value("teacher").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layers"] == "2" and metrics["Model type"] == "bert"
    sizes = [d.value for d in at.dataframe if "format" in d.value.columns][0]
    ckpt = tiny_store / "teacher" / "checkpoint"
    assert sizes.iloc[0]["whole model (MB)"] == pytest.approx(os.stat(ckpt / "model.safetensors").st_size / 1e6)
    at.button[0].click().run()  # Evaluate on the dev set
    assert not at.exception
    assert any("accuracy" in s.value and "live evaluation" in s.value for s in at.success)
