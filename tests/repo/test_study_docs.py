"""The recipe study's table in docs/results.md is what scripts/study_table.py makes of bench/study/*.json."""
import json

from tests.helpers import ROOT, load_script


def _study_table():
    return load_script("study_table")


def test_the_study_table_is_the_study_files():
    st = _study_table()
    doc = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    a, b = doc.index(st.START), doc.index(st.END) + len(st.END)
    assert doc[a:b] == st.block(ROOT / "bench" / "study"), (
        "docs/results.md's study table is stale: run .venv/bin/python scripts/study_table.py --write docs/results.md")


def test_a_changed_score_changes_the_table(tmp_path):
    """The table quotes each seed's selection and dev score, so a changed file cannot go unnoticed."""
    st = _study_table()
    src = ROOT / "bench" / "study" / "sst2-base.json"
    data = json.loads(src.read_text())
    (tmp_path / "sst2-base.json").write_text(json.dumps(data))
    before = st.block(tmp_path)
    run = data["runs"][0]
    run["metrics"][run["main_metric"]] = round(run["metrics"][run["main_metric"]] - 0.0123, 6)
    (tmp_path / "sst2-base.json").write_text(json.dumps(data))
    assert st.block(tmp_path) != before
    assert f"{100 * run['metrics'][run['main_metric']]:.2f}" in st.block(tmp_path)


def test_the_two_by_two_names_each_cell_and_says_which_are_not_run(tmp_path):
    """The 2 x 2 of student start x loss: the base line fills the pre-trained + distillation cell; a missing line
    says so instead of leaving a blank that reads as zero."""
    st = _study_table()
    src = ROOT / "bench" / "study" / "sst2-base.json"
    (tmp_path / "sst2-base.json").write_text(src.read_text())
    lines = st.two_by_two(tmp_path)
    pre = next(line for line in lines if line.startswith("| pre-trained"))
    fine = next(line for line in lines if line.startswith("| fine-tuned"))
    dev = st._scores([e for e in json.loads(src.read_text())["runs"] if e["method"] == "kasp"], "dev")
    assert pre.split(" | ")[1] == "not run yet" and f"{sum(dev.values()) / len(dev):.2f} ±" in pre.split(" | ")[2]
    assert fine.count("not run yet") == 2


def test_the_sst2_slice_is_said_to_be_shorter_than_dev_with_its_measured_lengths():
    """SST-2's training set holds phrases, dev whole sentences: the docs say so, with the medians of the actual slice."""
    from kasp.data.files import load_split
    from kasp.data.glue import train_frames
    from kasp.spec.config import make_config

    st = _study_table()
    lines = st.slice_lines(ROOT / "bench" / "study")
    _, held = train_frames(make_config("prune", "kasp", "sst2", sparsity=0.9, holdout=872))
    h = held["text_a"].str.split().str.len().median()
    d = load_split("sst2", "dev")["text_a"].str.split().str.len().median()
    assert h < d / 2
    assert [line for line in lines if line.startswith("The sst2 selection slice (872 training examples)")] == [
        next(line for line in lines if f"median of {h:g} words" in line and f"median of {d:g} (" in line)]


def test_the_readmes_ingredient_sentence_is_the_shipped_two_by_two():
    """README's "distilling ... gains about 2.5 points from either start, ... pre-trained ... loses about half a
    point" quotes assets/precomputed/ingredients.json: each distillation effect rounds to 2.5 (to the half point),
    and each start effect is a loss between a quarter and three quarters of a point."""
    data = json.loads((ROOT / "assets" / "precomputed" / "ingredients.json").read_text())
    mean = {(c["start"], c["loss"]): 100 * sum(c["dev"].values()) / len(c["dev"]) for c in data["cells"]}
    assert len(mean) == 4
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "gains about 2.5 points from either start" in readme and "loses about half a point" in readme
    for start in ("pre-trained", "fine-tuned"):
        assert round(2 * (mean[(start, "distillation")] - mean[(start, "task labels")])) / 2 == 2.5
    for loss in ("distillation", "task labels"):
        assert 0.25 <= mean[("fine-tuned", loss)] - mean[("pre-trained", loss)] <= 0.75


