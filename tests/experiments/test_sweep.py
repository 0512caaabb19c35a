"""`kasp sweep`: the plan, resume after a kill, results-file validation, the class recipe and a sweep's
teacher (issue 15). Tiny random BERTs only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from kasp.ground.errors import KaspError

from tests.helpers import ROOT, valid_sweep_results

MINILM = SimpleNamespace(num_hidden_layers=6, hidden_size=384, intermediate_size=1536)
LAYER = 4 * 384 * 384 + 2 * 384 * 1536  # encoder linear weights of one MiniLM layer


# --- the plan and the results file -----------------------------------------------------------------
def test_plan_of_the_issue_sweep():
    from kasp.experiments.results import plan_runs

    plan = plan_runs([0.5, 0.7, 0.9, 0.95], seeds=[42, 43], small_dense_sparsities=[0.5, 0.9],
                     multi_seed_sparsities=[0.9])
    keys = [r.key for r in plan]
    assert len(keys) == len(set(keys)) == 4 * 2 + 2 + 3
    assert [r.key for r in plan if r.seed == 43] == ["kasp@0.9/seed43", "magnitude@0.9/seed43", "small-dense@0.9/seed43"]
    from kasp.experiments.sweep import SweepOptions

    full = SweepOptions(task="sst2").plan(MINILM)  # the default sparsities on MiniLM-L6
    small = [r.sparsity for r in full if r.method == "small-dense"]
    assert small == [0.5, 0.7, 0.8, 0.9, 0.95]  # 97 % would be the same one-layer, 32-neuron student as 95 %
    assert len(full) == 6 * 2 + 5
    with pytest.raises(KaspError, match="outside"):
        plan_runs([90])
    with pytest.raises(KaspError, match="unknown sweep method"):
        plan_runs([0.9], methods=["kasp", "lottery"])


def test_an_augmented_sweep_runs_apart_from_the_plain_one(tmp_path):
    """``kasp sweep --augment N``: every run's recipe carries the augmentation, its runs and results file
    are named apart (the plain sweep's are never touched), and glue sentences with the magnitude
    baseline (no teacher to label them) are refused before anything trains."""
    from kasp.experiments.sweep import SweepOptions, check_settings

    plain = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,))
    aug = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,), augment=30)
    assert aug.results_path() == tmp_path / "sweeps" / "mrpc-augment-words30.json" != plain.results_path()
    assert aug.sweep_dir() != plain.sweep_dir()
    run = aug.plan()[0]
    cfg = aug.run_config(run, "teacher")
    assert (cfg.augment, cfg.augment_source) == (30, "words")
    assert plain.run_config(run, "teacher").augment == 0
    bad = SweepOptions(task="mrpc", runs_dir=str(tmp_path), methods=("kasp", "magnitude"), sparsities=(0.9,),
                       augment=1, augment_source="glue")
    with pytest.raises(KaspError, match="invalid sweep settings.*glue"):
        check_settings(bad, bad.plan())


def test_recipe_overrides_make_a_trial_of_their_own(tmp_path):
    """``kasp sweep --set FIELD=VALUE``: the knob trials of issue 14 (two seeds each, KASP at 0.9)."""
    from kasp.experiments.sweep import SweepOptions, parse_overrides

    ov = parse_overrides(["temperature=2", "lr=2e-4", "hidden-weight=0.5"])
    assert ov == (("temperature", 2), ("lr", 2e-4), ("hidden_weight", 0.5))
    opt = SweepOptions(task="sst2", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,), seeds=(42, 43),
                       overrides=ov)
    assert opt.results_path().name == "sst2-temperature2-lr0.0002-hidden_weight0.5.json"
    cfgs = [opt.run_config(r, "teacher") for r in opt.plan()]
    assert [(c.seed, c.temperature, c.lr, c.hidden_weight) for c in cfgs] == [(42, 2, 2e-4, 0.5), (43, 2, 2e-4, 0.5)]
    # two trials with their own results files (e.g. other step budgets) never share run folders
    a = SweepOptions(task="sst2", runs_dir=str(tmp_path), results=str(tmp_path / "class-steps300.json"))
    b = SweepOptions(task="sst2", runs_dir=str(tmp_path), results=str(tmp_path / "class-steps500.json"))
    assert a.sweep_dir() != b.sweep_dir() and a.sweep_dir().parent == tmp_path / "sweeps"
    for bad, msg in ((["tau"], "write FIELD=VALUE"), (["tau=2"], "not a recipe field"),
                     (["max_steps=10"], "sets max_steps itself")):
        with pytest.raises(KaspError, match=msg):
            parse_overrides(bad)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: "{not json", "is not valid JSON"),
    (lambda d: {"runs": []}, "is not a KASP sweep results file"),
    (lambda d: [1, 2], "is not a KASP sweep results file"),
    (lambda d: {**d, "schema_version": 7}, "newer than this KASP reads"),
    (lambda d: {**d, "schema_version": 0}, "broken KASP sweep results file: at schema_version"),
    (lambda d: {k: v for k, v in d.items() if k != "teacher"}, "'teacher' is a required property"),
    (lambda d: {**d, "runs": [{**d["runs"][0], "metric": "86 %"}]}, "at runs/0/metric"),
    (lambda d: {**d, "runs": [{**d["runs"][0], "method": "lottery"}]}, "at runs/0/method"),
])
def test_bad_results_files_get_a_clear_message(tmp_path, mutate, message):
    from kasp.experiments.results import load_results

    p = tmp_path / "sst2.json"
    bad = mutate(valid_sweep_results())
    p.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(KaspError, match=message) as e:
        load_results(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    assert load_results(_write(tmp_path / "ok.json", valid_sweep_results()))["runs"][0]["metric"] == 0.86


def _write(p: Path, obj) -> Path:
    p.write_text(json.dumps(obj))
    return p


def test_sweep_refuses_a_broken_results_file_and_leaves_it(tmp_path, capsys):
    from kasp.cli import main

    p = tmp_path / "sst2.json"
    p.write_text('{"format": "kasp-sweep", "schema_version": 1, "runs": "oops"')
    before = p.read_bytes()
    assert main(["sweep", "--task", "sst2", "--results", str(p), "--runs-dir", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert "is not valid JSON" in err and "Traceback" not in err
    assert p.read_bytes() == before


# --- resume after a kill ---------------------------------------------------------------------------
def _sweep_cmd(tiny_store: Path, tiny_pretrained: Path, results: Path) -> list[str]:
    return [sys.executable, "-m", "kasp", "sweep", "--task", "sst2", "--model", str(tiny_pretrained),
            "--teacher", str(tiny_store / "teacher"), "--runs-dir", str(results.parent / "store"),
            "--results", str(results), "--sparsities", "0.8", "--max-steps", "12", "--max-train-samples", "128",
            "--max-eval-samples", "32", "--retention-samples", "8"]


def _entries(results: Path) -> dict[str, dict]:
    try:
        return {e["key"]: e for e in json.loads(results.read_text())["runs"]}
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.mark.slow
def test_sweep_killed_mid_run_resumes_without_redoing_finished_runs(tiny_store, tiny_pretrained, tmp_path):
    """SIGKILL the sweep while its second run trains; the restart redoes only that run."""
    results = tmp_path / "sweep" / "sst2.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_sweep_cmd(tiny_store, tiny_pretrained, results), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    sweep_dir = results.parent / "store" / "sweeps" / "sst2"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:  # wait for the first recorded run, then for the second run's progress log
            first = _entries(results)
            if len(first) >= 1 and any((d / "progress.jsonl").is_file() for d in sweep_dir.iterdir()
                                       if d.name != next(iter(first.values()))["run_id"]):
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it could be killed:\n{proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("the sweep recorded no run in 240 s")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = _entries(results)
    assert 1 <= len(killed) < 3, "the kill should land while the second run trains"
    validated = __import__("kasp.experiments.results", fromlist=["load_results"]).load_results(results)  # never half-written
    assert len(validated["runs"]) == len(killed)

    second = subprocess.run(_sweep_cmd(tiny_store, tiny_pretrained, results), env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    final = _entries(results)
    assert sorted(final) == sorted(["kasp@0.8/seed42", "magnitude@0.8/seed42", "small-dense@0.8/seed42"])
    for key, e in killed.items():  # finished before the kill: kept as they were, not run again
        assert final[key] == e
    started = second.stderr.count("starting ")
    assert started == 3 - len(killed)
    assert f"{len(killed)} of 3 runs already in" in second.stderr
    assert "runs done; about" in second.stderr and "left" in second.stderr
    # a third start has nothing to do
    from kasp.experiments.sweep import SweepOptions

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), max_steps=12, max_train_samples=128,
                       max_eval_samples=32, teacher=str(tiny_store / "teacher"), runs_dir=str(results.parent / "store"),
                       results=str(results))
    cfgs = {r.key: opt.run_config(r, str(tiny_store / "teacher" / "checkpoint")) for r in opt.plan()}
    assert all(final[k]["recipe"] | {"teacher": None} == c.to_dict() | {"teacher": None} for k, c in cfgs.items())
    before = results.read_bytes()
    again = __import__("kasp.experiments.sweep", fromlist=["run_sweep"]).run_sweep(opt)
    assert results.read_bytes() == before, "a sweep with nothing to run must leave its file untouched"
    assert {e["key"] for e in again["runs"]} == set(final)
    e = final["small-dense@0.8/seed42"]
    assert e["small_dense"]["layers"] == 1 and e["nonzero_encoder_linear"] == e["small_dense"]["encoder_linear"]
    k = final["kasp@0.8/seed42"]
    assert k["measured_sparsity"] == pytest.approx(0.8, abs=1e-3) and k["retention"]["samples"] == 8
    assert k["recipe"]["max_steps"] == 12 and k["progress"]["eval"] and k["per_matrix_sparsity"]
    assert not (sweep_dir / "kasp-s80-seed42" / "checkpoint").exists()  # weights are not kept


# --- the class preset ------------------------------------------------------------------------------
def test_class_recipe_has_a_section_per_command(tmp_path):
    from kasp.spec.config import load_recipe, make_config
    from kasp.training.estimate import estimate_seconds

    ft, pr = load_recipe("class", "finetune"), load_recipe("class", "prune")
    teacher = make_config("finetune", "finetune", "sst2", **ft)
    student = make_config("prune", "kasp", "sst2", **pr)
    assert teacher.sparsity == 0 and student.sparsity == 0.9
    # the preset's purpose: ~2 min teacher, <= 5 min prune at the platform notes' speed of MiniLM on 2 cores
    t_est, _ = estimate_seconds("finetune", teacher.max_steps, evals=1, store=tmp_path)
    p_est, _ = estimate_seconds("kasp", student.max_steps, evals=student.max_steps // student.eval_every, store=tmp_path)
    assert t_est <= 150 and p_est <= 300
    with pytest.raises(KaspError, match="no section for `kasp evaluate`"):
        load_recipe("class", "evaluate")
    with pytest.raises(KaspError, match="not found: give a JSON file or one of .*class"):
        load_recipe("klass", "prune")


@pytest.mark.slow
def test_cli_class_recipe_flags_override(tiny_store, tiny_pretrained):
    from kasp.cli import main
    from kasp.ground.runs import RunDir

    out = tiny_store / "class-run"
    assert main(["prune", "--task", "sst2", "--recipe", "class", "--method", "magnitude", "--model", str(tiny_pretrained),
                 "--max-steps", "4", "--max-train-samples", "64", "--max-eval-samples", "16", "--runs-dir", str(tiny_store),
                 "--out", str(out), "--no-progress"]) == 0
    rec = RunDir(out).recipe()
    assert (rec["sparsity"], rec["method"], rec["max_steps"], rec["eval_every"]) == (0.9, "magnitude", 4, 100)


@pytest.mark.slow
def test_sweep_trains_its_teacher_once_and_reuses_it(tiny_pretrained, tmp_path):
    from kasp.ground.runs import list_runs
    from kasp.experiments.sweep import SweepOptions, run_sweep

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.5,), methods=("kasp",), teacher_steps=4,
                       max_steps=4, max_train_samples=64, max_eval_samples=16, runs_dir=str(tmp_path / "store"),
                       retention_samples=0)
    first = run_sweep(opt)
    teachers = [r for r in list_runs(tmp_path / "store") if r.recipe().get("kind") == "finetune"]
    assert len(teachers) == 1 and first["teacher"]["trained_by_sweep"] is True
    assert first["teacher"]["run_id"] == teachers[0].id and first["plan"]["budget"]["teacher_steps"] == 4
    assert [e["key"] for e in first["runs"]] == ["kasp@0.5/seed42"] and first["runs"][0]["retention"] is None
    second = run_sweep(opt)  # nothing to do: same teacher, same recipe
    assert len([r for r in list_runs(tmp_path / "store") if r.recipe().get("kind") == "finetune"]) == 1
    assert second["runs"] == first["runs"] and second["teacher"]["trained_by_sweep"] is False
    opt.max_steps = 6  # a changed recipe is run again
    third = run_sweep(opt)
    assert third["runs"][0]["recipe"]["max_steps"] == 6 and third["runs"][0]["finished"] >= first["runs"][0]["finished"]


def test_bad_sweep_settings_are_refused_before_any_training(tmp_path, capsys):
    from kasp.cli import main

    for flags in (["--max-steps", "-5"], ["--max-seq-length", "600"], ["--max-train-samples", "0"]):
        for dry in ([], ["--dry-run"]):
            rc = main(["sweep", "--task", "mrpc", "--runs-dir", str(tmp_path / "store"), *flags, *dry])
            assert rc == 2
            assert "invalid sweep settings" in capsys.readouterr().err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").iterdir())  # no teacher was trained


def test_runs_recorded_before_a_new_recipe_field_are_not_redone():
    """A results file written before a recipe field existed (e.g. time_budget, None by default) still
    matches the same run's recipe now; a real change of a field does not."""
    from kasp.spec.config import make_config
    from kasp.experiments.sweep import _comparable

    now = make_config("prune", "kasp", "mrpc", sparsity=0.9, max_steps=200).to_dict()
    before = {k: v for k, v in now.items() if k != "time_budget"}
    assert _comparable(before) == _comparable(now)
    assert _comparable({**before, "lr": 2e-4}) != _comparable(now)
    # a field added with a non-None default (freeze_word_embeddings=False): the old runs still match, the flag set does not
    older = {k: v for k, v in now.items() if k != "freeze_word_embeddings"}
    assert now["freeze_word_embeddings"] is False and _comparable(older) == _comparable(now)
    assert _comparable({**now, "freeze_word_embeddings": True}) != _comparable(now)
    # the study's recorded runs match the study's recipe of today (the bug that reran sst2-base)
    import json

    from tests.helpers import ROOT

    rec = json.loads((ROOT / "bench" / "study" / "sst2-base.json").read_text())["runs"][0]["recipe"]
    from kasp.experiments.sweep import SweepOptions

    opt = SweepOptions(task="sst2", sparsities=(0.9,), methods=("kasp",), seeds=(42, 43), overrides=(("holdout", 872),))
    planned = next(r for r in opt.plan() if r.method == "kasp" and r.seed == rec["seed"])
    again = opt.run_config(planned, rec["teacher"]).to_dict()
    # ... but for the fields SST-2's KASP default adopted from the study on 2026-12-03 (so run_study.sh never
    # reruns a finished line); with those set back to the recorded values, the recipes match again
    from kasp.spec.config import ADOPTED

    diff = {k for k in set(rec) | set(again) if _comparable(rec).get(k) != _comparable(again).get(k)}
    assert diff == set(ADOPTED[("kasp", "sst2")]) - {"max_steps"}, diff  # the sweep's own budget: 2,000 steps
    back = SweepOptions(task="sst2", sparsities=(0.9,), methods=("kasp",), seeds=(42, 43),
                        overrides=(("holdout", 872), *((k, rec[k]) for k in sorted(diff))))
    again = back.run_config(next(r for r in back.plan() if r.method == "kasp" and r.seed == rec["seed"]),
                            rec["teacher"]).to_dict()
    assert _comparable(rec) == _comparable(again), {k: (rec.get(k), again.get(k)) for k in set(rec) | set(again)
                                                     if _comparable(rec).get(k) != _comparable(again).get(k)}


@pytest.mark.slow
def test_an_interrupted_sweep_run_continues_from_its_last_evaluation_point(tiny_store, tiny_pretrained, tmp_path,
                                                                            capsys):
    """Stopped after its first evaluation point, a sweep's run is continued (not redone) when the sweep
    starts again, and ends with the same weights' story and metric as an uninterrupted sweep."""
    from kasp.experiments.sweep import SweepOptions, run_sweep
    from kasp.training.train import Cancelled

    def opt(name):
        return SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=("kasp",),
                            max_steps=12, max_train_samples=128, max_eval_samples=32, retention_samples=0,
                            teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path / "store"),
                            results=str(tmp_path / f"{name}.json"))

    stopped = opt("stopped")
    run_dir = stopped.sweep_dir() / "kasp-s80-seed42"
    with pytest.raises(Cancelled):  # stop once the first resume state (step 3 of 12) is written
        run_sweep(stopped, should_stop=lambda: (run_dir / "resume.json").is_file())
    capsys.readouterr()
    resumed = run_sweep(stopped)
    err = capsys.readouterr().err
    assert "kasp@0.8/seed42 was interrupted: resuming it from resume-3" in err
    whole = run_sweep(opt("whole"))
    a, b = resumed["runs"][0], whole["runs"][0]
    assert a["metric"] == b["metric"] and a["per_matrix_sparsity"] == b["per_matrix_sparsity"]
    assert a["weights_story"] == b["weights_story"]
    steps = [r["step"] for r in a["progress"]["train"]]
    assert steps == sorted(set(steps))  # no progress record twice

    # a damaged resume state: the run starts again from the beginning instead of stopping the sweep
    damaged = opt("damaged")
    run_dir = damaged.sweep_dir() / "kasp-s80-seed42"
    with pytest.raises(Cancelled):
        run_sweep(damaged, should_stop=lambda: (run_dir / "resume.json").is_file())
    for f in run_dir.glob("resume-*/tensors.safetensors"):
        f.write_bytes(b"not a safetensors file")
    capsys.readouterr()
    again = run_sweep(damaged)
    assert "could not resume" in capsys.readouterr().err
    assert again["runs"][0]["metric"] == b["metric"]


