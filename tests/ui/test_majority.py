"""The shipped majority-class baselines (assets/precomputed/majority.json) are what glue_metrics computes on the
shipped dev sets now, for every task with dev labels, so that reading them instead of computing cannot drift."""

from __future__ import annotations

import json

from kasp.ground.resources import precomputed_path
from kasp.spec.tasks import get_task
from kasp.ui import devset


def test_the_shipped_baselines_are_the_computed_ones():
    shipped = json.loads(precomputed_path(devset.MAJORITY_FILE).read_text())
    expected = {t for t in devset.dev_tasks() if not get_task(t).is_regression}
    assert set(shipped) == expected
    for task, entry in shipped.items():
        assert entry["metrics"] == devset.compute_majority_baseline(task), task
        devset.majority_baseline.cache_clear()
        assert devset.majority_baseline(task) == entry["metrics"]


def test_a_changed_dev_file_is_computed_again(monkeypatch):
    devset.majority_baseline.cache_clear()
    monkeypatch.setattr(devset, "_dev_sha256", lambda task: "another dev file")
    calls = []
    monkeypatch.setattr(devset, "compute_majority_baseline", lambda task: calls.append(task) or {"accuracy": 0.5})
    assert devset.majority_baseline("sst2") == {"accuracy": 0.5} and calls == ["sst2"]
    devset.majority_baseline.cache_clear()