def test_a_line_still_running_is_in_no_table(tmp_path):
    """A line's results file holds its first seed while the second trains, and is committed only when the line
    ends; a table written meanwhile (another line's commit) must not quote it, or the committed docs would name a
    file the repository does not have. Here: an MRPC base line with one of its two runs, beside SST-2's."""
    st = _study_table()
    (tmp_path / "sst2-base.json").write_text((ROOT / "bench" / "study" / "sst2-base.json").read_text())
    before = st.block(tmp_path)
    data = json.loads((ROOT / "bench" / "study" / "sst2-base.json").read_text())
    data["task"], data["runs"] = "mrpc", data["runs"][:1]
    data["teacher"]["run_id"] = "mrpc-teacher-in-progress"
    assert data["plan"]["runs"] == 2
    (tmp_path / "mrpc-base.json").write_text(json.dumps(data))
    assert st.block(tmp_path) == before and "mrpc" not in st.block(tmp_path)
    assert not st.complete(data) and st.complete(json.loads((tmp_path / "sst2-base.json").read_text()))
    data["runs"] = []  # a line stopped before its first run ended
    (tmp_path / "mrpc-base.json").write_text(json.dumps(data))
    assert st.block(tmp_path) == before


def test_the_mrpc_base_lines_progress_table_is_its_runs():
    """The dev F1 at each evaluation point of mrpc-base's two runs, with the sparsity reached there, as quoted."""
    import re

    doc = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    table = doc[doc.index("| step (sparsity) |"):]
    table = table[:table.index("\n\n")].splitlines()
    heads = re.findall(r"(\d+) \(([\d.]+) %\)", table[0])
    res = json.loads((ROOT / "bench" / "study" / "mrpc-base.json").read_text())
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        run = next(e for e in res["runs"] if f"seed {e['seed']}" == cells[0])
        evals = {p["step"]: p for p in run["progress"]["eval"]}
        for (step, sparsity), cell in zip(heads, cells[1:]):
            p = evals[int(step)]
            assert f"{100 * p['sparsity']:.1f}" == sparsity and f"{100 * p['metrics']['f1']:.2f}" == cell, (line, step)
    final = {e["seed"]: f"{100 * e['metrics']['f1']:.2f}" for e in res["runs"]}
    assert f"F1 {final[42]} and {final[43]}" in doc


def test_the_mrpc_recovery_sentence_is_its_file():
    doc = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    res = json.loads((ROOT / "bench" / "study" / "mrpc-recovery20.json").read_text())
    dev = {e["seed"]: f"{100 * e['metrics']['f1']:.2f}" for e in res["runs"]}
    assert res["plan"]["overrides"]["recovery"] == 0.2
    assert f"(`mrpc-recovery20`) did not rescue it either: F1 {dev[42]} and {dev[43]} on dev" in doc


def _line(tmp_path, name, overrides, slice_delta, dev_delta=0.0, max_steps=None, method=None):
    """Write a study line made from the shipped SST-2 base line: ``overrides`` in its plan, each seed's slice score
    moved by ``slice_delta[seed]`` (fractions) and its dev score by ``dev_delta``."""
    data = json.loads((ROOT / "bench" / "study" / "sst2-base.json").read_text())
    data["plan"]["overrides"] = {"holdout": 872, **overrides}
    if max_steps:
        data["plan"]["budget"]["max_steps"] = max_steps
    for e in data["runs"]:
        m = e["main_metric"]
        e["selection_metrics"][m] = round(e["selection_metrics"][m] + slice_delta[e["seed"]], 6)
        e["metrics"][m] = round(e["metrics"][m] + dev_delta, 6)
        if method:
            e["method"] = method
    (tmp_path / f"{name}.json").write_text(json.dumps(data))
    return data


