"""docs/results.md's tables of sweeps, recipe knobs and augmentation quote the shipped data files."""

from __future__ import annotations

from tests.helpers import ROOT

_README_TASKS = {"MRPC": "mrpc", "RTE": "rte", "STS-B": "stsb", "CoLA": "cola", "SST-2": "sst2"}


def _readme_table(header: str) -> list[list[str]]:
    """The body rows (cells stripped) of docs/results.md's Markdown table that starts with ``header``
    (the tables moved there from the README)."""
    readme = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    table = readme[readme.index(header):]
    lines = table[:table.index("\n\n")].splitlines()
    lines = lines[:next((i for i, line in enumerate(lines) if not line.startswith("|")), len(lines))]  # a marker ends it
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]


def _kasp90_seeds(runs) -> dict[int, float]:
    """Metric ×100 per seed of the KASP runs at 90 % of a results file's ``runs``."""
    return {e["seed"]: e["metric"] * 100 for e in runs if e["method"] == "kasp" and e["sparsity"] == 0.9}


def test_the_results_pages_sweep_table_is_the_shipped_results():
    """Every number of docs/results.md's table of shipped sweeps (KASP, magnitude, small-dense: mean, and
    ± half the range over seeds) is what assets/sweeps/<task>.json holds, and every shipped point is in it."""
    import re
    from kasp.experiments.results import load_results, shipped_sweep_path

    shown, task = {}, None
    for cells in _readme_table("| task (metric), teacher | budget a run |"):
        if cells[0]:
            task = _README_TASKS[cells[0].split(" (")[0]]
        sp = float(cells[2].rstrip(" %")) / 100
        for method, cell in zip(("kasp", "magnitude", "small-dense"), cells[3:6]):
            m = re.match(r"([\d.]+)(?: ± ([\d.]+))?", cell)
            if m:  # ‡: a value by GLUE's convention for a constant predictor (metrics.convention)
                shown[(task, method, sp)] = (float(m.group(1)), float(m.group(2) or 0), "‡" in cell)
    shipped = {}
    for t in _README_TASKS.values():
        runs = load_results(shipped_sweep_path(t))["runs"]
        for key in {(e["method"], e["sparsity"]) for e in runs}:
            group = [e for e in runs if (e["method"], e["sparsity"]) == key]
            vals = [e["metric"] * 100 for e in group]
            shipped[(t, key[0], round(key[1], 2))] = (round(sum(vals) / len(vals), 2), round((max(vals) - min(vals)) / 2, 2),
                                                      any("convention" in e["metrics"] for e in group))
    assert shown == shipped


def test_the_results_pages_sweep_table_is_what_sweep_table_writes():
    """The shipped-sweeps block of docs/results.md is scripts/sweep_table.py's for assets/sweeps, so that a sweep
    that lands is one command away from its docs table (the test above checks the numbers themselves)."""
    from tests.helpers import load_script

    st = load_script("sweep_table")
    doc = load_script("doc_blocks").read_block(ROOT / "docs" / "results.md", st.START, st.END)
    assert doc is not None, "docs/results.md lost its sweeps-table markers"
    assert doc == st.block(ROOT / "assets" / "sweeps"), (
        "docs/results.md's sweeps table is stale: run .venv/bin/python scripts/sweep_table.py --write docs/results.md")


def test_the_results_pages_before_now_table_is_the_kept_and_the_shipped_sweeps():
    """docs/results.md's before/now table at 90 % is scripts/sweep_table.py's comparison of the step-budget sweeps
    kept in bench/sweeps-steps with the shipped ones, with a row for every task that has both (a task whose grid in
    epochs has not shipped has no "before" file, so no row)."""
    from tests.helpers import load_script

    st = load_script("sweep_table")
    doc = load_script("doc_blocks").read_block(ROOT / "docs" / "results.md", st.COMPARE_START, st.COMPARE_END)
    assert doc is not None, "docs/results.md lost its sweeps-compare markers"
    assert doc == st.compare_block(), (
        "docs/results.md's before/now table is stale: run .venv/bin/python scripts/sweep_table.py --write-compare "
        "docs/results.md")
    kept = sorted(p.stem for p in (ROOT / "bench" / "sweeps-steps").glob("*.json"))
    rows = doc.splitlines()[3:-1]
    assert [_README_TASKS[r.strip("| ").split(" (")[0]] for r in rows] == [t for t in st.ORDER if t in kept]


