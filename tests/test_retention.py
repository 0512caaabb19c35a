"""Attention-knowledge retention: measures, padding, incompatible pairs, offline bertviz, the page."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from kasp.ui.attention_view import external_urls, head_view_html
from kasp.cli import main
from kasp.ground.errors import KaspError
from kasp.analysis.retention import compare, js_divergence, linear_cka, load_for_attention, run_retention, sentence_attention
from kasp.ground.runs import RunDir

from conftest import make_tiny_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def teacher(tiny_store) -> str:
    return str(tiny_store / "teacher" / "checkpoint")


@pytest.fixture(scope="module")
def pruned_run(tiny_store, tiny_pretrained) -> RunDir:
    assert main(["prune", "--task", "sst2", "--model", str(tiny_pretrained), "--sparsity", "0.7", "--max-steps", "6",
                 "--pruning-events", "3", "--max-train-samples", "96", "--max-eval-samples", "16", "--eval-every", "0",
                 "--runs-dir", str(tiny_store), "--out", str(tiny_store / "ret-kasp70"), "--no-progress"]) == 0
    return RunDir(tiny_store / "ret-kasp70")


def test_linear_cka_and_js_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ q) == pytest.approx(1.0)  # rotation and isotropic scale
    assert linear_cka(x, torch.randn(200, 5, generator=g)) < 0.2
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    q2 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    js = js_divergence(p, q2)
    assert js[0] == pytest.approx(0.0, abs=1e-12) and js[1] == pytest.approx(1.0)


def test_model_against_itself(teacher):
    r = compare(teacher, teacher, "sst2", samples=24, batch_size=8)
    assert r.samples == 24
    assert max(max(row) for row in r.score_mse) == pytest.approx(0.0, abs=1e-10)
    assert min(min(row) for row in r.similarity) == pytest.approx(1.0, abs=1e-9)
    assert all(c == pytest.approx(1.0, abs=1e-9) for c in r.cka)
    assert r.agreement == 1.0 and r.kl == pytest.approx(0.0, abs=1e-6)


def _peaky(src: Path, dst: Path) -> Path:
    """A copy whose query/key weights are scaled up: sharp attention, as in a trained model
    (a random tiny model attends almost uniformly, so any two of them look alike)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(src)
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(40)
            layer.attention.self.key.weight.mul_(40)
    model.save_pretrained(dst)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / f, dst / f)
    return dst


def test_reinitialised_student_is_clearly_worse(teacher, tmp_path):
    sharp = _peaky(Path(teacher), tmp_path / "sharp")
    same = compare(str(sharp), str(sharp), "sst2", samples=24, batch_size=8)
    other = _peaky(make_tiny_checkpoint(tmp_path / "reinit", seed=123), tmp_path / "reinit-sharp")
    r = compare(str(sharp), str(other), "sst2", samples=24, batch_size=8)
    assert same.mean_similarity == pytest.approx(1.0) and same.mean_cka == pytest.approx(1.0)
    assert r.mean_similarity < 0.8 and r.mean_cka < 0.9
    assert min(min(row) for row in r.score_mse) > 1.0


def test_padding_changes_nothing(teacher, tmp_path):
    other = make_tiny_checkpoint(tmp_path / "other", seed=5)
    one = compare(teacher, str(other), "sst2", samples=12, batch_size=1)  # no padding at all
    many = compare(teacher, str(other), "sst2", samples=12, batch_size=12)  # padded to the longest
    for a, b in zip(one.similarity + one.score_mse, many.similarity + many.score_mse):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    assert one.cka == pytest.approx(many.cka, rel=1e-5)
    assert one.agreement == many.agreement and one.kl == pytest.approx(many.kl, rel=1e-4)


def test_incompatible_pairs_are_refused(teacher, tmp_path):
    heads = make_tiny_checkpoint(tmp_path / "heads8", heads=8)
    with pytest.raises(KaspError, match="head counts differ"):
        compare(teacher, str(heads), "sst2", samples=4)
    vocab = make_tiny_checkpoint(tmp_path / "vocab", seed=1)
    tok = json.loads((vocab / "tokenizer.json").read_text())
    v = tok["model"]["vocab"]
    v["zzzkasp"] = v.pop(next(k for k in v if k.startswith("##")))
    (vocab / "tokenizer.json").write_text(json.dumps(tok))
    (vocab / "vocab.txt").unlink(missing_ok=True)
    with pytest.raises(KaspError, match="different tokenizers"):
        compare(teacher, str(vocab), "sst2", samples=4)


def test_run_retention_caches_and_cli(pruned_run, capsys):
    res = run_retention(pruned_run.path, samples=16)
    assert (pruned_run.path / "retention.json").is_file()
    assert 0 < res["mean_similarity"] <= 1 and len(res["similarity"]) == 2 and len(res["similarity"][0]) == 4
    assert run_retention(pruned_run.path, samples=16) == res  # from the cache
    (pruned_run.path / "retention.json").write_text('{"samples_requested": 16, "mean_sim', encoding="utf-8")
    again = run_retention(pruned_run.path, samples=16)  # a damaged cache is measured again, not a crash
    assert again["mean_similarity"] == pytest.approx(res["mean_similarity"])
    assert json.loads((pruned_run.path / "retention.json").read_text(encoding="utf-8")) == again
    teacher = pruned_run.report()["teacher"]["path"]
    assert main(["attention", teacher, str(pruned_run.path), "--task", "sst2", "--samples", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean_similarity"] == pytest.approx(res["mean_similarity"])


def test_bertviz_html_is_offline(teacher):
    model, tok = load_for_attention(teacher)
    tokens, maps = sentence_attention(model, tok, "a fine film .")
    assert len(maps) == 2 and maps[0].shape == (1, 4, len(tokens), len(tokens))
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(1, 4, len(tokens)))
    html = head_view_html(maps, tokens, title="t")
    assert external_urls(html) == []
    assert "http://" not in html and "https://" not in html
    assert "requirejs" not in html and "require.config" not in html
    assert "d3.version" in html and "jQuery" in html


def test_attention_page(tiny_store, pruned_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KASP_RUNS_DIR", str(tiny_store))
    at = AppTest.from_file(str(ROOT / "pages" / "attention.py"), default_timeout=120)
    at.session_state["task"] = "sst2"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    at.selectbox[0].set_value("ret-kasp70").run()
    assert not at.exception, [e.message for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    res = json.loads((pruned_run.path / "retention.json").read_text())
    assert float(metrics["Attention similarity"]) == pytest.approx(res["mean_similarity"], abs=5e-4)
    iframes = at.get("iframe")
    assert len(iframes) == 2
    assert all(external_urls(f.proto.srcdoc) == [] for f in iframes)
    assert any("not explanations" in c.value for c in at.caption)


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
    # one shipped student in detail (the sweep's KASP at 90 %), and why the per-sentence views need a live run
    assert at.selectbox(key="att_run").value == "sweep/kasp@0.9/seed42"
    assert len(at.get("plotly_chart")) >= 4
    assert any("Shipped runs come without their weights" in i.value for i in at.info)