def test_a_change_wins_only_on_the_slice_and_on_every_seed(tmp_path):
    """Issue 24 item 6: a change counts as a win when it beats the base line on the selection slice on both seeds;
    a gain on dev alone, or on one seed only, is not one."""
    st = _study_table()
    base = _line(tmp_path, "sst2-base", {}, {42: 0, 43: 0})
    both = _line(tmp_path, "sst2-both", {"lr": 2e-4}, {42: 0.002, 43: 0.001})
    one = _line(tmp_path, "sst2-one", {"lr": 3e-4}, {42: 0.01, 43: -0.001})
    dev_only = _line(tmp_path, "sst2-dev", {"lr": 4e-4}, {42: 0, 43: 0}, dev_delta=0.02)
    assert st.wins(both, base) is True
    assert st.wins(one, base) is False  # the mean gains, one seed loses
    assert st.wins(dev_only, base) is False
    assert st.wins(both, None) is None
    verdict = {r.split(" | ")[0].strip("| "): r.split(" | ")[-2] for r in st.rows(tmp_path)[2:]}
    assert verdict == {"sst2-base": "", "sst2-both": "yes, adopted", "sst2-dev": "no", "sst2-one": "no"}


def test_the_combination_merges_the_winning_recipe_changes_only(tmp_path):
    """The best combination (issue 24 item 4) takes every winning change to the recipe at the base line's budget;
    losers, lines with more steps (the time limit is part of the target) and the 2 x 2's lines stay out, and where
    two winners set the same key the larger gain on the slice decides."""
    st = _study_table()
    _line(tmp_path, "sst2-base", {}, {42: 0, 43: 0})
    assert st.combination(tmp_path, "sst2") == ({}, [])
    _line(tmp_path, "sst2-emb", {"init_embeddings": "teacher"}, {42: 0.007, 43: 0.006})
    assert st.combination_flags(tmp_path, "sst2") == ""  # one winner is its own line
    _line(tmp_path, "sst2-lr-small", {"lr": 1.5e-4}, {42: 0.001, 43: 0.001})
    _line(tmp_path, "sst2-lr-big", {"lr": 2e-4}, {42: 0.004, 43: 0.003})
    _line(tmp_path, "sst2-rewarm", {"lr_schedule": "rewarm"}, {42: -0.016, 43: -0.015})
    _line(tmp_path, "sst2-steps3000", {}, {42: 0.01, 43: 0.005}, max_steps=3000)
    _line(tmp_path, "sst2-tau", {"temperature": 5.5}, {42: 0.02, 43: 0.02}, max_steps=3000)
    _line(tmp_path, "sst2-2x2-finetuned-task", {}, {42: 0.01, 43: 0.01}, method="magnitude")
    over, names = st.combination(tmp_path, "sst2")
    assert over == {"init_embeddings": "teacher", "lr": 2e-4}
    assert names == ["sst2-emb", "sst2-lr-big", "sst2-lr-small"]
    assert st.combination_flags(tmp_path, "sst2") == "--max-steps 2000 --set init_embeddings=teacher --set lr=0.0002"
    assert st.combination_flags(tmp_path, "sst2", 2500).startswith("--max-steps 2500 --set init_embeddings=teacher")
    assert st.combination(tmp_path, "mrpc") == ({}, [])  # no MRPC base line


