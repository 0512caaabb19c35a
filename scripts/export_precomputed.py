"""Maintainer's script: write finished runs as the app's shipped demo data (assets/precomputed/runs.json).

Usage, from the repository root after real runs (see docs/results.md, "Results on a 2-core CPU"):

    .venv/bin/python scripts/export_precomputed.py runs/<teacher-id> runs/<kasp-id> runs/<magnitude-id> ...

Each entry keeps the run's recipe, command, result, per-matrix sparsity, progress log and (where
``kasp attention`` wrote ``retention.json`` into the run directory) its retention measures, so every
number the app shows from it says which recipe produced it. Not part of the package.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kasp.ground.errors import KaspError
from kasp.spec.metrics import METRIC_NAMES
from kasp.ground.resources import precomputed_path
from kasp.ground.runs import RunDir, atomic_write_json

#: the retention measures copied from a run's retention.json (the per-head arrays are large)
RETENTION_KEYS = ("mean_similarity", "mean_cka", "mean_score_mse", "agreement", "kl", "samples", "similarity", "cka")
MACHINE = "2-core CPU, 24 GiB (the project's reference machine)"


def precomputed_entry(run_dir: str | Path, machine: str = MACHINE) -> dict[str, Any]:
    """The shipped summary of one finished run.

    Raises:
        KaspError: if the run is not finished ("done") or has no report.
    """
    run = RunDir(Path(run_dir))
    rep, rec = run.report(), run.recipe()
    if run.state() != "done" or not rep:
        raise KaspError(f"{run_dir} is not a finished run (state {run.state()!r}); export only runs that are done")
    main = rep["main_metric"]
    ret_file = run.path / "retention.json"
    retention = json.loads(ret_file.read_text(encoding="utf-8")) if ret_file.is_file() else {}
    return {
        "id": f"precomputed/{run.id}", "task": rep["task"], "method": rep["method"], "target_sparsity": rep["target_sparsity"],
        "measured_sparsity": rep["sparsity"]["pruned_sparsity"], "overall_sparsity": rep["sparsity"]["overall_sparsity"],
        "metric": rep["metrics"][main], "metric_name": METRIC_NAMES[main], "metrics": rep["metrics"],
        "wall_seconds": rep["wall_seconds"], "steps": rep["steps"], "recipe": rec,
        "command": " ".join(["kasp"] + run.config().get("provenance", {}).get("command", [])[1:]),
        "per_matrix_sparsity": rep["per_matrix_sparsity"], "progress": run.progress(),
        "retention": {k: v for k, v in retention.items() if k in RETENTION_KEYS} or None,
        "machine": machine,
    }


def export_precomputed(run_dirs: list[str | Path], path: Path | None = None, machine: str = MACHINE) -> list[dict[str, Any]]:
    """Write the summaries of finished runs to ``path`` (default: the shipped runs.json), atomically."""
    out = [precomputed_entry(d, machine) for d in run_dirs]
    path = Path(path) if path else precomputed_path("runs.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="finished run directories")
    ap.add_argument("--out", default=None, help="output file (default: assets/precomputed/runs.json)")
    ap.add_argument("--machine", default=MACHINE, help="the machine the runs were made on, shown with their numbers")
    args = ap.parse_args(argv)
    try:
        out = export_precomputed(args.runs, args.out, args.machine)
    except KaspError as e:
        print(f"export_precomputed: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(out)} run(s) to {args.out or precomputed_path('runs.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
