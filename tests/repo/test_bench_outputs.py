"""Committed benchmark outputs agree with the data they were written from."""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, load_script

CACHE_JSON = ROOT / "bench" / "teacher_cache.json"


def test_the_teacher_cache_write_up_is_its_json():
    """bench/teacher_cache.md is what bench/teacher_cache.py's markdown() makes of bench/teacher_cache.json, and a
    committed measurement is a full one (not --quick) with both tasks and the side-by-side part."""
    if not CACHE_JSON.is_file():
        pytest.skip("bench/teacher_cache.json not committed yet")
    tc = load_script("teacher_cache", "bench")
    result = json.loads(CACHE_JSON.read_text())
    assert (ROOT / "bench" / "teacher_cache.md").read_text() == tc.markdown(result)
    assert result["quick"] is False and set(result["tasks"]) == {"sst2", "mrpc"} and "side_by_side" in result
    for r in result["tasks"].values():  # the derived figures are the epoch times'
        assert r["saving_of_the_run"] == pytest.approx(1 - sum(r["cache"]) / sum(r["no_cache"]))


def test_the_write_up_shows_each_epoch_and_the_saving():
    tc = load_script("teacher_cache", "bench")
    r = {"no_cache": [10.0, 10.0, 10.0], "cache": [11.0, 5.0, 5.0], "saving_of_the_run": 0.3, "later_epoch_ratio": 0.5,
         "first_epoch_ratio": 1.1, "samples": 1024, "max_seq_length": 128, "steps_per_epoch": 32}
    md = tc.markdown({"date": "d", "machine": {"cpus": 2, "torch": "t", "threads": 2}, "quick": False, "tasks": {"mrpc": r}})
    assert "| mrpc (128) | 1,024 | 32 | 10.0 / 10.0 / 10.0 | 11.0 / 5.0 / 5.0 | 0.50× | 30.0 % |" in md
    assert "QUICK" not in md and "steps/s" not in md


def test_the_cpu_page_quotes_the_teacher_cache_benchmark():
    """docs/cpu.md's "about 0.82×", "12 to 13 % shorter" and "2.13 against 1.64 ... (about 1.3×)" are the JSON's."""
    if not CACHE_JSON.is_file():
        pytest.skip("bench/teacher_cache.json not committed yet")
    result = json.loads(CACHE_JSON.read_text())
    page = " ".join((ROOT / "docs" / "cpu.md").read_text(encoding="utf-8").split())
    for r in result["tasks"].values():
        assert round(r["later_epoch_ratio"], 2) == pytest.approx(0.82, abs=0.015)
        assert 12 <= 100 * r["saving_of_the_run"] <= 13 and "a 3-epoch run is 12 to 13 % shorter" in page
    sbs = result["side_by_side"]
    assert f"{sbs['two_1thread_total']:.2f} against {sbs['one_2thread_steps_per_s']:.2f}" in page
    assert f"about {sbs['ratio_two_over_one']:.1f}×" in page and "epochs 2 and 3 take about 0.82×" in page