# --- one sweep per task and store (issue 26) ------------------------------------------------------
_HOLD = ("import sys, time\n"
         "from kasp.experiments.sweep import sweep_lock\n"
         "with sweep_lock(sys.argv[1], sys.argv[2]):\n"
         "    print('held', flush=True)\n"
         "    time.sleep(120)\n")


@pytest.mark.slow
def test_a_second_sweep_of_the_same_task_and_store_stops_at_once(tmp_path, capsys):
    from kasp.cli import main
    from kasp.experiments.sweep import sweep_lock

    store = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, "mrpc", str(store)], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        rc = main(["sweep", "--task", "mrpc", "--runs-dir", str(store), "--methods", "kasp", "--sparsities", "0.5"])
        err = capsys.readouterr().err
        assert rc == 2 and time.time() - t0 < 30  # no teacher was fine-tuned, nothing waited
        assert err.count("\n") == 1 and f"pid {holder.pid}" in err and "started 20" in err and "UTC" in err
        assert "another kasp sweep of mrpc is running" in err and "nothing was started" in err
        assert sorted(p.name for p in store.iterdir()) == ["sweeps"]  # no run, no results file
        assert not [p for p in (store / "sweeps").iterdir() if not p.name.startswith(".sweep-mrpc.")]
        with pytest.raises(KaspError, match=f"pid {holder.pid}"):  # a second holder in this process too
            with sweep_lock("mrpc", store):
                pass
        with sweep_lock("rte", store):  # another task on the same store: free
            pass
        with sweep_lock("mrpc", tmp_path / "other-store"):  # the same task on another store: free
            pass
    finally:
        holder.kill()
        holder.wait()
    with sweep_lock("mrpc", store):  # the holder was killed: the system released its lock
        assert json.loads((store / "sweeps" / ".sweep-mrpc.holder.json").read_text())["pid"] == os.getpid()
    assert not (store / "sweeps" / ".sweep-mrpc.holder.json").exists()


