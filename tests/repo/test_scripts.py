"""The maintainer scripts: the shipped precomputed runs (scripts/export_precomputed.py) and the detached
trials runner (scripts/run_trials.sh)."""

from __future__ import annotations

import importlib.util
import json
import sys
import shutil

import pytest

from kasp.ground.runs import RunDir
from kasp.ui.tables import load_precomputed, precomputed_frame

from tests.helpers import ROOT



def _load(name: str):
    """scripts/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _script():
    return _load("export_precomputed")


@pytest.mark.slow
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


def test_run_trials_runs_each_trial_line_and_commits_its_results(tmp_path):
    """scripts/run_trials.sh: one `kasp sweep` per trial line (name|flags; blanks, comments and bad
    names skipped), its results file committed into RESULTS_REPO; a fake python stands in for kasp."""
    import os
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "start"], check=True)
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "python"
    fake.write_text('#!/usr/bin/env bash\n[[ "$1" == *study_table.py ]] && exec "%s" "$@"\necho "$@" >> "%s"\n'
                    'while [[ $# -gt 0 ]]; do [[ "$1" == --results ]] && '
                    'mkdir -p "$(dirname "$2")" && echo "{}" > "$2"; shift; done\n' % (sys.executable, calls))
    fake.chmod(0o755)
    # a finished trial (every planned run recorded) is never rerun: an adopted default would make its runs stale
    (repo / "bench" / "trials").mkdir(parents=True)
    (repo / "bench" / "trials" / "done.json").write_text((ROOT / "bench" / "study" / "sst2-base.json").read_text())
    trials = ("\n # a comment\nfirst|--max-steps 10\n\nbad name!|--x\nsecond|--max-steps 20 --set lr=2e-4\n"
              "done|--max-steps 30\n")
    env = dict(os.environ, PY=str(fake), RESULTS_REPO=str(repo), KASP_RUNS_DIR=str(tmp_path / "store"), TRIALS=trials,
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "run_trials.sh"), "--foreground"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 2 and "--methods kasp --max-steps 10 --results" in lines[0]
    assert "--max-steps 20 --set lr=2e-4" in lines[1] and lines[1].endswith("bench/trials/second.json")
    assert "trial name 'badname!'" in out.stdout and "trial done: finished" in out.stdout
    log = subprocess.run([*git, "log", "--format=%s"], capture_output=True, text=True).stdout
    assert log.count("Trial ") == 2 and (repo / "bench" / "trials" / "first.json").is_file()


def test_budget_summary_collects_finished_runs_and_judges_the_budget(tmp_path):
    """scripts/budget_summary.py: one row per finished run, the metric of the run's main metric, and
    "within budget" from the run's own wall time against its --time-budget minutes."""
    mod = _load("budget_summary")
    for name, seed, wall, metric in (("a-seed42", 42, 14.5 * 60, 0.871), ("b-seed43", 43, 15.5 * 60, 0.862)):
        rd = tmp_path / name
        rd.mkdir()
        (rd / "config.json").write_text(json.dumps({"recipe": {"seed": seed}}))
        (rd / "report.json").write_text(json.dumps({
            "task": "sst2", "method": "kasp", "target_sparsity": 0.9, "sparsity": {"pruned_sparsity": 0.9},
            "main_metric": "accuracy", "metrics": {"accuracy": metric}, "teacher": {"metrics": {"accuracy": 0.8956}},
            "steps": 2400, "wall_seconds": wall, "train_seconds": wall - 60,
            "time_budget": {"minutes": 15, "steps": 2400}}))
    (tmp_path / "c-unfinished").mkdir()  # no report: left out
    data = mod.collect(tmp_path)
    assert [r["seed"] for r in data["runs"]] == [42, 43]
    assert [r["metric"] for r in data["runs"]] == [0.871, 0.862]
    lines = mod.table(data).splitlines()[2:]
    assert len(lines) == 2
    assert lines[0].endswith("| accuracy 87.10 | 89.56 | 14.5 | yes |")
    assert lines[1].endswith("| 15.5 | no (+0.5) |")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no finished run"):
        mod.collect(empty)