def test_the_readmes_study_figures_are_the_study_files():
    """The README's paragraphs on the default recipe quote the study's gains against the base line, and name the
    adopted line with its dev scores."""
    st = _study_table()
    folder = ROOT / "bench" / "study"
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())

    def d(name, key):
        return f"{st.delta(folder, name, key):+.2f}"

    assert f"{d('sst2-lr2e-4', 'selection')} on the slice, {d('sst2-lr2e-4', 'dev')} on dev;" in readme
    assert f"4e-4: {d('sst2-lr4e-4', 'selection')}, {d('sst2-lr4e-4', 'dev')}, the one combined" in readme
    assert st.combination(folder, "sst2")[0]["lr"] == 4e-4
    assert f"teacher's ({d('sst2-init-emb-teacher', 'selection')}, {d('sst2-init-emb-teacher', 'dev')})" in readme
    assert f"weight 3 ({d('sst2-prediction3', 'selection')}, {d('sst2-prediction3', 'dev')})" in readme
    assert f"final sparsity ({d('sst2-recovery20', 'selection')}, {d('sst2-recovery20', 'dev')}:" in readme
    assert f"50 % at step 0 ({d('sst2-initial50', 'selection')}, {d('sst2-initial50', 'dev')})" in readme
    # "Five changes ... meet the adoption rule": the winners study_table combines
    assert len(st.combination(folder, "sst2")[0]) == 5 and "Five changes at the base line's 2,000 steps" in readme  # lr 2e-4 and 4e-4: one key
    assert st.delta(folder, "sst2-temperature5.5", "selection") < 0 and "5.5 (oBERT's) lost" in readme
    assert f"{d('sst2-steps3000', 'selection')} on the slice, {d('sst2-steps3000', 'dev')} on dev" in readme
    # the adopted line: its gains, its dev score per seed and their mean, its distance to the study's teacher
    name = st.adoption(folder, "sst2")[0]
    dev = st._scores(json.loads((folder / f"{name}.json").read_text())["runs"], "dev")
    teacher = 100 * json.loads((folder / "sst2-base.json").read_text())["teacher"]["metrics"]["accuracy"]
    assert (f"(`{name}`: {d(name, 'selection')} on the slice, {d(name, 'dev')} on dev; "
            f"{dev[42]:.2f} and {dev[43]:.2f} for seeds 42 and 43, mean {sum(dev.values()) / 2:.2f}, "
            f"{teacher - sum(dev.values()) / 2:.2f} below the study's teacher at {teacher:.2f})") in readme
    # and the default from a fresh clone (bench/default/: the reports of that teacher and student)
    rep = json.loads((ROOT / "bench" / "default" / "sst2-kasp90" / "report.json").read_text())
    t_rep = json.loads((ROOT / "bench" / "default" / "sst2-teacher" / "report.json").read_text())
    assert (f"gave **{rep['metrics']['accuracy'] * 100:.2f} at {rep['sparsity']['pruned_sparsity'] * 100:.2f} % in "
            f"{rep['wall_seconds'] / 60:.1f} minutes** (teacher {t_rep['metrics']['accuracy'] * 100:.2f};") in readme
    assert rep["wall_seconds"] / 60 <= st.TIME_LIMIT_MINUTES and rep["steps"] == st.adoption(folder, "sst2")[2]
    method = " ".join((ROOT / "docs" / "method.md").read_text(encoding="utf-8").split())
    assert (f"which gave {rep['metrics']['accuracy'] * 100:.2f} at {rep['sparsity']['pruned_sparsity'] * 100:.2f} % in "
            f"{rep['wall_seconds'] / 60:.1f} min from a fresh clone") in method


def test_a_tie_on_the_mean_gain_goes_to_the_steadier_change(tmp_path):
    """Two winners that set the same key with the same mean gain on the slice (SST-2's lr 2e-4 and 4e-4 did,
    +1.32 each): the one whose worst seed gained more is kept, whatever the names' order or the float rounding."""
    st = _study_table()
    _line(tmp_path, "sst2-base", {}, {42: 0, 43: 0})
    _line(tmp_path, "sst2-emb", {"init_embeddings": "teacher"}, {42: 0.001, 43: 0.001})
    _line(tmp_path, "sst2-a-lr", {"lr": 3e-4}, {42: 0.0172, 43: 0.0092})   # mean +1.32, worst seed +0.92
    _line(tmp_path, "sst2-b-lr", {"lr": 5e-4}, {42: 0.0138, 43: 0.0126})   # mean +1.32, worst seed +1.26
    assert st.combination(tmp_path, "sst2")[0]["lr"] == 5e-4
    (tmp_path / "sst2-b-lr.json").rename(tmp_path / "sst2-0-lr.json")     # the steadier line first by name
    over, names = st.combination(tmp_path, "sst2")
    assert over["lr"] == 5e-4 and names[:2] == ["sst2-0-lr", "sst2-a-lr"]