@pytest.mark.slow
def test_a_sweep_run_killed_after_its_report_is_recorded_not_retrained(tiny_store, tiny_pretrained, tmp_path, capsys):
    from kasp.ground.runs import RunDir
    from kasp.experiments.sweep import SweepOptions, run_sweep

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=("kasp",), max_steps=4,
                       max_train_samples=64, max_eval_samples=16, retention_samples=0, keep_checkpoints=True,
                       teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path))
    first = run_sweep(opt)["runs"][0]
    run = RunDir(tmp_path / "sweeps" / "sst2" / "kasp-s80-seed42")
    progress = (run.path / "progress.jsonl").read_bytes()
    # as if the process had been killed after writing its report, before its final status and its results entry
    run.set_status("running", pid=2 ** 22 + 54321)  # a pid no process has
    opt.results_path().unlink()
    capsys.readouterr()
    again = run_sweep(opt)["runs"][0]
    assert "finished before the last stop but was not recorded: recording it" in capsys.readouterr().err
    assert run.state() == "done" and (run.path / "progress.jsonl").read_bytes() == progress  # not trained again
    assert again["metric"] == first["metric"] and again["run_id"] == first["run_id"]


# --- runs at once (--jobs) -------------------------------------------------------------------------
def _jobs_opt(tiny_store, tiny_pretrained, tmp_path, name, methods=("kasp", "magnitude"), max_steps=12, **kw):
    from kasp.experiments.sweep import SweepOptions

    return SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=methods,
                        seeds=(42, 43), max_steps=max_steps, max_train_samples=128, max_eval_samples=32, retention_samples=8,
                        teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path / "store"),
                        results=str(tmp_path / f"{name}.json"), num_threads=1, **kw)


