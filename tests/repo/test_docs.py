"""The documentation: the README's shape (its two commands, its length, its links to every docs page),
every relative link in README.md and docs/*.md, and the measured tables of README.md and docs/results.md
tied to the data files they quote (the other tables of docs/results.md: tests/repo/test_results_tables.py).

Reads files only (no model, no kasp import), so it runs in a second."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
RESULTS = ROOT / "docs" / "results.md"

#: The README's two commands, byte for byte: .ci/run runs the line after "# 2. run the tests".
START_APP = ("python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt -e . && HF_HUB_OFFLINE=1 "
             ".venv/bin/streamlit run app.py --server.headless true --server.port 8501")
RUN_TESTS = ("python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt -e . && HF_HUB_OFFLINE=1 "
             ".venv/bin/python -m pytest -q")


def _table(path: Path, header: str) -> list[list[str]]:
    """The body rows (cells stripped) of the Markdown table in ``path`` whose header starts with ``header``."""
    text = path.read_text(encoding="utf-8")
    assert text.count(header) == 1, f"{path.name}: {header!r}"
    table = text[text.index(header):]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table[:table.index("\n\n")].splitlines()[2:]]


def _mean_spread(values: list[float]) -> str:
    """'mean ± half the range' of metrics x100, as the docs print them."""
    vals = [v * 100 for v in values]
    return f"{sum(vals) / len(vals):.2f} ± {(max(vals) - min(vals)) / 2:.2f}"


# --- the README's shape -----------------------------------------------------------------------------
def test_the_readme_keeps_its_two_commands_byte_for_byte():
    """Command 1 starts the app, command 2 runs the tests; .ci/run greps '# 2. run the tests' and runs the
    next line, so both comment lines and both command lines stay exactly as they are."""
    lines = README.read_text(encoding="utf-8").splitlines()
    for comment, command in (("# 1. start the app", START_APP), ("# 2. run the tests", RUN_TESTS)):
        hits = [i for i, line in enumerate(lines) if line.startswith(comment)]
        assert len(hits) == 1, comment
        assert lines[hits[0] + 1] == command, comment


def test_the_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    assert {"cli", "app", "results", "scale-out", "benchmarks", "method", "formats", "cpu"} <= {p.stem for p in DOCS}
    for page in DOCS:
        assert f"](docs/{page.name})" in text, page.name


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, _ and - kept), spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file_that_exists(page):
    """Links and images (``[text](target)``) outside code blocks: the file exists, and a ``#anchor`` is one
    of that file's headings."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for target in links:
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        assert dest.exists(), f"{page.name}: {target}"
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), f"{page.name}: {target}"


# --- the README's headline table --------------------------------------------------------------------
def test_the_readmes_headline_table_is_the_shipped_sst2_sweep():
    """SST-2 at 90 %: teacher, KASP, magnitude and small-dense (mean ± half the range over the seeds), the
    leads quoted under the table, the step budgets and the small-dense size are what assets/sweeps/sst2.json holds."""
    res = json.loads((ROOT / "assets" / "sweeps" / "sst2.json").read_text(encoding="utf-8"))
    runs = {m: [e for e in res["runs"] if e["method"] == m and e["sparsity"] == 0.9]
            for m in ("kasp", "magnitude", "small-dense")}
    assert sorted(e["seed"] for e in runs["kasp"]) == [42, 43]
    rows = {cells[0].split(" (")[0].strip("*"): cells[1].strip("*") for cells in _table(README, "| SST-2 dev accuracy | at 90 % |")}
    assert rows == {"dense teacher": f"{res['teacher']['metric'] * 100:.2f}",
                    "KASP": _mean_spread([e["metric"] for e in runs["kasp"]]),
                    "magnitude": _mean_spread([e["metric"] for e in runs["magnitude"]]),
                    "small-dense": _mean_spread([e["metric"] for e in runs["small-dense"]])}
    text = README.read_text(encoding="utf-8")
    mean = {m: sum(e["metric"] for e in r) * 100 / len(r) for m, r in runs.items()}
    assert f"by {mean['kasp'] - mean['magnitude']:.2f} points" in text
    assert f"same non-zero size by {mean['kasp'] - mean['small-dense']:.2f}," in text
    budget = res["plan"]["budget"]
    assert {e["steps"] for r in runs.values() for e in r} == {budget["max_steps"]}
    assert f"{budget['max_steps']:,} prune steps" in text and f"dense teacher ({budget['teacher_steps']:,} steps)" in text
    sd = {(e["small_dense"]["layers"], e["small_dense"]["ffn_width"]) for e in runs["small-dense"]}
    assert sd == {(1, 608)} and "small-dense (1 layer, FFN 608" in text


