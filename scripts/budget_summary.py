"""Collect wall-time-budget runs (``kasp prune --time-budget MINUTES``) into one JSON file and print them
as a Markdown table: per run, the step count the budget chose, the dev metric, and the wall time the
run took against its budget (the issue-14 check that a budgeted run ends in time).

    .venv/bin/python scripts/budget_summary.py RUNS_FOLDER OUT.json   # collect, write, print
    .venv/bin/python scripts/budget_summary.py OUT.json               # print a collected file

RUNS_FOLDER holds one run directory per run (``kasp prune --out RUNS_FOLDER/<name>``); directories
without a ``report.json`` (unfinished runs) are left out. Only the numbers are kept: no weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kasp.experiments.sweep import machine  # noqa: E402


def collect(folder: Path) -> dict:
    """One entry per finished run of ``folder``, sorted by name.

    Raises:
        SystemExit: when ``folder`` holds no finished run, or a run's files are not JSON.
    """
    runs = []
    for rd in sorted(p for p in folder.iterdir() if (p / "report.json").is_file()):
        try:
            rep = json.loads((rd / "report.json").read_text())
            cfg = json.loads((rd / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"{rd}: unreadable run files ({e}); rerun that run or move it out of {folder}")
        recipe = cfg.get("recipe", cfg)
        teacher = (rep.get("teacher") or {}).get("metrics") or {}
        runs.append({
            "name": rd.name, "task": rep["task"], "method": rep["method"], "target_sparsity": rep["target_sparsity"],
            "measured_sparsity": rep["sparsity"]["pruned_sparsity"], "seed": recipe.get("seed"),
            "main_metric": rep["main_metric"], "metric": rep["metrics"][rep["main_metric"]], "metrics": rep["metrics"],
            "teacher_metric": teacher.get(rep["main_metric"]), "steps": rep["steps"],
            "wall_seconds": rep["wall_seconds"], "train_seconds": rep["train_seconds"],
            "time_budget": rep.get("time_budget"),
        })
    if not runs:
        raise SystemExit(f"{folder}: no finished run (no */report.json) to collect")
    return {"format": "kasp-budget-runs", "machine": machine(), "runs": runs}


def table(data: dict) -> str:
    """The collected runs as a Markdown table (metrics in %, times in minutes)."""
    out = ["| run | seed | budget (min) | steps chosen | dev metric | teacher | wall time (min) | within budget |",
           "|---|---|---|---|---|---|---|---|"]
    for r in data["runs"]:
        minutes = (r.get("time_budget") or {}).get("minutes")
        wall = r["wall_seconds"] / 60
        within = "n/a" if minutes is None else ("yes" if wall <= minutes else f"no (+{wall - minutes:.1f})")
        teacher = "" if r["teacher_metric"] is None else f"{r['teacher_metric'] * 100:.2f}"
        out.append(f"| {r['name']} | {r['seed']} | {minutes if minutes is not None else ''} | {r['steps']} | "
                   f"{r['main_metric']} {r['metric'] * 100:.2f} | {teacher} | {wall:.1f} | {within} |")
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        data = collect(Path(sys.argv[1]))
        Path(sys.argv[2]).parent.mkdir(parents=True, exist_ok=True)
        Path(sys.argv[2]).write_text(json.dumps(data, indent=1) + "\n")
    elif len(sys.argv) == 2:
        data = json.loads(Path(sys.argv[1]).read_text())
    else:
        raise SystemExit(__doc__)
    print(table(data))
