"""What the teacher-output cache (kasp/core/teacher_cache.py) saves per epoch, and how a sweep should use 2 cores.

Run from the repository root (about 12 minutes on 2 idle cores; ``--quick``: a 1-minute
smoke run on a few batches):

    .venv/bin/python bench/teacher_cache.py      # prints tables, writes bench/teacher_cache.json

1. **Time per epoch with and without the cache**, in one process, on SST-2 (length 64) and MRPC (sentence
   pairs, length 128): two identical students (the default model, KASP's loss with all three
   distillation terms, AdamW, masks at 90 % re-applied after every step) take turns batch by batch over
   3 epochs of a fixed subset of the training set (SST-2 2,048 examples, MRPC 1,024), one reading the
   teacher's outputs from a cold cache (:mod:`kasp.core.teacher_cache`), the other recomputing them. Taking
   turns puts the same machine load on both, so their ratio holds on a busy machine too. The teacher is
   the default model with a fresh classifier head saved to a temporary folder: the cost of its forward
   pass does not depend on what it learnt. Epoch 1 with the cache also writes it; epochs 2 and 3 read it.
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

    from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer

    torch.manual_seed(0)
    path = default_model_path()
    load_classifier(path, num_labels=2).save_pretrained(folder)
    load_tokenizer(path).save_pretrained(folder)
    return str(folder)


def epoch_times(task: str, teacher: str, samples: int, length: int) -> dict:
    """Seconds of each of the EPOCHS epochs of two KASP students taking turns, with and without the cache."""
    import copy

    import torch

    from kasp.spec.config import make_config
    from kasp.data.glue import LengthBucketSampler, collate, load_task_data
    from kasp.core.distill import KaspLoss
    from kasp.core.masks import MagnitudePruner
    from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer
    from kasp.training.step import training_step
    from kasp.core.teacher_cache import open_cache

    cfg = make_config("prune", "kasp", task, sparsity=0.9, teacher=teacher, max_train_samples=samples,
                      max_seq_length=length)
    tok = load_tokenizer(teacher)
    data, _ = load_task_data(cfg, tok)
    torch.manual_seed(0)
    s_off = load_classifier(default_model_path(), num_labels=2)
    t_off = load_classifier(teacher).eval()
    s_on, t_on = copy.deepcopy(s_off), copy.deepcopy(t_off)  # one score capture per model
    for t in (t_off, t_on):
        for q in t.parameters():
            q.requires_grad_(False)
    runs = {}
    for name, student, tch in (("no_cache", s_off, t_off), ("cache", s_on, t_on)):
        loss = KaspLoss.from_config(cfg, student, tch)
        pruner = MagnitudePruner(student, 0.9, 100, 10)
        pruner.step(90)  # masks near 90 %, as late in a run
        runs[name] = {"student": student, "loss": loss, "pruner": pruner,
                      "opt": torch.optim.AdamW(student.parameters(), lr=1e-4), "seconds": [0.0] * EPOCHS}
    with tempfile.TemporaryDirectory() as cache_dir:
        amap, hmap = runs["cache"]["loss"].cache_layout()
        cache = open_cache(teacher, task, length, data, amap, hmap, t_on.config, 2, 8.0, root=Path(cache_dir))
        runs["cache"]["loss"].use_cache(cache)
        sampler = LengthBucketSampler(data.lengths, BATCH, seed=0)
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            for idx in sampler:
                batch = collate(data, idx, tok.pad_token_id or 0) | {"index": torch.tensor(idx)}
                for r in runs.values():  # the two students take turns: the same load on both
                    t = time.perf_counter()
                    training_step(r["student"], batch, r["loss"], r["opt"], pruner=r["pruner"])
                    r["seconds"][epoch] += time.perf_counter() - t
        counts = {"hits": cache.hits, "misses": cache.misses, "stored_bytes": cache.stored_bytes}
    return {"no_cache": runs["no_cache"]["seconds"], "cache": runs["cache"]["seconds"], "teacher_cache": counts,
            "steps_per_epoch": len(sampler)}


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


def markdown(result: dict) -> str:
    """bench/teacher_cache.md from the results (what main() writes beside the JSON): per task the seconds of each
    epoch with and without the cache and the saving; then the side-by-side throughput."""
    lines = ["# Teacher-output cache: time per epoch", "",
             f"Written by `bench/teacher_cache.py` on {result['date']} ({result['machine']['cpus']} CPUs, torch "
             f"{result['machine']['torch']}, {result['machine']['threads']} threads){', QUICK smoke run' if result['quick'] else ''}. "
             "Two KASP students at 90 % take turns batch by batch over the same 3 epochs, one reading the teacher's "
             "outputs from the cache (written in epoch 1), the other running the teacher; the ratio holds on a busy "
             "machine too.", "",
             "| task (length) | examples | steps an epoch | without cache: epochs 1 / 2 / 3 (s) | with cache (s) "
             "| epochs 2-3 take | the 3-epoch run is shorter by |", "|---|---|---|---|---|---|---|"]
    for task, r in result.get("tasks", {}).items():
        lines.append(f"| {task} ({r['max_seq_length']}) | {r['samples']:,} | {r['steps_per_epoch']} "
                     f"| {' / '.join(f'{x:.1f}' for x in r['no_cache'])} | {' / '.join(f'{x:.1f}' for x in r['cache'])} "
                     f"| {r['later_epoch_ratio']:.2f}× | {100 * r['saving_of_the_run']:.1f} % |")
    sbs = result.get("side_by_side")
    if sbs:
        lines += ["", f"One SST-2 KASP run with 2 threads: {sbs['one_2thread_steps_per_s']:.3f} steps/s; two at once with 1 "
                  f"thread each: {' + '.join(f'{x:.3f}' for x in sbs['two_1thread_steps_per_s'])} = "
                  f"{sbs['two_1thread_total']:.3f} steps/s ({sbs['ratio_two_over_one']:.2f}× the single run's "
                  f"throughput; {sbs['steps']} steps each, teacher cache off)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few batches per epoch: a smoke run, not a measurement")
    ap.add_argument("--out", default=str(ROOT / "bench" / "teacher_cache.json"))
    ap.add_argument("--parts", nargs="+", choices=["epochs", "side-by-side"], default=["epochs", "side-by-side"],
                    help="what to measure (side-by-side needs an otherwise idle machine)")
    args = ap.parse_args()
    import torch

    threads = 2
    torch.set_num_threads(threads)
    tasks = {k: dict(v, samples=128 if args.quick else v["samples"]) for k, v in TASKS.items()}
    result = {"machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": threads},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": args.quick, "epochs": EPOCHS,
              "tasks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        teacher = _teacher(Path(tmp) / "teacher")
        for task, t in (tasks.items() if "epochs" in args.parts else ()):
            runs = epoch_times(task, teacher, t["samples"], t["length"])
            off, on = runs["no_cache"], runs["cache"]
            runs["saving_of_the_run"] = 1 - sum(on) / sum(off)
            runs["later_epoch_ratio"] = (on[1] + on[2]) / (off[1] + off[2])
            runs["first_epoch_ratio"] = on[0] / off[0]
            runs.update(samples=t["samples"], max_seq_length=t["length"])
            result["tasks"][task] = runs
            print(f"{task}: epochs without cache {', '.join(f'{x:.1f}' for x in off)} s; with cache "
                  f"{', '.join(f'{x:.1f}' for x in on)} s; 3-epoch run {100 * runs['saving_of_the_run']:.1f} % shorter; "
                  f"epochs 2-3 take {runs['later_epoch_ratio']:.2f}x, epoch 1 {runs['first_epoch_ratio']:.2f}x", flush=True)
        if "side-by-side" in args.parts:
            sbs = side_by_side(teacher, 12 if args.quick else 60, 256 if args.quick else 2048)
            result["side_by_side"] = sbs
            print(f"SST-2 KASP steps/s: one run, 2 threads {sbs['one_2thread_steps_per_s']:.2f}; two runs, 1 thread each "
                  f"{' + '.join(f'{x:.2f}' for x in sbs['two_1thread_steps_per_s'])} = {sbs['two_1thread_total']:.2f} "
                  f"({sbs['ratio_two_over_one']:.2f}x)", flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(result))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
