"""The docs table of the shipped sweeps (docs/results.md, "Shipped sweeps"): per task, its teacher, the budget a run
had, and at each sparsity KASP, magnitude and small-dense as mean ± half the range over seeds, from the results files
the app shows (assets/sweeps/<task>.json) or from another folder of them.

    .venv/bin/python scripts/sweep_table.py                               # printed, from assets/sweeps
    .venv/bin/python scripts/sweep_table.py --write docs/results.md       # replaces the table between its markers
    .venv/bin/python scripts/sweep_table.py --folder bench/sweeps-steps   # another folder's <task>.json files
    .venv/bin/python scripts/sweep_table.py --compare OLD_DIR NEW_DIR     # at 90 %: the budget before and now
    .venv/bin/python scripts/sweep_table.py --write-compare docs/results.md  # bench/sweeps-steps against assets/sweeps

tests/repo/test_results_tables.py checks that docs/results.md's table is what this prints for assets/sweeps, and
that every number in it is the files' own.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from doc_blocks import replace_block  # noqa: E402
from kasp.experiments.results import load_results  # noqa: E402
from kasp.spec.tasks import task_name  # noqa: E402

START, END = "<!-- sweeps-table:start (scripts/sweep_table.py --write) -->", "<!-- sweeps-table:end -->"
ORDER = ("mrpc", "rte", "stsb", "cola", "sst2")
#: how the table names each task's main metric (the results file's main_metric)
METRIC = {"f1": "F1", "accuracy": "accuracy", "pearson": "Pearson", "mcc": "Matthews"}
HEADER = ["| task (metric), teacher | budget a run | sparsity | KASP | magnitude | small-dense (size of that sparsity) |",
          "|---|---|---|---|---|---|"]
METHOD_COLUMNS = ("kasp", "magnitude", "small-dense")


def budget(res: dict) -> str:
    """A run's budget as the table says it: "200 steps, length 128", or "5 epochs (575 steps), length 128" for a
    sweep planned in epochs (kasp sweep --epochs)."""
    b = (res.get("plan") or {}).get("budget") or {}
    steps = f"{b['max_steps']:,} steps" if b.get("max_steps") else "the recipe's steps"
    if b.get("epochs"):
        steps = f"{b['epochs']:g} epochs ({steps})"
    return steps + (f", length {b['max_seq_length']}" if b.get("max_seq_length") else "")


def cell(group: list[dict]) -> str:
    """Mean ×100 of one (method, sparsity)'s runs, "± half the range" over more than one seed, and ‡ where a run's
    value is GLUE's convention for a constant predictor (metrics.convention). A run without a metric is left out;
    none left: "undefined"."""
    vals = [e["metric"] * 100 for e in group if e["metric"] is not None]
    if not vals:
        return "undefined"
    out = f"{sum(vals) / len(vals):.2f}"
    if len(group) > 1:
        out += f" ± {(max(vals) - min(vals)) / 2:.2f}"
    return out + (" ‡" if any("convention" in e["metrics"] for e in group) else "")


def size(e: dict) -> str:
    """The small dense student's shape: "(3 layers, FFN 1536)", "(1 layer, FFN 608)"."""
    sd = e.get("small_dense") or {}
    if not sd.get("layers"):
        return ""
    shape = f"{sd['layers']} layer{'s' if sd['layers'] != 1 else ''}"
    return f" ({shape}, FFN {sd['ffn_width']})" if sd.get("ffn_width") else f" ({shape})"


def rows(res: dict) -> list[str]:
    """The table's rows of one task's results file: one per sparsity, the task cells on the first only."""
    runs = res["runs"]
    teacher = (res.get("teacher") or {}).get("metric")
    head = f"{task_name(res['task'])} ({METRIC.get(res['main_metric'], res['main_metric'])})"
    head += f", {teacher * 100:.2f}" if teacher is not None else ", no teacher recorded"
    out = []
    for i, sp in enumerate(sorted({round(e["sparsity"], 2) for e in runs})):
        cells = [head, budget(res)] if i == 0 else ["", ""]
        cells.append(f"{sp * 100:g} %")
        for m in METHOD_COLUMNS:
            group = [e for e in runs if e["method"] == m and round(e["sparsity"], 2) == sp]
            cells.append(cell(group) + (size(group[0]) if m == "small-dense" and group else "") if group else "")
        out.append("| " + " | ".join(cells) + " |")
    return out


