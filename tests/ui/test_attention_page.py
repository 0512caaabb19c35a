"""The attention page on the shipped retention measurements, without a run of one's own (AppTest)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # runs a page of the app (AppTest)


def test_attention_page_shows_shipped_retention_without_runs(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from kasp.ui.tables import load_precomputed

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "pages" / "attention.py"), default_timeout=60)
    at.session_state["task"] = "sst2"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    shipped = [r for r in load_precomputed() if r["task"] == "sst2" and r.get("retention")]
    assert len(shipped) >= 2
    names = {tr["name"] for tr in spec["data"]}
    assert any("precomputed run" in n for n in names) and any("precomputed sweep" in n for n in names)
    # it opens on the KASP student shipped with its weights (kasp/models/shipped.py); the shipped sweep's runs, which
    # keep only their summary, are offered after it, and say why their per-sentence views need weights
    box = at.selectbox(key="att_run")
    assert box.value == "shipped-sst2-kasp-90" and any(o.startswith("sweep/kasp@0.9/seed42 (") for o in box.options)
    box.set_value("sweep/kasp@0.9/seed42").run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.get("plotly_chart")) >= 4
    assert any("keep only their summary" in i.value for i in at.info)


def test_attention_page_draws_a_sweep_runs_summary_whole_at_1024_px(tmp_path, monkeypatch):
    """Review at 1024 x 768 on MRPC (the page opens on the shipped sweep's KASP at 90 %): the CKA chart has one bar per
    hidden state, "embeddings" first, with the sweep's numbers; the four summary metrics sit two a row, so that no
    number is cut ("0.110 …")."""
    from kasp.ui.tables import shipped_run
    from tests.helpers import open_page, plotly_charts

    at = open_page("attention.py", tmp_path, monkeypatch, timeout=120, task="mrpc")
    assert at.selectbox(key="att_run").value == "sweep/kasp@0.9/seed42"
    cka = shipped_run("sweep/kasp@0.9/seed42", "mrpc")["retention"]["cka"]
    chart = next(f for f in plotly_charts(at) if f["layout"]["title"]["text"] == "Linear CKA per hidden state")
    assert chart["layout"]["xaxis"]["type"] == "category"
    assert chart["data"][0]["x"] == ["embeddings"] + [f"layer {i}" for i in range(len(cka) - 1)]
    assert list(chart["data"][0]["y"]) == cka
    assert {m.label for m in at.metric} >= {"Attention similarity", "CKA (mean)", "Agreement", "KL(t ‖ s)"}
    assert {c.weight for c in at.columns if len(c.metric)} == {0.5}  # two metrics a row, never four
