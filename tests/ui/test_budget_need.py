"""The Overview's sentence on the budget a small task would need at 90 % (issue 29): it quotes the recipe study's
longer run, shipped as assets/precomputed/longer_budgets.json by scripts/study_table.py --ship-budgets."""
from __future__ import annotations

import json

from tests.helpers import ROOT, load_script

SHIPPED = ROOT / "assets" / "precomputed" / "longer_budgets.json"


def _step_budget_sweep(monkeypatch) -> None:
    """Make the shipped MRPC sweep look as it did before its grid in epochs shipped (KASP at 90 % for 200 steps),
    so that the study line (510 steps) is the longer run the sentence quotes."""
    from kasp.ui import lesson

    monkeypatch.setattr(lesson, "_shipped_kasp90_steps", lambda task: 200)


def test_the_shipped_file_is_the_study_files():
    st = load_script("study_table")
    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == json.loads(json.dumps(st.longer_budgets(ROOT / "bench" / "study"))), (
        "assets/precomputed/longer_budgets.json is stale: run .venv/bin/python scripts/study_table.py "
        "--ship-budgets assets/precomputed/longer_budgets.json")


def test_mrpc_sentence_quotes_the_shipped_line_and_says_whether_it_learnt(monkeypatch):
    """Beside a shorter shipped sweep, MRPC's sentence quotes the line the shipped file names (today
    mrpc-sst2-recipe, MRPC's adopted default): its seeds' mean, teacher, budget and best point; "learns this task"
    when it ends more than a point above the floor (always answering "equivalent"), "needs more than" when not.
    Beside today's shipped grid (575 steps, learnt at 90 %) there is nothing to say."""
    from kasp.ui.devset import majority_metric
    from kasp.ui.lesson import budget_need

    assert budget_need("mrpc", majority_metric("mrpc")) is None
    _step_budget_sweep(monkeypatch)

    line = json.loads(SHIPPED.read_text(encoding="utf-8"))["tasks"]["mrpc"]["line"]
    res = json.loads((ROOT / "bench" / "study" / f"{line}.json").read_text(encoding="utf-8"))
    runs = [e for e in res["runs"] if e["method"] == "kasp"]
    mean = sum(100 * e["metrics"]["f1"] for e in runs) / len(runs)
    floor = majority_metric("mrpc")
    text = budget_need("mrpc", floor)
    assert f"ends at F1 (positive class) {mean:.2f}" in text and f"`{line}`, 2 seeds" in text
    assert f"({100 * res['teacher']['metric']:.2f})" in text and f"{runs[0]['steps']} steps" in text
    learnt = mean >= 100 * floor + 1
    assert ("KASP learns this task in 5 epochs" in text) == learnt and ("needs more than 5 epochs" in text) != learnt
    assert budget_need("sst2", 0.5) is None  # no longer run ships, and the shipped sweep learnt SST-2


def test_without_a_longer_run_the_shipped_sweep_states_the_budget_it_measured(monkeypatch):
    """Issue 29: a task that no method learnt at 90 % and that has no longer run says what its shipped runs
    measured: it needs more than the epochs they trained (CoLA's step-budget sweep, kept in bench/sweeps-steps:
    400 steps, 1.5 epochs of 8,551 sentences)."""
    from kasp.experiments.results import load_shipped
    from tests.helpers import step_budget_sweeps

    step_budget_sweeps(monkeypatch, "cola")
    from kasp.ui.devset import train_size
    from kasp.ui.lesson import budget_need, shipped_budget_need

    sweep = load_shipped("cola")
    steps = max(e["steps"] for e in sweep["runs"] if e["method"] == "kasp" and e["sparsity"] == 0.9)
    epochs = round(steps * 32 / train_size("cola"), 1)
    text = budget_need("cola", None)
    assert text == shipped_budget_need("cola", None)
    assert f"after {epochs:g} epochs ({steps:,} steps) no method has learnt CoLA at 90 %" in text
    assert text.endswith(f"needs more than {epochs:g} epochs with their recipe.")
    assert shipped_budget_need("sst2", 0.5092) is None  # learnt there: nothing to say