def test_sweep_table_cells_say_budget_spread_and_convention():
    """The table's cells from made-up runs: a budget in epochs names its steps, one seed has no spread, two seeds
    show half the range, a constant predictor's value is marked, a small dense student names its shape."""
    from tests.helpers import load_script

    st = load_script("sweep_table")
    assert st.budget({"plan": {"budget": {"max_steps": 575, "epochs": 5, "max_seq_length": 128}}}) == \
        "5 epochs (575 steps), length 128"
    assert st.budget({"plan": {"budget": {"max_steps": 2000, "max_seq_length": 64}}}) == "2,000 steps, length 64"
    one = {"metric": 0.8, "metrics": {}}
    assert st.cell([one]) == "80.00"
    assert st.cell([one, {"metric": 0.7, "metrics": {}}]) == "75.00 ± 5.00"
    assert st.cell([{"metric": 0.0, "metrics": {"convention": {"mcc": "constant"}}}]) == "0.00 ‡"
    assert st.cell([{"metric": None, "metrics": {}}]) == "undefined"
    assert st.size({"small_dense": {"layers": 1, "ffn_width": 608}}) == " (1 layer, FFN 608)"


def test_the_results_pages_knob_table_is_the_shipped_trials():
    """docs/results.md's table of recipe knobs (SST-2, KASP at 90 %) quotes bench/trials/sst2-*.json and the
    sweep's baseline seed by seed, with mean, half the range and the difference to the baseline; every
    finished SST-2 knob trial is in it."""
    from kasp.experiments.results import load_results, shipped_sweep_path

    labels = {"temperature τ = 2": {"temperature": 2}, "learning rate 2e-4": {"lr": 2e-4},
              "learning rate 5e-5": {"lr": 5e-5}, "prediction weight 3": {"prediction_weight": 3}}
    shipped = {"none": _kasp90_seeds(load_results(shipped_sweep_path("sst2"))["runs"])}
    for f in sorted((ROOT / "bench" / "trials").glob("sst2-*.json")):
        res = load_results(f)
        if res["runs"]:
            label = next(k for k, v in labels.items() if v == res["plan"]["overrides"])
            shipped[label] = _kasp90_seeds(res["runs"])
    base = sum(shipped["none"].values()) / 2
    shown = {}
    for cells in _readme_table("| change | seed 42 | seed 43 |"):
        line = " | ".join(cells)
        label = "none" if cells[0].startswith("none") else cells[0]
        shown[label] = {42: float(cells[1]), 43: float(cells[2])}
        vals = list(shipped[label].values())
        mean = sum(vals) / 2
        assert cells[3] == f"{mean:.2f} ± {(max(vals) - min(vals)) / 2:.2f}", line
        if label != "none":
            assert cells[4] == f"{mean - base:+.2f}".replace("-", "−"), line
    assert shown == {k: {s: round(v, 2) for s, v in d.items()} for k, d in shipped.items()}


def test_the_results_pages_augmentation_table_is_the_shipped_runs():
    """docs/results.md's augmentation table (KASP at 90 %, seeds 42 / 43 and their mean) quotes the sweeps'
    runs without augmentation and bench/augment/<task>-augment-<source><N>.json with it; a cell says
    "not run" only where no such file holds both seeds, and N is TinyBERT's for the task."""
    from kasp.training.augment import TINYBERT_N
    from kasp.experiments.results import load_results, shipped_sweep_path

    def cell(path):
        if not path.is_file():
            return "not run"
        runs = load_results(path)["runs"]
        v = _kasp90_seeds(runs)
        conv = any("convention" in e["metrics"] for e in runs if e["method"] == "kasp" and e["sparsity"] == 0.9)
        return (f"{v[42]:.2f} / {v[43]:.2f} ({(v[42] + v[43]) / 2:.2f})" + (" ‡" if conv else "")  # ‡: GLUE's convention
                if sorted(v) == [42, 43] else "not run")

    rows = _readme_table("| task (metric), words N | without augmentation |")
    assert len(rows) == len(_README_TASKS)
    for cells in rows:
        line = " | ".join(cells)
        task = _README_TASKS[cells[0].split(" (")[0]]
        n = TINYBERT_N[task]
        assert cells[0].endswith(f", {n}"), line
        # the runs without augmentation had the augmented runs' budget: the step-budget sweep, kept in bench/sweeps-steps
        # once a grid in epochs replaced it (scripts/ship_sweep.py)
        steps = ROOT / "bench" / "sweeps-steps" / f"{task}.json"
        expected = [cell(steps if steps.is_file() else shipped_sweep_path(task))] + [
            cell(ROOT / "bench" / "augment" / f"{task}-augment-{s}{k}.json") for s, k in (("words", n), ("glue", 1))]
        assert cells[1:] == expected, line