def test_the_readmes_mrpc_sentence_is_the_shipped_mrpc_grid():
    """The README's MRPC sentence under the headline table quotes assets/sweeps/mrpc.json at 90 % (F1, mean ± half
    the range over the seeds, KASP then magnitude then small-dense) and its budget in epochs."""
    res = json.loads((ROOT / "assets" / "sweeps" / "mrpc.json").read_text(encoding="utf-8"))
    cell = {m: _mean_spread([e["metric"] for e in res["runs"] if e["method"] == m and e["sparsity"] == 0.9])
            for m in ("kasp", "magnitude", "small-dense")}
    text = " ".join(README.read_text(encoding="utf-8").split())
    from kasp.ui.devset import majority_metric

    floor = 100 * majority_metric("mrpc")
    assert (f"They hold on MRPC's {res['plan']['budget']['epochs']:g}-epoch grid too (dev F1 {cell['kasp']} against "
            f"{cell['magnitude']} and {cell['small-dense']}; always answering \"equivalent\" scores {floor:.2f}, so "
            "both baselines end below it)") in text
    means = {m: float(c.split(" ± ")[0]) for m, c in cell.items()}
    assert means["magnitude"] < floor and means["small-dense"] < floor < means["kasp"]


_CLAUSES = {  # the README's clause on each grid under the headline table, before the three numbers at 90 %
    "stsb": lambda res: "on STS-B's (dev Pearson correlation, ×100: ",
    "cola": lambda res: f"and on CoLA's {res['plan']['budget']['epochs']:g}-epoch grid (dev Matthews correlation, ×100: ",
}


@pytest.mark.parametrize("task", sorted(_CLAUSES))
def test_the_readmes_clause_is_the_shipped_grid(task):
    """The README's STS-B and CoLA clauses under the headline table quote assets/sweeps/<task>.json at 90 %
    (correlation ×100, mean ± half the range over the seeds, KASP then magnitude then small-dense) and its teacher;
    the claims they make hold in the file: KASP leads both baselines by more than the seed spread."""
    res = json.loads((ROOT / "assets" / "sweeps" / f"{task}.json").read_text(encoding="utf-8"))
    vals = {m: [e["metric"] for e in res["runs"] if e["method"] == m and e["sparsity"] == 0.9]
            for m in ("kasp", "magnitude", "small-dense")}
    cell = {m: _mean_spread(v) for m, v in vals.items()}
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert (_CLAUSES[task](res) + f"{cell['kasp']} against {cell['magnitude']} and "
            f"{cell['small-dense']}; teacher {100 * res['teacher']['metric']:.2f})") in text
    mean = {m: 100 * sum(v) / len(v) for m, v in vals.items()}
    spread = max(100 * (max(v) - min(v)) / 2 for v in vals.values())
    assert all(len(v) == 2 for v in vals.values())
    assert mean["kasp"] - mean["magnitude"] > spread and mean["kasp"] - mean["small-dense"] > spread


# --- docs/results.md: the tables tests/repo/test_results_tables.py does not check ----------------------
def _precomputed() -> list[dict]:
    return json.loads((ROOT / "assets" / "precomputed" / "runs.json").read_text(encoding="utf-8"))


def _precomputed_run(method_cell: str, sparsity: float) -> dict:
    method = "finetune" if method_cell.startswith("dense teacher") else method_cell.split(",")[0].split()[0].lower()
    hits = [r for r in _precomputed() if r["method"] == method and r["target_sparsity"] == sparsity]
    assert len(hits) == 1, (method_cell, sparsity)
    return hits[0]


