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
