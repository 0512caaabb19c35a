"""What the teacher-output cache (kasp/teacher_cache.py) saves per epoch, and how a sweep should use 2 cores.

Run from the repository root on an idle machine (about 12 minutes on 2 cores; ``--quick``: a 1-minute
smoke run on a few batches):

    .venv/bin/python bench/teacher_cache.py      # prints tables, writes bench/teacher_cache.json

1. **Time per epoch with and without the cache**, in one process, on SST-2 (length 64) and MRPC (sentence
   pairs, length 128): the real training loop (:func:`kasp.train.train`, KASP at 90 %, all three
   distillation terms) for 3 epochs of a fixed subset of the training set (SST-2 2,048 examples, MRPC
   1,024), once with ``--no-teacher-cache`` and once with a cold cache; the two runs alternate by task.
   The teacher is the default model with a fresh classifier head saved to a temporary folder: the
   cost of its forward pass does not depend on what it learnt. Epoch 1 with the cache also writes the
   cache; epochs 2 and 3 read it. The saving of a 3-epoch run is the sum over its epochs.
2. **One 2-thread run against two 1-thread runs side by side** (the sweep's scheduling question): the
   same SST-2 KASP run (``--no-teacher-cache``, 60 steps) alone with 2 torch threads, then two copies
   at once with 1 thread each; the throughput is optimizer steps per second summed over the processes,
   from each run's own ``train_seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TASKS = {"sst2": {"samples": 2048, "length": 64}, "mrpc": {"samples": 1024, "length": 128}}
EPOCHS, BATCH = 3, 32


def _teacher(folder: Path) -> str:
    """The default model with a fresh 2-class head, saved as a safetensors checkpoint (timing only)."""
    import torch

    from kasp.modeling import default_model_path, load_classifier, load_tokenizer

    torch.manual_seed(0)
    path = default_model_path()
    load_classifier(path, num_labels=2).save_pretrained(folder)
    load_tokenizer(path).save_pretrained(folder)
    return str(folder)


def epoch_times(task: str, teacher: str, cache: bool, samples: int, length: int, threads: int) -> dict:
    """Seconds of each of the EPOCHS epochs of a KASP run, and the cache's counts."""
    from kasp.config import make_config
    from kasp.train import train

    spe = -(-samples // BATCH)
    stamps: dict[int, float] = {}
    cfg = make_config("prune", "kasp", task, sparsity=0.9, teacher=teacher, max_train_samples=samples,
                      max_steps=EPOCHS * spe, max_seq_length=length, eval_every=0, max_eval_samples=32,
                      log_every=1, teacher_cache=cache, num_threads=threads)
    with tempfile.TemporaryDirectory() as cache_dir:
        os.environ["KASP_CACHE_DIR"] = cache_dir  # a cold cache for every run
        res = train(cfg, callbacks=[lambda ev, rec: ev == "train" and stamps.setdefault(rec["step"], time.perf_counter())],
                    progress_bar=False)
    # epoch e ends at step e * spe; epoch 1 is timed from the end of step 1 (loading excluded) and scaled
    bounds = [1] + [e * spe for e in range(1, EPOCHS + 1)]
    times = [stamps[b] - stamps[a] for a, b in zip(bounds, bounds[1:])]
    times[0] *= spe / (spe - 1)
    return {"epoch_seconds": times, "steps_per_epoch": spe, "teacher_cache": res.report.get("teacher_cache")}


def side_by_side(teacher: str, steps: int, samples: int) -> dict:
    """Optimizer steps per second: one run with 2 threads, then two runs with 1 thread at once."""
    def launch(threads: int, out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "kasp", "prune", "--task", "sst2", "--sparsity", "0.9",
                                 "--teacher", teacher, "--max-steps", str(steps), "--max-train-samples", str(samples),
                                 "--eval-every", "0", "--max-eval-samples", "32", "--no-teacher-cache",
                                 "--num-threads", str(threads), "--no-progress", "--out", str(out),
                                 "--runs-dir", str(out.parent)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def rate(out: Path) -> float:
        rep = json.loads((out / "report.json").read_text())
        return rep["steps"] / rep["train_seconds"]

    with tempfile.TemporaryDirectory() as store:
        s = Path(store)
        p = launch(2, s / "alone")
        assert p.wait() == 0, "the 2-thread run failed"
        alone = rate(s / "alone")
        procs = [launch(1, s / f"pair{i}") for i in range(2)]
        assert all(q.wait() == 0 for q in procs), "a 1-thread run failed"
        pair = [rate(s / f"pair{i}") for i in range(2)]
    return {"one_2thread_steps_per_s": alone, "two_1thread_steps_per_s": pair, "two_1thread_total": sum(pair),
            "ratio_two_over_one": sum(pair) / alone, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few batches per epoch: a smoke run, not a measurement")
    ap.add_argument("--out", default=str(ROOT / "bench" / "teacher_cache.json"))
    args = ap.parse_args()
    import torch

    threads = 2
    tasks = {k: dict(v, samples=128 if args.quick else v["samples"]) for k, v in TASKS.items()}
    result = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": threads},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick, "epochs": EPOCHS,
              "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = _teacher(Path(tmp) / "teacher")
        for task, t in tasks.items():
            runs = {}
            for cache in (False, True):
                runs["cache" if cache else "no_cache"] = epoch_times(task, teacher, cache, t["samples"], t["length"], threads)
            off, on = runs["no_cache"]["epoch_seconds"], runs["cache"]["epoch_seconds"]
            runs["saving_of_the_run"] = 1 - sum(on) / sum(off)
            runs["later_epoch_ratio"] = (on[1] + on[2]) / (off[1] + off[2])
            runs["first_epoch_ratio"] = on[0] / off[0]
            runs.update(samples=t["samples"], max_seq_length=t["length"])
            result["tasks"][task] = runs
            print(f"{task}: epochs without cache {', '.join(f'{x:.1f}' for x in off)} s; with cache "
                  f"{', '.join(f'{x:.1f}' for x in on)} s; 3-epoch run {100 * runs['saving_of_the_run']:.1f} % shorter; "
                  f"epochs 2-3 take {runs['later_epoch_ratio']:.2f}x, epoch 1 {runs['first_epoch_ratio']:.2f}x", flush=True)
        sbs = side_by_side(teacher, 12 if args.quick else 60, 256 if args.quick else 2048)
        result["side_by_side"] = sbs
        print(f"SST-2 KASP steps/s: one run, 2 threads {sbs['one_2thread_steps_per_s']:.2f}; two runs, 1 thread each "
              f"{' + '.join(f'{x:.2f}' for x in sbs['two_1thread_steps_per_s'])} = {sbs['two_1thread_total']:.2f} "
              f"({sbs['ratio_two_over_one']:.2f}x)", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