def test_the_results_pages_teacher_table_is_the_shipped_teachers():
    """docs/results.md's table of teachers beside published figures quotes each shipped sweep's teacher: its
    main metric ×100 (F1 for MRPC), its step budget, its epochs (steps × batch / training examples), and the
    gap to the published figure where one is given."""
    import re
    from kasp.experiments.results import load_results, shipped_sweep_path
    from kasp.data.files import load_split

    rows = _readme_table("| task (metric) | KASP's teacher (steps, epochs) |")
    assert {_README_TASKS[c[0].split(" (")[0]] for c in rows} == set(_README_TASKS.values())
    for cells in rows:
        line = " | ".join(cells)
        task = _README_TASKS[cells[0].split(" (")[0]]
        teacher = load_results(shipped_sweep_path(task))["teacher"]
        recipe = teacher["recipe"]
        main = "f1" if task == "mrpc" else next(k for k in teacher["metrics"] if k != "n" and k != "spearman")
        value = teacher["metrics"][main] * 100
        if recipe.get("max_steps"):  # a teacher fine-tuned for a step budget
            steps = recipe["max_steps"]
            epochs = steps * recipe["batch_size"] / len(load_split(task, "train"))
        else:  # a teacher trained in epochs (scripts/run_teachers.sh: 10 epochs with the selection slice held out)
            from kasp.experiments.sweep import steps_for_epochs

            steps = steps_for_epochs(task, recipe["epochs"], recipe["batch_size"], int(recipe.get("holdout") or 0))
            epochs = recipe["epochs"]
        m = re.fullmatch(r"([\d.]+) \(([\d,]+), ([\d.]+)\)", cells[1])
        assert m, line
        assert float(m.group(1)) == round(value, 2), line
        assert int(m.group(2).replace(",", "")) == steps, line
        assert float(m.group(3)) == round(epochs, 1), line
        published = re.match(r"[\d.]+", cells[2])
        if published:  # the gap column is the published figure minus the teacher's
            assert cells[3].startswith(f"{float(published.group(0)) - value:.1f}"), line


# MRPC's sweep at the step budget (200 steps, teacher F1 86.16), kept by scripts/ship_sweep.py when the grid in epochs
# replaced it: a file that no longer changes, so the two tests below can write a "before" and an "after" from it.
_STEPS_MRPC = ROOT / "bench" / "sweeps-steps" / "mrpc.json"


def test_a_shipped_grid_records_its_teacher_budget_as_the_teacher_ran_it():
    """The shipped MRPC grid's teacher trained 10 epochs (no step budget): its plan says so, not the 350-step
    default the sweep's plan recorded beside an external teacher (scripts/ship_sweep.py mends it)."""
    import json

    res = json.loads((ROOT / "assets" / "sweeps" / "mrpc.json").read_text(encoding="utf-8"))
    assert res["teacher"]["recipe"]["max_steps"] is None and res["teacher"]["recipe"]["epochs"] == 10.0
    assert res["plan"]["budget"]["teacher_steps"] is None and res["plan"]["budget"]["teacher_epochs"] == 10.0