def test_the_adoption_is_the_best_winner_within_the_time_limit(tmp_path):
    """Issue 24 item 6: the default becomes the winning line (single change or combination) with the largest mean
    gain on the slice, if its step budget fits the 20-minute target; a bigger gain from a budget over the limit,
    a gain on one seed only, or a gain on dev only is not adopted. The combination itself is no ingredient."""
    st = _study_table()
    _line(tmp_path, "sst2-base", {}, {42: 0, 43: 0})
    assert st.adoption(tmp_path, "sst2") == (None, {}, None)
    _line(tmp_path, "sst2-lr", {"lr": 4e-4}, {42: 0.013, 43: 0.013})
    _line(tmp_path, "sst2-emb", {"init_embeddings": "teacher"}, {42: 0.007, 43: 0.006})
    _line(tmp_path, "sst2-one-seed", {"lr": 3e-4}, {42: 0.05, 43: -0.001})
    _line(tmp_path, "sst2-dev-only", {"temperature": 2.0}, {42: 0, 43: 0}, dev_delta=0.05)
    _line(tmp_path, "sst2-steps3000", {}, {42: 0.03, 43: 0.03}, max_steps=3000)   # 22 min: over the limit
    assert st.adoption(tmp_path, "sst2") == ("sst2-lr", {"lr": 4e-4}, 2000)
    _line(tmp_path, "sst2-combined", {"lr": 4e-4, "init_embeddings": "teacher"}, {42: 0.012, 43: 0.015})
    assert st.adoption(tmp_path, "sst2")[0] == "sst2-combined"   # +1.35 against +1.30
    assert st.combination(tmp_path, "sst2")[1] == ["sst2-lr", "sst2-emb"]   # the combination is no ingredient
    _line(tmp_path, "sst2-combined-steps2500", {"lr": 4e-4, "init_embeddings": "teacher"}, {42: 0.02, 43: 0.02},
          max_steps=2500)   # 18.3 min at 0.44 s a step: within the limit
    assert st.adoption(tmp_path, "sst2") == ("sst2-combined-steps2500", {"lr": 4e-4, "init_embeddings": "teacher"},
                                             2500)
    verdict = {r.split(" | ")[0].strip("| "): r.split(" | ")[-2] for r in st.rows(tmp_path)[2:]}
    assert verdict["sst2-combined-steps2500"] == "yes, adopted" and verdict["sst2-combined"] == "yes"
    assert verdict["sst2-steps3000"] == "yes (3000 steps: not a candidate)"


def test_the_study_never_reruns_a_finished_line(tmp_path):
    """scripts/run_study.sh skips a line whose results file has every run it planned, before any teacher or sweep
    starts: a default adopted from the study would otherwise make the sweep take the line's runs for stale ones
    and train them again. A line with a run missing is passed on to the sweep (here a stand-in that logs)."""
    import os
    import subprocess
    import sys

    (tmp_path / "bench" / "study").mkdir(parents=True)
    done = (ROOT / "bench" / "study" / "sst2-base.json").read_text()
    (tmp_path / "bench" / "study" / "sst2-base.json").write_text(done)
    partial = json.loads(done)
    partial["runs"] = partial["runs"][:1]
    (tmp_path / "bench" / "study" / "sst2-half.json").write_text(json.dumps(partial))
    log = tmp_path / "calls.log"
    fake = tmp_path / "py"   # the real Python for study_table.py; any `-m kasp ...` call is logged instead
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -m ]; then echo "$@" >> {log}; exit 3; fi\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    (tmp_path / "store" / "teachers" / "sst2-holdout872").mkdir(parents=True)
    (tmp_path / "store" / "teachers" / "sst2-holdout872" / "report.json").write_text("{}")
    env = {**os.environ, "PY": str(fake), "RESULTS_REPO": str(tmp_path), "KASP_RUNS_DIR": str(tmp_path / "store"),
           "STUDY": "sst2|sst2-base|\nsst2|sst2-half|--set lr=4e-4\n"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "run_study.sh"), "--foreground"], env=env, text=True,
                         capture_output=True, timeout=120)
    assert "study sst2-base: finished" in out.stdout, out.stdout + out.stderr
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "sst2-half.json" in calls[0] and "lr=4e-4" in calls[0]


