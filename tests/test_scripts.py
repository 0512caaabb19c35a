"""The maintainer's script that writes the shipped precomputed runs (scripts/export_precomputed.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from kasp.runs import RunDir
from kasp.views import load_precomputed, precomputed_frame

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("export_precomputed", ROOT / "scripts" / "export_precomputed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_export_precomputed_writes_what_the_app_reads(tiny_store, tmp_path, capsys):
    mod = _script()
    out = tmp_path / "runs.json"
    run = tmp_path / "teacher"
    shutil.copytree(tiny_store / "teacher", run)
    (run / "retention.json").write_text(json.dumps({"mean_cka": 0.5, "per_head_big": [1, 2]}))
    assert mod.main([str(run), "--out", str(out), "--machine", "test box"]) == 0
    (entry,) = load_precomputed(out)
    rep = RunDir(run).report()
    assert entry["id"] == "precomputed/teacher" and entry["machine"] == "test box"
    assert entry["metric"] == rep["metrics"][rep["main_metric"]]
    assert entry["per_matrix_sparsity"] == rep["per_matrix_sparsity"]
    assert entry["retention"] == {"mean_cka": 0.5}  # only the summary measures are shipped
    assert entry["progress"] == RunDir(run).progress()
    frame = precomputed_frame("sst2", out)
    assert list(frame["source"]) == ["precomputed run"]


def test_export_precomputed_refuses_unfinished_runs(tmp_path, capsys):
    RunDir.create(tmp_path / "r").set_status("running")
    assert _script().main([str(tmp_path / "r"), "--out", str(tmp_path / "o.json")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()
