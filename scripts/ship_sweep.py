"""Ship a task's finished grid in epochs (issue 29) as the sweep the app shows: the grid's results file
(bench/sweeps-epochs/<task>.json, written by scripts/run_sweeps.sh with EPOCHS and OUTDIR set) replaces
assets/sweeps/<task>.json (the teacher's path written from the run store's folder on, as in the earlier files), the
file it replaces is kept as bench/sweeps-steps/<task>.json (the "before" of the
before/now table, and the runs without augmentation that bench/augment/ compares with), and docs/results.md's
shipped-sweeps table and its before/now table (where the page has its markers) are written again
(scripts/sweep_table.py).

    .venv/bin/python scripts/ship_sweep.py mrpc            # refuses a grid that has not recorded every planned run
    .venv/bin/python scripts/ship_sweep.py mrpc --dry-run  # says what it would do

It never overwrites bench/sweeps-steps/<task>.json: shipping a second grid of the same task keeps the first
"before". The prose of docs/results.md around the table is for its author to update.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from kasp.experiments.results import load_results  # noqa: E402
from kasp.ground.errors import KaspError  # noqa: E402


def _store_relative(res: dict) -> dict:
    """The results with the teacher's checkpoint path (the file's teacher, each run's recipe) written from the run
    store's folder on ("runs/teachers/mrpc-holdout408-e10/checkpoint"), as the earlier shipped files hold it, instead
    of the absolute path of the machine that ran the grid; and, for a teacher trained in epochs, the plan's teacher
    budget as that teacher's epochs (``teacher_epochs``) instead of the step default the plan recorded."""
    def rel(p):
        if isinstance(p, str) and Path(p).is_absolute() and "/runs/" in p:
            return "runs/" + p.rsplit("/runs/", 1)[1]
        return p

    out = json.loads(json.dumps(res))
    if isinstance(out.get("teacher"), dict):
        out["teacher"]["path"] = rel(out["teacher"].get("path"))
        recipe = out["teacher"].get("recipe") or {}
        budget = (out.get("plan") or {}).get("budget")
        if isinstance(budget, dict) and recipe and not recipe.get("max_steps"):
            # a grid distilled from a teacher trained in epochs (--teacher) and recorded before kasp sweep wrote the
            # teacher's own budget in its plan (2026-12-03): the plan holds the default teacher_steps, which never
            # ran; the teacher's own budget replaces it (a no-op on a file kasp sweep writes today)
            budget["teacher_steps"] = None
            budget["teacher_epochs"] = recipe.get("epochs")
    for e in out["runs"]:
        if isinstance(e.get("recipe"), dict) and "teacher" in e["recipe"]:
            e["recipe"]["teacher"] = rel(e["recipe"]["teacher"])
    return out


def ship(task: str, root: Path = ROOT, dry_run: bool = False) -> list[str]:
    """Move ``task``'s finished grid into place under ``root`` (a checkout) and return what was done, a line each.

    Raises:
        KaspError: no grid file, an unreadable one, or one that has not recorded every run its plan holds (still
            running, or stopped: run scripts/run_sweeps.sh again to finish it).
    """
    grid = root / "bench" / "sweeps-epochs" / f"{task}.json"
    shipped = root / "assets" / "sweeps" / f"{task}.json"
    before = root / "bench" / "sweeps-steps" / f"{task}.json"
    if not grid.is_file():
        raise KaspError(f"no grid for {task} in {grid}: scripts/run_sweeps.sh with OUTDIR=bench/sweeps-epochs writes it")
    res = load_results(grid)
    planned = (res.get("plan") or {}).get("runs")
    if not isinstance(planned, int) or len(res["runs"]) < planned:
        raise KaspError(f"{grid} holds {len(res['runs'])} of {planned} planned runs: finish the grid first "
                        "(scripts/run_sweeps.sh resumes it)")
    done = []
    if shipped.is_file() and not before.is_file():
        done.append(f"keep {shipped.relative_to(root)} as {before.relative_to(root)}")
        if not dry_run:
            before.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shipped, before)
    done.append(f"ship {grid.relative_to(root)} as {shipped.relative_to(root)}")
    if not dry_run:
        shipped.write_text(json.dumps(_store_relative(res), indent=1) + "\n", encoding="utf-8")
    doc = root / "docs" / "results.md"
    if doc.is_file():
        done.append(f"write the shipped-sweeps table of {doc.relative_to(root)}")
        if not dry_run:
            import sweep_table

            sweep_table.write(doc, shipped.parent)
            if sweep_table.COMPARE_START in doc.read_text(encoding="utf-8"):  # the before/now table, where the page has one
                sweep_table.write_compare(doc, before.parent, shipped.parent)
    return done


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--dry-run"]
    if len(args) != 1:
        raise SystemExit(__doc__)
    try:
        for line in ship(args[0], dry_run="--dry-run" in sys.argv):
            print(line)
    except KaspError as e:
        raise SystemExit(f"ship_sweep: {e}")
