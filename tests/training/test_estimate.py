"""Run-time estimates (kasp.training.estimate): per task, from the store's finished runs of that task, else the
shipped sweep's measured speeds; an MRPC step (pairs, length 128) costs several SST-2 steps."""
import json

import pytest

from kasp.ground.runs import RunDir
from kasp.ground.resources import shipped_dir
from kasp.training.estimate import estimate_seconds


def _shipped_median(task: str, method: str) -> float:
    runs = json.loads((shipped_dir("assets") / "sweeps" / f"{task}.json").read_text())["runs"]
    rates = sorted(e["train_seconds"] / e["steps"] for e in runs if e["method"] == method)
    return rates[len(rates) // 2]


def _done(store, name, task, method, steps, seconds):
    run = RunDir.create(store / name)
    run.write_config({"task": task, "method": method, "model": "default", "batch_size": 32}, {})
    run.write_report({"steps": steps, "train_seconds": seconds})
    run.set_status("done")
    return run


def test_an_empty_store_uses_the_shipped_sweeps_speed_of_the_task(tmp_path):
    sst2, src2 = estimate_seconds("kasp", 500, store=tmp_path, task="sst2")
    mrpc, src = estimate_seconds("kasp", 500, store=tmp_path, task="mrpc")
    assert mrpc == pytest.approx(20 + 500 * _shipped_median("mrpc", "kasp"))
    assert sst2 == pytest.approx(20 + 500 * _shipped_median("sst2", "kasp"))
    assert mrpc > 3 * sst2  # pairs at length 128 against single sentences at 64
    assert "assets/sweeps/mrpc.json" in src and "assets/sweeps/sst2.json" in src2
    teacher, tsrc = estimate_seconds("finetune", 350, store=tmp_path, task="mrpc")
    t = json.loads((shipped_dir("assets") / "sweeps" / "mrpc.json").read_text())["teacher"]
    rec = t["recipe"]
    if rec.get("max_steps"):  # a teacher fine-tuned for a step budget
        steps = rec["max_steps"]
    else:  # MRPC's grid teacher: 10 epochs of the 3,668 pairs less the 408 held out, at batch 32
        from kasp.experiments.sweep import steps_for_epochs

        steps = steps_for_epochs("mrpc", rec["epochs"], rec["batch_size"], rec["holdout"])
        assert steps == 1020
    assert teacher == pytest.approx(20 + 350 * (t["wall_seconds"] - 20) / steps)
    assert "teacher" in tsrc and "teacher's speed" in tsrc  # not the SST-2 fallback of docs/cpu.md


def test_the_stores_runs_of_the_same_task_come_first_and_other_tasks_stay_out(tmp_path):
    _done(tmp_path, "a-mrpc-kasp", "mrpc", "kasp", 100, 400.0)  # 4 s a step
    _done(tmp_path, "b-mrpc-kasp", "mrpc", "kasp", 100, 600.0)  # 6 s a step
    mrpc, src = estimate_seconds("kasp", 10, store=tmp_path, task="mrpc")
    assert mrpc == pytest.approx(20 + 10 * 6.0) and "2 finished kasp run(s)" in src and "on mrpc" in src
    sst2, src2 = estimate_seconds("kasp", 10, store=tmp_path, task="sst2")  # MRPC's slow steps do not leak in
    assert sst2 == pytest.approx(20 + 10 * _shipped_median("sst2", "kasp")) and "assets/sweeps" in src2
    # without a task (a caller that does not know it), every finished run of the method counts
    assert estimate_seconds("kasp", 10, store=tmp_path)[0] == pytest.approx(20 + 10 * 6.0)


def test_another_model_or_an_unshipped_task_falls_back_to_the_measured_default(tmp_path):
    from kasp.spec.methods import step_seconds

    for kw in ({"task": "sst2", "model": "bert-base-uncased"}, {"task": "no-such-task"}):
        est, src = estimate_seconds("kasp", 100, store=tmp_path, **kw)
        assert est == pytest.approx(20 + 100 * step_seconds("kasp")) and "docs/cpu.md" in src
