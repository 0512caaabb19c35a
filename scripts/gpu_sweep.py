"""The GPU route: the five shipped tasks swept at the paper's length on one GPU, in one call of a few minutes.

Run from the repository root on a machine with one CUDA GPU (KASP uses it through Accelerate, no flag):

    .venv/bin/python scripts/gpu_sweep.py --minutes 7.5        # then commit assets/sweeps/gpu/

What it runs: for each task (SST-2, MRPC, RTE, STS-B, CoLA), a dense teacher (3 epochs; SST-2 1)
and then KASP, magnitude and small-dense at 50, 90 and 95 % sparsity (seeds 42 and 43 at 90 %), each
prune run 12 epochs as the paper trains MRPC (SST-2: 2 epochs, its 67k examples), the default
model and recipe otherwise (lr 1e-4, batch 32, length 128). Several runs share the device at once:
first the five teachers in parallel, then one ``kasp sweep`` per task and method (15 processes), each
with its own results file in the store, stopped by ``--stop-after`` when the call's minutes are
spent (an interrupted run resumes when the script runs again). At the end, the results of each task
are merged into ``assets/sweeps/gpu/<task>.json``, which the app draws as its own labelled source
("GPU sweep, 12 epochs", :func:`kasp.experiments.results.load_shipped_gpu`). No augmentation (the paper's authors
also trained on augmented data): each file's ``plan`` says so.

The GPU machine has no network and takes at most 64 MiB of files: ``scripts/gpu_prepare.sh`` packs the
default model into ``.gpu/`` (fp16, ``scripts/gpu_pack.py``) with the wheels the GPU image lacks, and
gives the one device call that runs this script there (``--model .gpu/model``).

On a CPU the same script runs with ``--model`` a tiny checkpoint and ``--max-train-samples`` small
(``tests/experiments/test_gpu_sweep.py``); the results then go where ``--out`` says, never into assets/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("sst2", "mrpc", "rte", "stsb", "cola")
METHODS = ("kasp", "magnitude", "small-dense")
SOURCE = "GPU sweep, 12 epochs"


def _train_size(task: str, max_train_samples: int | None) -> int:
    sys.path.insert(0, str(ROOT))
    from kasp.data.glue import load_split

    n = len(load_split(task, "train"))
    return min(n, max_train_samples) if max_train_samples else n


def _steps(task: str, epochs: float, batch: int, max_train_samples: int | None) -> int:
    return max(1, math.ceil(epochs * _train_size(task, max_train_samples) / batch))


def _kasp(*args: str) -> list[str]:
    return [sys.executable, "-m", "kasp", *args]


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    f = open(log, "ab")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=os.environ | {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                                              "TOKENIZERS_PARALLELISM": "false"})


def merge(files: list[Path], task: str, label: str, extra_plan: dict) -> dict | None:
    """One results object for a task from its per-method sweep files (None when none exists)."""
    sys.path.insert(0, str(ROOT))
    from kasp.experiments.results import load_results, validate_results

    parts = [load_results(f) for f in files if f.is_file()]
    if not parts:
        return None
    out = dict(parts[0])
    out["runs"] = [r for p in parts for r in p["runs"]]
    plan = dict(out.get("plan") or {})
    plan["methods"] = [m for m in METHODS if any(m in (p.get("plan") or {}).get("methods", []) for p in parts)]
    plan["runs"] = sum((p.get("plan") or {}).get("runs", 0) for p in parts)
    plan.update(extra_plan)
    out["plan"] = plan
    out["source"] = label
    out["sweep_seconds"] = max(p.get("sweep_seconds") or 0 for p in parts)
    return validate_results(out, f"merged GPU sweep of {task}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=7.5, help="wall time of the whole call (default 7.5)")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--epochs", type=float, default=12.0, help="epochs of each prune run (SST-2: --sst2-epochs)")
    ap.add_argument("--sst2-epochs", type=float, default=2.0)
    ap.add_argument("--teacher-epochs", type=float, default=3.0, help="epochs of each teacher (SST-2: 1)")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.9, 0.95])
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-train-samples", type=int, default=None, help="a subset per task (the CPU test)")
    ap.add_argument("--max-eval-samples", type=int, default=None)
    ap.add_argument("--max-seq-length", type=int, default=128)
    ap.add_argument("--store", default=str(ROOT / "runs" / "gpu"), help="run store of the call (teachers, sweeps, logs)")
    ap.add_argument("--out", default=str(ROOT / "assets" / "sweeps" / "gpu"), help="where the merged results go")
    ap.add_argument("--retention-samples", type=int, default=128)
    args = ap.parse_args(argv)

    t0 = time.time()
    deadline = t0 + 60 * args.minutes
    store, out = Path(args.store), Path(args.out)
    common = ["--model", args.model, "--max-seq-length", str(args.max_seq_length)]
    if args.max_train_samples:
        common += ["--max-train-samples", str(args.max_train_samples)]
    if args.max_eval_samples:
        common += ["--max-eval-samples", str(args.max_eval_samples)]

    # 1. the teachers, in parallel (skipped where a finished one is in the store)
    teachers, procs = {}, []
    for task in args.tasks:
        tdir = store / "teachers" / task
        teachers[task] = tdir
        if (tdir / "report.json").is_file():
            continue
        epochs = 1.0 if task == "sst2" else args.teacher_epochs
        procs.append(_spawn(_kasp("finetune", "--task", task, "--epochs", str(epochs), "--out", str(tdir),
                                  "--runs-dir", str(store), "--no-progress", "--eval-every", "0", *common),
                            store / "logs" / f"teacher-{task}.log"))
    for p in procs:
        p.wait(timeout=max(1.0, deadline - time.time()))
    ready = [t for t in args.tasks if (teachers[t] / "report.json").is_file()]
    for t in set(args.tasks) - set(ready):
        print(f"gpu_sweep: no teacher for {t} (see {store / 'logs' / f'teacher-{t}.log'}); its sweep is skipped")

    # 2. one sweep per task and method, all at once, stopped when the minutes are spent
    minutes_left = max(0.5, (deadline - time.time()) / 60 - 0.5)  # keep 30 s to merge
    procs = []
    for task in ready:
        epochs = args.sst2_epochs if task == "sst2" else args.epochs
        steps = _steps(task, epochs, 32, args.max_train_samples)
        for m in METHODS:
            procs.append(_spawn(_kasp("sweep", "--task", task, "--methods", m, "--sparsities", *map(str, args.sparsities),
                                      "--seeds", "42", "43", "--multi-seed-sparsities", "0.9", "--max-steps", str(steps),
                                      # one store per sweep: kasp sweep runs one sweep per task and store at a time
                                      "--teacher", str(teachers[task]), "--runs-dir", str(store / "by-method" / f"{task}-{m}"),
                                      "--results", str(store / "results" / f"{task}-{m}.json"),
                                      "--retention-samples", str(args.retention_samples),
                                      "--stop-after", f"{minutes_left:.2f}", *common),
                                store / "logs" / f"sweep-{task}-{m}.log"))
    for p in procs:
        try:
            p.wait(timeout=max(1.0, deadline - time.time() + 60))
        except subprocess.TimeoutExpired:
            p.terminate()
            p.wait(timeout=120)

    # 3. merge per task into the shipped folder
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    for task in ready:
        epochs = args.sst2_epochs if task == "sst2" else args.epochs
        res = merge([store / "results" / f"{task}-{m}.json" for m in METHODS], task, SOURCE if epochs == 12 and task != "sst2"
                    else f"GPU sweep, {epochs:g} epochs",
                    {"epochs": epochs, "augmented_data": False, "route": "scripts/gpu_sweep.py",
                     "model_note": "the default model carried as fp16 weights (scripts/gpu_pack.py)"
                     if args.model.rstrip("/").endswith(".gpu/model") else None})
        if res is None:
            continue
        tmp = out / f".{task}.json.tmp"
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        os.replace(tmp, out / f"{task}.json")
        summary[task] = len(res["runs"])
    print(f"gpu_sweep: {sum(summary.values())} runs in {(time.time() - t0) / 60:.1f} min: "
          + ", ".join(f"{t} {n}" for t, n in summary.items()) + f"; results in {out}")
    return 0 if summary else 1


if __name__ == "__main__":
    sys.exit(main())