def test_the_2_core_table_is_the_precomputed_runs():
    """Every row of "Results on a 2-core CPU" without † is a shipped precomputed run (dev accuracy, measured
    sparsity, steps, wall time), and every precomputed run is a row. The † row (a
    15-minute budget run) is bench/budget/sst2-budget15.json's fresh-clone run: accuracy, steps, wall time.
    The teacher row is the shipped teacher: accuracy and wall time."""
    budget_runs = json.loads((ROOT / "bench" / "budget" / "sst2-budget15.json").read_text(encoding="utf-8"))["runs"]
    seen = set()
    for cells in _table(RESULTS, "| task | method | sparsity (encoder linear) |"):
        line = " | ".join(cells)
        task, method, sparsity, acc, wall, command = cells
        assert task == "SST-2", line
        s = float(sparsity.rstrip(" %")) / 100
        if acc.endswith("§"):  # today's default from a fresh clone: bench/default/, and still today's default
            rep = json.loads((ROOT / "bench" / "default" / "sst2-kasp90" / "report.json").read_text(encoding="utf-8"))
            rec = json.loads((ROOT / "bench" / "default" / "sst2-kasp90" / "config.json").read_text(encoding="utf-8"))["recipe"]
            assert f"{rep['metrics']['accuracy'] * 100:.2f}§" == acc and wall == f"{rep['wall_seconds'] / 60:.1f} min", line
            assert round(rep["sparsity"]["pruned_sparsity"] * 100, 2) == float(sparsity.rstrip(" %")), line
            assert command == "`kasp prune --task sst2 --sparsity 0.9`" and f"{rep['steps']:,} steps" in method, line
            from kasp.spec.config import make_config

            today = make_config("prune", "kasp", "sst2", sparsity=0.9).to_dict()
            assert {k: v for k, v in rec.items() if k not in ("teacher", "num_threads")} == {
                k: v for k, v in today.items() if k not in ("teacher", "num_threads")}, "the default changed: re-measure"
            continue
        if acc.endswith("†"):
            m = re.fullmatch(r"([\d.]+) min \(([\d,]+) steps\)", wall)
            hits = [r for r in budget_runs if r["steps"] == int(m.group(2).replace(",", ""))]
            assert len(hits) == 1, line
            run = hits[0]
            assert f"{run['metric'] * 100:.2f}†" == acc and f"{run['wall_seconds'] / 60:.1f}" == m.group(1), line
            assert run["target_sparsity"] == s and "--time-budget 15" in command, line
            continue
        run = _precomputed_run(method, s)
        seen.add(run["id"])
        assert f"{run['metric'] * 100:.2f}" == acc, line
        assert round(run["measured_sparsity"] * 100, 2) == float(sparsity.rstrip(" %")), line
        steps = re.search(r"--max-steps (\d+)", command)
        assert steps is None or int(steps.group(1)) == run["steps"], line
        assert command.strip("`").split(" --max-steps")[0] in run["command"], line
        assert wall.rstrip("*") == f"{run['wall_seconds'] / 60:.1f} min", line
    assert seen == {r["id"] for r in _precomputed()}


def test_the_retention_table_is_the_precomputed_runs():
    """"What the students kept of the teacher" quotes each precomputed student's retention summary."""
    rows = _table(RESULTS, "| student | SST-2 dev sentences | attention similarity |")
    assert len(rows) == len([r for r in _precomputed() if r["retention"]])
    for cells in rows:
        line = " | ".join(cells)
        name, samples, sim, mse, cka, agreement = (c.strip("*") for c in cells)
        method, sparsity = name.split()[:2]
        ret = _precomputed_run(method, float(sparsity.rstrip("%")) / 100)["retention"]
        assert [samples, sim, mse, cka, agreement] == [str(ret["samples"]), f"{ret['mean_similarity']:.3f}",
                                                      f"{ret['mean_score_mse']:.2f}", f"{ret['mean_cka']:.3f}",
                                                      f"{ret['agreement'] * 100:.1f} %"], line


def test_the_class_preset_table_is_the_shipped_trials():
    """The class-length preset's table: the 300-step teacher, KASP and magnitude at 500 and 700 prune steps
    (mean ± half the range, minutes a run) are bench/trials/class-steps<N>.json; the comparison row's
    accuracies are the shipped SST-2 sweep's (its minutes are the sweep's typical run, not compared)."""
    header = "| SST-2, 90 %, 300-step teacher ("
    rows = _table(RESULTS, header)
    text = RESULTS.read_text(encoding="utf-8")
    head = text[text.index(header):].split("\n", 1)[0]
    for cells in rows:
        line = " | ".join(cells)
        kasp, magnitude, minutes = (c.strip("*") for c in cells[1:])
        m = re.match(r"(\d+) prune steps", cells[0])
        if m is None:  # the sweep's recipe, for comparison
            res = json.loads((ROOT / "assets" / "sweeps" / "sst2.json").read_text(encoding="utf-8"))
            runs = [e for e in res["runs"] if e["sparsity"] == 0.9]
            assert f"({res['teacher']['metric'] * 100:.2f} %)" in cells[0], line
        else:
            res = json.loads((ROOT / "bench" / "trials" / f"class-steps{m.group(1)}.json").read_text(encoding="utf-8"))
            runs = res["runs"]
            assert res["plan"]["budget"]["max_steps"] == int(m.group(1)) and {e["steps"] for e in runs} == {int(m.group(1))}
            teacher = res["teacher"]
            assert head.startswith(f"| SST-2, 90 %, {teacher['recipe']['max_steps']}-step teacher "
                                   f"({teacher['metric'] * 100:.2f} %, {teacher['wall_seconds'] / 60:.1f} min)"), head
            wall = {k: sum(e["wall_seconds"] for e in runs if e["method"] == k) / 60 / 2 for k in ("kasp", "magnitude")}
            assert minutes == f"{wall['kasp']:.1f} / {wall['magnitude']:.1f}", line
        for method, cell in (("kasp", kasp), ("magnitude", magnitude)):
            vals = [e["metric"] for e in runs if e["method"] == method]
            assert len(vals) == 2 and cell == _mean_spread(vals), line