@pytest.mark.slow
def test_runs_at_once_give_the_same_results_as_one_at_a_time(tiny_store, tiny_pretrained, tmp_path, capfd):
    """``--jobs 2``: four runs, two at a time in their own processes, recorded with the same metrics,
    masks and weights' story as the same sweep one run at a time (same seeds, same thread count)."""
    from kasp.experiments.sweep import run_sweep

    one = run_sweep(_jobs_opt(tiny_store, tiny_pretrained, tmp_path, "one"))
    capfd.readouterr()
    two = run_sweep(_jobs_opt(tiny_store, tiny_pretrained, tmp_path, "two", jobs=2))
    err = capfd.readouterr().err
    assert "4 to run, 2 at a time" in err
    assert len({line.split("(process ")[1].split(",")[0] for line in err.splitlines() if "(process " in line}) == 2
    a = {e["key"]: e for e in one["runs"]}
    b = {e["key"]: e for e in two["runs"]}
    assert sorted(a) == sorted(b) == sorted(["kasp@0.8/seed42", "kasp@0.8/seed43", "magnitude@0.8/seed42",
                                             "magnitude@0.8/seed43"])
    for k in a:
        assert b[k]["metric"] == a[k]["metric"], k
        assert b[k]["per_matrix_sparsity"] == a[k]["per_matrix_sparsity"], k
        assert b[k]["weights_story"] == a[k]["weights_story"], k
        assert b[k]["retention"]["mean_similarity"] == pytest.approx(a[k]["retention"]["mean_similarity"], abs=1e-6)
        assert b[k]["recipe"]["num_threads"] == 1
        assert [r["loss"] for r in b[k]["progress"]["train"]] == [r["loss"] for r in a[k]["progress"]["train"]], k

    def losses(e):
        return [r["loss"] for r in e["progress"]["train"]]

    assert losses(a["kasp@0.8/seed42"]) != losses(a["kasp@0.8/seed43"])  # the seeds differ: the test can tell runs apart