def table(folder: Path) -> list[str]:
    """The whole table for the <task>.json files of ``folder``, in the docs' task order (a missing file: no rows)."""
    body = []
    for t in ORDER:
        p = folder / f"{t}.json"
        if p.exists():
            body += rows(load_results(p))
    return HEADER + body


COMPARE_HEADER = ["| task (metric) | budget a run, before | KASP | magnitude | small-dense | budget a run, now | KASP | "
                  "magnitude | small-dense | floor |",
                  "|---|---|---|---|---|---|---|---|---|---|"]


def compare(old: Path, new: Path) -> list[str]:
    """At 90 %, per task with a <task>.json in both folders: each method's mean ± half the range over seeds with the
    ``old`` files' budget and with the ``new`` ones', and the task's floor (always answering the majority class, or
    0 for a correlation: kasp.ui.devset.majority_metric), for the docs' "before / now" table of issue 29."""
    from kasp.ui.devset import majority_metric

    body = []
    for t in ORDER:
        if not ((old / f"{t}.json").exists() and (new / f"{t}.json").exists()):
            continue
        cells = [f"{task_name(t)} ({METRIC.get(load_results(new / f'{t}.json')['main_metric'], '')})"]
        for folder in (old, new):
            res = load_results(folder / f"{t}.json")
            cells.append(budget(res))
            for m in METHOD_COLUMNS:
                group = [e for e in res["runs"] if e["method"] == m and round(e["sparsity"], 2) == 0.9]
                cells.append(cell(group) if group else "not run")
        floor = majority_metric(t)
        cells.append(f"{(floor or 0.0) * 100:.2f}")
        body.append("| " + " | ".join(cells) + " |")
    return COMPARE_HEADER + body


COMPARE_START = "<!-- sweeps-compare:start (scripts/sweep_table.py --write-compare) -->"
COMPARE_END = "<!-- sweeps-compare:end -->"
#: the "before" of the before/now table: the step-budget sweeps scripts/ship_sweep.py keeps when a grid replaces them
BEFORE = ROOT / "bench" / "sweeps-steps"


def compare_block(old: Path = BEFORE, new: Path = ROOT / "assets" / "sweeps") -> str:
    """The before/now table (:func:`compare`) between its markers."""
    return "\n".join([COMPARE_START, *compare(old, new), COMPARE_END])


def write_compare(doc: Path, old: Path = BEFORE, new: Path = ROOT / "assets" / "sweeps") -> None:
    """Replace the before/now block of ``doc`` with :func:`compare_block`.

    Raises:
        SystemExit: ``doc`` lacks the markers.
    """
    replace_block(doc, COMPARE_START, COMPARE_END, compare_block(old, new))


def block(folder: Path) -> str:
    """The Markdown from the start marker to the end marker."""
    return "\n".join([START, *table(folder), END])


def write(doc: Path, folder: Path) -> None:
    """Replace the block between the markers of ``doc`` with :func:`block`."""
    replace_block(doc, START, END, block(folder))


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = ROOT / "assets" / "sweeps"
    if "--folder" in args:
        i = args.index("--folder")
        folder = Path(args[i + 1])
        del args[i:i + 2]
    if args[:1] == ["--write"] and len(args) == 2:
        write(Path(args[1]), folder)
    elif args[:1] == ["--write-compare"] and len(args) == 2:
        write_compare(Path(args[1]))
    elif args[:1] == ["--compare"] and len(args) == 3:
        print("\n".join(compare(Path(args[1]), Path(args[2]))))
    elif not args:
        print("\n".join(table(folder)))
    else:
        raise SystemExit(__doc__)