def test_sweep_table_compares_two_budgets_at_90_percent(tmp_path):
    """--compare: one row per task found in both folders, each method at 90 % before and now, and the floor."""
    import json
    import shutil

    from tests.helpers import load_script

    st = load_script("sweep_table")
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    shutil.copy(_STEPS_MRPC, tmp_path / "old" / "mrpc.json")
    res = json.loads(_STEPS_MRPC.read_text(encoding="utf-8"))
    for e in res["runs"]:
        if e["method"] == "kasp" and e["sparsity"] == 0.9:
            e["metric"] = 0.85 if e["seed"] == 42 else 0.83
    res["plan"]["budget"].update(max_steps=575, epochs=5.0)
    (tmp_path / "new" / "mrpc.json").write_text(json.dumps(res))
    shutil.copy(ROOT / "assets" / "sweeps" / "rte.json", tmp_path / "old" / "rte.json")  # not in both: no row
    rows = st.compare(tmp_path / "old", tmp_path / "new")[2:]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[0] == "MRPC (F1)" and cells[1].startswith("200 steps") and cells[5].startswith("5 epochs (575 steps)")
    assert cells[6] == "84.00 ± 1.00" and cells[2] != cells[6] and cells[9] == "81.22"


def test_ship_sweep_moves_a_finished_grid_into_place_and_keeps_the_one_before(tmp_path):
    """scripts/ship_sweep.py: a grid with every planned run replaces the shipped sweep, the replaced file is kept
    as bench/sweeps-steps/<task>.json (never overwritten by a later ship), the docs table follows; a grid still
    running is refused and leaves everything as it was."""
    import json
    import shutil

    import pytest

    from kasp.ground.errors import KaspError
    from tests.helpers import load_script

    ship = load_script("ship_sweep").ship
    st = load_script("sweep_table")
    (tmp_path / "assets" / "sweeps").mkdir(parents=True)
    (tmp_path / "bench" / "sweeps-epochs").mkdir(parents=True)
    (tmp_path / "docs").mkdir()
    old = _STEPS_MRPC
    shutil.copy(old, tmp_path / "assets" / "sweeps" / "mrpc.json")
    (tmp_path / "docs" / "results.md").write_text(
        f"# results\n\n{st.START}\n{st.END}\n\n{st.COMPARE_START}\n{st.COMPARE_END}\n\nmore\n", encoding="utf-8")
    grid = json.loads(old.read_text(encoding="utf-8"))
    grid["plan"]["budget"].update(max_steps=575, epochs=5.0)
    grid["teacher"]["path"] = "/somewhere/sweeps/runs/teachers/mrpc-holdout408-e10/checkpoint"
    for e in grid["runs"]:
        e["recipe"]["teacher"] = grid["teacher"]["path"]
    partial = dict(grid, runs=grid["runs"][:3])
    (tmp_path / "bench" / "sweeps-epochs" / "mrpc.json").write_text(json.dumps(partial))
    with pytest.raises(KaspError, match="3 of 13 planned runs"):
        ship("mrpc", tmp_path)
    assert not (tmp_path / "bench" / "sweeps-steps").exists()
    (tmp_path / "bench" / "sweeps-epochs" / "mrpc.json").write_text(json.dumps(grid))
    assert ship("mrpc", tmp_path, dry_run=True)[0].startswith("keep assets/sweeps/mrpc.json")
    assert not (tmp_path / "bench" / "sweeps-steps").exists()  # a dry run changes nothing
    ship("mrpc", tmp_path)
    assert (tmp_path / "bench" / "sweeps-steps" / "mrpc.json").read_bytes() == old.read_bytes()
    shipped = json.loads((tmp_path / "assets" / "sweeps" / "mrpc.json").read_text())
    assert shipped["plan"]["budget"]["epochs"] == 5.0 and len(shipped["runs"]) == len(grid["runs"])
    assert shipped["teacher"]["path"] == "runs/teachers/mrpc-holdout408-e10/checkpoint"  # not the grid machine's path
    assert shipped["plan"]["budget"]["teacher_steps"] == 350  # the fixture's teacher trained 350 steps: kept
    assert {e["recipe"]["teacher"] for e in shipped["runs"]} == {shipped["teacher"]["path"]}
    doc = (tmp_path / "docs" / "results.md").read_text(encoding="utf-8")
    assert "| MRPC (F1), 86.16 | 5 epochs (575 steps), length 128 |" in doc and doc.endswith("\n\nmore\n")
    assert "| MRPC (F1) | 200 steps, length 128 |" in doc  # the before/now table: the kept file against the new one
    assert "| 5 epochs (575 steps), length 128 |" in doc.split(st.COMPARE_START)[1]
    ship("mrpc", tmp_path)  # again: the "before" stays the first one
    assert (tmp_path / "bench" / "sweeps-steps" / "mrpc.json").read_bytes() == old.read_bytes()