def test_a_longer_run_at_the_floor_says_the_budget_is_not_enough(tmp_path, monkeypatch):
    from kasp.ui.lesson import budget_need

    _step_budget_sweep(monkeypatch)
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    data["tasks"]["mrpc"]["dev"] = {"42": 0.8050, "43": 0.8110}
    data["tasks"]["mrpc"]["evals"] = [{"step": 127, "sparsity": 0.513, "dev": {"42": 0.87, "43": 0.86}},
                                      {"step": 510, "sparsity": 0.9, "dev": {"42": 0.8050, "43": 0.8110}}]
    (tmp_path / "b.json").write_text(json.dumps(data))
    text = budget_need("mrpc", 0.8122, tmp_path / "b.json")
    assert "at or below the floor (81.22)" in text and "needs more than 5 epochs with the default recipe" in text
    assert "though on the way it reached 86.50 at 51 % sparsity" in text
    data["tasks"]["mrpc"]["evals"][0]["dev"] = {"42": 0.70, "43": 0.70}  # best at the target: no "on the way"
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert "on the way" not in budget_need("mrpc", 0.8122, tmp_path / "b.json")


def test_a_longer_run_that_learnt_the_task_claims_no_need(tmp_path, monkeypatch):
    from kasp.ui.lesson import budget_need, shipped_budget_need

    _step_budget_sweep(monkeypatch)
    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    entry = data["tasks"]["mrpc"]
    entry["dev"] = {"42": 0.86, "43": 0.85}
    (tmp_path / "b.json").write_text(json.dumps(data))
    text = budget_need("mrpc", 0.8122, tmp_path / "b.json")
    assert "ends at F1 (positive class) 85.50" in text and "needs more" not in text and "floor" not in text
    assert text.endswith(f"KASP learns this task in {entry['epochs']:g} epochs with the default recipe.")
    for broken in ("{", "[]", json.dumps({"tasks": {"mrpc": {"dev": {}}}}), json.dumps({"tasks": None})):
        (tmp_path / "x.json").write_text(broken)
        assert budget_need("mrpc", 0.8122, tmp_path / "x.json") == shipped_budget_need("mrpc", 0.8122)  # unreadable
    assert budget_need("mrpc", 0.8122, tmp_path / "missing.json") == shipped_budget_need("mrpc", 0.8122)


def test_the_longest_line_at_the_default_recipe_is_the_one_quoted(tmp_path):
    """Of a task's lines that ran its KASP default of today, the longest is quoted (a 10-epoch line replaces the
    5-epoch one); a line with another recipe (MRPC's base line, made before MRPC adopted mrpc-sst2-recipe; a longer
    line at another learning rate) never is: the sentence is about the default recipe's budget."""
    st = load_script("study_table")
    study = ROOT / "bench" / "study"
    adopted = json.loads((study / "mrpc-sst2-recipe.json").read_text(encoding="utf-8"))
    base = json.loads((study / "mrpc-base.json").read_text(encoding="utf-8"))
    assert st.at_default_recipe(adopted) and not st.at_default_recipe(base)
    (tmp_path / "mrpc-base.json").write_text(json.dumps(base))
    assert "mrpc" not in st.longer_budgets(tmp_path)["tasks"]
    (tmp_path / "mrpc-sst2-recipe.json").write_text(json.dumps(adopted))
    assert st.longer_budgets(tmp_path)["tasks"]["mrpc"]["line"] == "mrpc-sst2-recipe"
    longer = json.loads(json.dumps(adopted))
    longer["plan"]["budget"]["max_steps"] = 1020
    for e in longer["runs"]:
        e["steps"] = 1020
    (tmp_path / "mrpc-epochs10.json").write_text(json.dumps(longer))
    other = json.loads(json.dumps(longer))
    other["plan"]["budget"]["max_steps"] = 2040
    for e in other["runs"]:
        e["steps"], e["recipe"]["lr"] = 2040, 2e-4
    (tmp_path / "mrpc-lr-long.json").write_text(json.dumps(other))
    entry = st.longer_budgets(tmp_path)["tasks"]["mrpc"]
    assert entry["line"] == "mrpc-epochs10" and entry["steps"] == 1020 and entry["epochs"] == 10.0