def test_each_adopted_default_is_the_line_the_rule_picks():
    """Issue 24 item 6 in code: the recipe a task's KASP default adopted (kasp.spec.config.ADOPTED) is the study
    line scripts/study_table.py --adoption picks from bench/study/, with its step budget, and a task whose study
    picks a line has that line adopted. A new results file that beats it fails here until the default follows."""
    from kasp.spec import config

    st = _study_table()
    folder = ROOT / "bench" / "study"
    tasks = {json.loads(f.read_text())["task"] for f in folder.glob("*-base.json")}
    for task in tasks:
        name, over, steps = st.adoption(folder, task)
        assert config.ADOPTED_FROM.get(("kasp", task)) == name, f"{task}: the study picks {name}"
        assert ("kasp", task) not in config.ADOPTED_CARRIED, f"{task} has a study of its own"
        if name is None:
            assert ("kasp", task) not in config.ADOPTED
            continue
        entry = st.adopted_entry(folder, task)
        assert config.ADOPTED[("kasp", task)] == entry and {**over, "max_steps": steps}.items() >= entry.items()
        recipe = config.default_recipe("prune", "kasp", task)
        assert {k: recipe[k] for k in over} == over
        # a budget that is the task's default (MRPC: 5 epochs, 510 steps with the study's slice) stays in epochs
        assert recipe.get("max_steps") == entry.get("max_steps") and (entry.get("max_steps") or recipe["epochs"])
    assert set(config.ADOPTED) == set(config.ADOPTED_FROM)
    assert config.ADOPTED_FROM[("kasp", "sst2")] == "sst2-combined-steps2500"
    assert config.ADOPTED_FROM[("kasp", "mrpc")] == "mrpc-sst2-recipe" and "max_steps" not in config.ADOPTED[("kasp", "mrpc")]


def test_carried_recipes_are_a_studied_tasks_entry_and_say_so():
    """A task without a study of its own (RTE, STS-B, CoLA) carries a studied task's adopted recipe, unchanged and
    without its step budget, and names the line it comes from; the Prune page says it was not studied there."""
    from kasp.spec import config

    assert config.ADOPTED_CARRIED == {("kasp", t) for t in ("rte", "stsb", "cola")}
    for key in config.ADOPTED_CARRIED:
        src = config.ADOPTED_FROM[key]
        studied = next(k for k, v in config.ADOPTED_FROM.items() if v == src and k not in config.ADOPTED_CARRIED)
        assert config.ADOPTED[key] == config.ADOPTED[studied] and "max_steps" not in config.ADOPTED[key]
        assert (ROOT / "bench" / "study" / f"{src}.json").exists()
    from kasp.ui.launch import adopted_recipe_caption

    rte, mrpc = adopted_recipe_caption("kasp", "rte"), adopted_recipe_caption("kasp", "mrpc")
    assert "not studied on RTE itself" in rte and "`mrpc-sst2-recipe`" in rte
    assert "not studied" not in mrpc and "recipe study adopted (`mrpc-sst2-recipe`" in mrpc
    assert "learning rate 4e-4" in rte and "steps" not in rte.split(":")[-1].split("recovery")[0]  # no step count
    assert adopted_recipe_caption("magnitude", "rte") is None and adopted_recipe_caption("kasp", "qnli") is None


def test_the_adopted_recipes_two_by_two_lines_are_never_candidates(tmp_path):
    """The 2 x 2 at the adopted recipe (queued in run_study.sh) changes the student's start or loss: even a line of
    it that beat the base line on the slice is not adopted, while its pre-trained + distillation cell is the adopted
    line itself, a candidate as before."""
    st = _study_table()
    _line(tmp_path, "sst2-base", {}, {42: 0, 43: 0})
    _line(tmp_path, "sst2-2x2a-pretrained-task", {"task_loss_weight": 1.0, "prediction_weight": 0.0},
          {42: 0.03, 43: 0.03}, max_steps=2500)
    assert st.adoption(tmp_path, "sst2") == (None, {}, None)
    _line(tmp_path, "sst2-combined-steps2500", {"lr": 4e-4, "recovery": 0.2}, {42: 0.02, 43: 0.02}, max_steps=2500)
    assert st.adoption(tmp_path, "sst2")[0] == "sst2-combined-steps2500"
    assert "sst2-combined-steps2500" not in st.TWO_BY_TWO and {"sst2-2x2a-finetuned-task", "sst2-2x2-finetuned-task"} <= st.TWO_BY_TWO
    queued = (ROOT / "scripts" / "run_study.sh").read_text(encoding="utf-8")
    assert all(f"|{line}|" in queued for line in st.TWO_BY_TWO)   # every cell line has its study line