@pytest.mark.slow
def test_a_stopped_parallel_sweep_stops_every_job_and_resumes(tiny_store, tiny_pretrained, tmp_path, capfd):
    """A stop reaches both jobs (each ends after its step); nothing half-done is recorded; the same
    sweep started again continues the interrupted runs from their evaluation points and finishes."""
    from kasp.experiments.results import load_results
    from kasp.experiments.sweep import run_sweep
    from kasp.training.train import Cancelled

    # 200 steps (evaluation points every 50): the stop lands long before the runs end, however fast the machine
    opt = _jobs_opt(tiny_store, tiny_pretrained, tmp_path, "stopped", methods=("kasp",), max_steps=200, jobs=2)
    dirs = [opt.sweep_dir() / f"kasp-s80-seed{s}" for s in (42, 43)]
    with pytest.raises(Cancelled):  # stop once both runs have written a resume state
        run_sweep(opt, should_stop=lambda: all((d / "resume.json").is_file() for d in dirs))
    assert load_results(opt.results_path())["runs"] == []
    assert all(not (d / "report.json").exists() for d in dirs)  # both stopped before the end
    capfd.readouterr()
    done = run_sweep(opt)
    err = capfd.readouterr().err
    assert err.count("was interrupted: resuming it from resume-") == 2
    assert sorted(e["key"] for e in done["runs"]) == ["kasp@0.8/seed42", "kasp@0.8/seed43"]
    whole = run_sweep(_jobs_opt(tiny_store, tiny_pretrained, tmp_path, "whole", methods=("kasp",), max_steps=200))
    assert {e["key"]: e["metric"] for e in done["runs"]} == {e["key"]: e["metric"] for e in whole["runs"]}


