"""Print the knob trials (scripts/run_trials.sh) and the augmentation runs (scripts/run_sweeps.sh) as
Markdown tables: metric per seed, mean, spread (half the range) and mean wall time per run.

    .venv/bin/python scripts/trials_table.py                 # bench/trials/*.json
    .venv/bin/python scripts/trials_table.py bench/augment   # the augmentation results
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kasp.ground.errors import KaspError  # noqa: E402
from kasp.experiments.results import load_results  # noqa: E402


def rows(folder: Path) -> list[str]:
    out = ["| results file | change | method, sparsity | runs | metric per seed | mean | spread | min per run |",
           "|---|---|---|---|---|---|---|---|"]
    for f in sorted(folder.glob("*.json")):
        try:
            res = load_results(f)
        except KaspError as e:
            out.append(f"| {f.name} | unreadable: {e} | | | | | | |")
            continue
        change = ", ".join(f"{k}={v}" for k, v in (res["plan"].get("overrides") or {}).items())
        if res["plan"].get("augment"):
            change = f"augment {res['plan']['augment_source']} x{res['plan']['augment']}" + (f", {change}" if change else "")
        for method, sp in sorted({(e["method"], e["sparsity"]) for e in res["runs"]}):  # never a mean across methods
            runs = sorted((e for e in res["runs"] if (e["method"], e["sparsity"]) == (method, sp)), key=lambda e: e["seed"])
            vals = [e["metric"] * 100 for e in runs]
            per_seed = ", ".join(f"{e['seed']}: {e['metric'] * 100:.2f}" for e in runs)
            mean = sum(vals) / len(vals)
            spread = (max(vals) - min(vals)) / 2
            wall = sum(e["wall_seconds"] for e in runs) / len(runs) / 60
            out.append(f"| {f.name} | {change or 'default recipe'} | {method} {sp * 100:g} % | {len(runs)} | {per_seed} | {mean:.2f} | "
                       f"{spread:.2f} | {wall:.1f} |")
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "trials"
    print("\n".join(rows(folder)))