def test_the_method_pages_table_is_the_precomputed_runs():
    """docs/method.md §7 quotes the three 90 % precomputed runs: dev accuracy, measured sparsity, wall time."""
    rows = _table(ROOT / "docs" / "method.md", "| run | sparsity (encoder linear) | SST-2 dev accuracy | wall time |")
    assert len(rows) == 3
    for cells in rows:
        line = " | ".join(cells)
        name, sparsity, acc, wall = cells
        run = _precomputed_run(name, round(float(sparsity.rstrip(" %")) / 100, 1))
        assert f"{run['metric'] * 100:.2f}" == acc and wall == f"{run['wall_seconds'] / 60:.1f} min", line
        assert round(run["measured_sparsity"] * 100, 2) == float(sparsity.rstrip(" %")), line


def test_the_class_runs_teacher_table_is_its_trials():
    """The class preset's 500 steps with each teacher: every cell is the mean ± half the range of its trial file's
    two seeds, each row's teacher (steps and dev accuracy) is the file's, and the minutes quoted are the files'."""
    header = "| SST-2, 90 %, 500 prune steps; teacher |"
    rows = _table(RESULTS, header)
    assert len(rows) == 3   # the preset's teacher, the shipped one, the shipped one with SST-2's adopted recipe
    methods = ("kasp", "magnitude", "small-dense", "magnitude-distil")
    minutes = {}
    for cells in rows:
        files = re.findall(r"`([\w.-]+)`", cells[5])
        runs, teachers = [], set()
        for name in files:
            res = json.loads((ROOT / "bench" / "trials" / f"{name}.json").read_text(encoding="utf-8"))
            assert res["plan"]["budget"]["max_steps"] == 500 and {e["steps"] for e in res["runs"]} == {500}, name
            runs += [e | {"_file": name} for e in res["runs"]]
            teachers.add((res["teacher"]["recipe"]["max_steps"], f"{res['teacher']['metric'] * 100:.2f}"))
        (steps, acc), = teachers  # one teacher per row (the re-trained 300-step one scores the same)
        assert f"{steps:,} steps ({acc} %" in cells[0], cells[0]
        adopted = {e["recipe"]["lr"] for e in runs if e["method"] == "kasp"} == {4e-4}
        assert adopted == ("adopted" in " ".join(files)) == ("SST-2's default since 2026-12-03" in cells[0]), cells[0]
        for method, cell in zip(methods, cells[1:5]):
            vals = [e["metric"] for e in runs if e["method"] == method]
            assert cell.strip("*") == (_mean_spread(vals) if vals else "not run"), (method, cells)
            assert not vals or len(vals) == 2
            walls = [e["wall_seconds"] for e in runs if e["method"] == method
                     and e["_file"] not in ("class-steps500", "class-steps500-shipped-teacher-adopted")]
            if walls:  # the newer trials' (two runs at once); class-steps500's are the table above's
                minutes[method] = sum(walls) / len(walls) / 60
    text = RESULTS.read_text(encoding="utf-8")
    quoted = text[text.index("their minutes a run ("):].split(")", 1)[0]
    for method, label in (("kasp", "KASP"), ("magnitude", "magnitude"), ("small-dense", "small-dense"),
                          ("magnitude-distil", "magnitude + distillation")):
        assert f"{label} {minutes[method]:.1f}" in " ".join(quoted.split()), (method, quoted)