def test_jobs_must_be_a_positive_count(tmp_path):
    from kasp.experiments.sweep import SweepOptions, check_settings, threads_per_job

    for bad in (0, -1, 1.5, True):
        opt = SweepOptions(task="sst2", runs_dir=str(tmp_path), methods=("kasp",), sparsities=(0.9,), jobs=bad)
        with pytest.raises(KaspError, match="--jobs"):
            check_settings(opt, opt.plan())
    assert threads_per_job(1) >= threads_per_job(2) >= 1 and threads_per_job(10_000) == 1


@pytest.mark.slow
def test_sigterm_to_the_group_stops_a_parallel_sweep_cleanly(tiny_store, tiny_pretrained, tmp_path):
    """``kill -- -PGID`` (how scripts/run_study.sh is stopped) on ``kasp sweep --jobs 2``: the sweep exits
    130 with its message, no job process is left behind, and the same command finishes the sweep."""
    results = tmp_path / "sweep" / "sst2.json"
    cmd = [*_sweep_cmd(tiny_store, tiny_pretrained, results), "--seeds", "42", "43", "--methods", "kasp",
           "--jobs", "2", "--num-threads", "1"]
    cmd[cmd.index("--max-steps") + 1] = "200"  # long enough to be stopped mid-run
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    sweep_dir = results.parent / "store" / "sweeps" / "sst2"
    deadline = time.time() + 240
    try:
        while not all((sweep_dir / f"kasp-s80-seed{s}" / "resume.json").is_file() for s in (42, 43)):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"both jobs should be mid-run:\n{proc.stderr.read()[-2000:]}")
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "sweep stopped" in err and "run the same command to resume" in err
    for _ in range(100):  # the jobs (and multiprocessing's resource tracker) end with the sweep, within seconds
        left = subprocess.run(["pgrep", "-a", "-g", str(proc.pid)], capture_output=True, text=True).stdout.splitlines()
        if not left:
            break
        time.sleep(0.1)
    assert left == [], f"processes left behind: {left}"
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("was interrupted: resuming it from resume-") == 2
    assert sorted(_entries(results)) == ["kasp@0.8/seed42", "kasp@0.8/seed43"]