def test_a_study_run_no_longer_than_the_shipped_ones_is_not_quoted_as_longer(monkeypatch):
    """Once the shipped sweep trains as long as the study line (MRPC's grid in epochs: 575 steps against the line's
    510), the sentence comes from the shipped runs, never "a longer run was measured"."""
    from kasp.ui import lesson

    assert lesson._shipped_kasp90_steps("mrpc") == 575  # the grid in epochs
    monkeypatch.setattr(lesson, "shipped_budget_need", lambda task, floor: f"shipped {task}")
    assert lesson.budget_need("mrpc", 0.8122) == "shipped mrpc"
    _step_budget_sweep(monkeypatch)
    assert lesson.budget_need("mrpc", 0.8122).startswith("A longer run was measured")


def test_a_task_not_learnt_points_to_the_tasks_whose_shipped_runs_show_the_claims(monkeypatch, tmp_path):
    """The pages' budget line on a task no student learnt at 90 % names the tasks where one did, from the shipped
    sweeps (SST-2; MRPC and CoLA since their grids in epochs), not a fixed "SST-2", as a list in words ("CoLA, SST-2
    and MRPC"); a task that learnt names no other."""
    from kasp.ui import lesson

    monkeypatch.setenv("KASP_RUNS_DIR", str(tmp_path / "empty"))  # the shipped sweeps only
    learnt = lesson.tasks_learnt_at_90()
    assert {"sst2", "mrpc", "cola"} <= set(learnt)
    assert "learnt the task, so the comparisons at 90 % are meaningful" in lesson.budget_line("mrpc")
    for task in ("rte", "stsb", "cola"):
        if task not in learnt:  # a step-budget sweep of the time before its grid in epochs shipped
            names = [TASK_NAMES[t] for t in learnt]
            others = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]  # "A, B and C"
            verb = "shows" if len(learnt) == 1 else "show"
            assert f"not the paper's claims; {others} {verb} them." in lesson.budget_line(task)
    # RTE's grid in epochs: its teacher is not clearly above the floor, and the line says that, not "too short"
    rte = lesson.budget_line("rte")
    assert "and neither has its teacher" in rte and "too short a budget" not in rte
    monkeypatch.setattr(lesson, "tasks_learnt_at_90", lambda: ["sst2"])
    assert "the paper's claims; SST-2 shows them." in lesson.budget_line("stsb") or "stsb" in learnt


TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "stsb": "STS-B", "cola": "CoLA"}


def test_a_teacher_no_better_than_chance_is_said_to_come_before_a_longer_budget(monkeypatch):
    """RTE's 10-epoch teacher (54.51 on 277 dev pairs, majority class 52.71) is 5 right answers above the floor, a
    margin chance reaches with p about 0.29 (scipy's exact binomial test): the budget sentence says a better teacher
    comes first. The step-budget teacher (58.84: 17 answers, p about 0.02), F1 and correlations get no sentence."""
    from scipy.stats import binomtest

    from kasp.ui import lesson
    from kasp.ui.devset import majority_metric

    floor = majority_metric("rte")
    text = lesson.teacher_near_floor("rte", 151 / 277)
    p = binomtest(151, 277, floor, alternative="greater").pvalue
    assert 0.2 < p < 0.4 and f"with probability {p:.2f}" in text and "5 more right answers of 277" in text
    assert f"(54.51) is itself only {54.51 - round(100 * floor, 2):.2f} points above" in text  # the printed numbers
    assert lesson.teacher_near_floor("rte", 163 / 277) is None  # p about 0.02: clearly above the floor
    assert lesson.teacher_near_floor("mrpc", 0.80) is None and lesson.teacher_near_floor("stsb", 0.05) is None
    assert lesson.teacher_near_floor("rte", None) is None
    # in the shipped-runs sentence, after the budget it measured
    monkeypatch.setattr(lesson, "teacher_near_floor", lambda task, teacher: "TEACHER NOTE")
    line = lesson.shipped_budget_need("rte", floor)
    if line is not None:  # RTE's shipped sweep has not learnt the task at 90 %
        assert line.endswith("with their recipe. TEACHER NOTE")