# --- budgets in epochs (issue 29) ------------------------------------------------------------------
def test_epochs_become_the_steps_a_run_counts(tmp_path):
    """``kasp sweep --epochs 5`` on MRPC with the study's 408-example slice is the study's 510 steps (3,668 - 408
    = 3,260 examples, 102 batches of 32); without the slice 5 x 115; the teacher counts the whole split."""
    from kasp.experiments.sweep import SweepOptions, steps_for_epochs

    opt = SweepOptions(task="mrpc", runs_dir=str(tmp_path), epochs=5, teacher_epochs=10, overrides=(("holdout", 408),))
    b = opt.budget()
    assert (b["max_steps"], b["epochs"], b["teacher_steps"], b["teacher_epochs"]) == (510, 5, 1150, 10)
    assert b["max_seq_length"] == 128  # the task's length limit stays
    assert steps_for_epochs("mrpc", 5) == 575 and steps_for_epochs("mrpc", 0.5) == 58
    assert steps_for_epochs("mrpc", 1, batch_size=64) == 58 and steps_for_epochs("mrpc", 2, max_train_samples=100) == 8
    assert opt.run_config(opt.plan()[0], "t").max_steps == 510
    for bad in (0, -1, float("nan")):
        with pytest.raises(KaspError, match="--epochs"):
            steps_for_epochs("mrpc", bad)
    with pytest.raises(KaspError, match="not both"):
        SweepOptions(task="mrpc", epochs=5, max_steps=100).budget()
    with pytest.raises(KaspError, match="not both"):
        SweepOptions(task="mrpc", teacher_epochs=5, teacher_steps=100).budget()
    with pytest.raises(KaspError, match="leaves no"):
        SweepOptions(task="rte", epochs=1, overrides=(("holdout", 5000),)).budget()


def test_the_small_tasks_sweep_in_epochs_by_default():
    """Issue 29: a plain ``kasp sweep --task mrpc`` trains 5 epochs a run and 5 for the teacher (575 steps each on
    MRPC's 3,668 pairs), the CLI's defaults; steps given replace the epochs, and SST-2 keeps its step budgets."""
    from kasp.experiments.sweep import SweepOptions

    b = SweepOptions(task="mrpc").budget()
    assert (b["max_steps"], b["epochs"], b["teacher_steps"], b["teacher_epochs"]) == (575, 5.0, 575, 5.0)
    given = SweepOptions(task="mrpc", max_steps=100, teacher_steps=50).budget()
    assert (given["max_steps"], given["teacher_steps"]) == (100, 50) and "epochs" not in given and "teacher_epochs" not in given
    assert SweepOptions(task="sst2").budget() == {"teacher_steps": 1400, "max_steps": 2000, "max_seq_length": 64}


@pytest.mark.slow
def test_a_sweep_in_epochs_trains_that_many_epochs(tiny_store, tiny_pretrained, tmp_path):
    """The runs' own reports say they trained the epochs asked for (the sweep counts as the training loop does)."""
    from kasp.experiments.sweep import SweepOptions, run_sweep

    opt = SweepOptions(task="sst2", model=str(tiny_pretrained), sparsities=(0.8,), methods=("kasp",), epochs=1.5,
                       max_train_samples=100, max_eval_samples=16, retention_samples=0,
                       teacher=str(tiny_store / "teacher"), runs_dir=str(tmp_path / "store"),
                       results=str(tmp_path / "epochs.json"), overrides=(("holdout", 40),))
    res = run_sweep(opt)
    (run,) = res["runs"]
    assert run["steps"] == 6  # 1.5 x ceil(100 / 32)
    assert res["plan"]["budget"]["epochs"] == 1.5
    # the plan records the budget of the teacher given (kasp finetune --max-steps 8), not SST-2's default 1,400 steps
    assert res["plan"]["budget"]["teacher_steps"] == 8 and "teacher_epochs" not in res["plan"]["budget"]
    report = json.loads((opt.sweep_dir() / "kasp-s80-seed42" / "report.json").read_text())
    assert report["epochs"] == pytest.approx(1.5)


@pytest.mark.slow
def test_a_stop_while_the_jobs_start_is_a_clean_stop(tiny_store, tiny_pretrained, tmp_path):
    """SIGTERM to the group as soon as the sweep says it starts its jobs (they are still importing torch): the
    sweep stops with its usual message and exit 130, not 'a sweep job process died' (seen on the study's first
    run of kasp sweep --jobs 2, when a study line was stopped seconds after it began)."""
    results = tmp_path / "sweep" / "sst2.json"
    cmd = [*_sweep_cmd(tiny_store, tiny_pretrained, results), "--seeds", "42", "43", "--methods", "kasp",
           "--jobs", "2", "--num-threads", "1"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    err = ""
    try:
        for line in proc.stderr:  # the parent's line before it submits the jobs
            err += line
            if "2 at a time" in line:
                time.sleep(0.3)  # the job processes are being spawned
                os.killpg(proc.pid, signal.SIGTERM)
                break
        out, rest = proc.communicate(timeout=120)
        err += rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "sweep stopped" in err and "job process died" not in err, err[-2000:]
    assert _entries(results) == {}


def test_the_plan_records_the_budget_of_a_teacher_trained_in_epochs():
    """A sweep distilling from a --teacher trained in epochs (scripts/run_teachers.sh: 10 epochs) records that teacher's
    epochs in its plan, and no teacher step count: the small tasks' default (5 epochs) never ran."""
    from kasp.data.glue import get_task
    from kasp.experiments.sweep import SweepOptions, _results_header

    opt = SweepOptions(task="mrpc", teacher="runs/teachers/mrpc-holdout408-e10")
    assert opt.budget()["teacher_epochs"] == 5.0 and opt.budget()["teacher_steps"]  # the default it replaces
    head = _results_header(opt, [], get_task("mrpc"), {"recipe": {"epochs": 10.0, "max_steps": None}}, None)
    assert head["plan"]["budget"]["teacher_epochs"] == 10.0 and head["plan"]["budget"]["teacher_steps"] is None
    head = _results_header(opt, [], get_task("mrpc"), {"recipe": {}}, None)  # a teacher from elsewhere: not known
    assert head["plan"]["budget"]["teacher_steps"] is None and "teacher_epochs" not in head["plan"]["budget"]
    assert head["plan"]["budget"]["epochs"] == 5.0  # the runs' own budget is untouched
