"""Cost and size of recording the weights' story (kasp/training/weights_story.py) against a KASP run.

Run from the repository root (about 2 minutes on 2 cores):

    .venv/bin/python bench/weights_story.py     # prints a table, writes bench/weights_story.json

Measured in one process, on the default model (MiniLM-L6-H384, 36 encoder linear matrices):
- one KASP training step (student forward + backward with the attention, hidden and prediction
  distillation from a teacher of the same size, AdamW step, masks re-applied) on real SST-2 batches
  of 32 (length-bucketed, at most 64 tokens), as in the default recipe;
- one mask update (the pruner's magnitude masks) and one story snapshot at the same moment;
- the story of the default recipe (2,000 steps, 100 mask updates, so 20 recorded updates plus start
  and end) written along the cubic schedule on the pre-trained weights, and its file size.
The recording cost is reported as a fraction of the run: snapshots x seconds per snapshot /
(steps x seconds per step). The machine is shared and noisy: each time is a median.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from kasp.spec.config import make_config  # noqa: E402
from kasp.data.glue import LengthBucketSampler, collate, encode, get_task, load_split  # noqa: E402
from kasp.core.distill import KaspLoss  # noqa: E402
from kasp.core.masks import MagnitudePruner  # noqa: E402
from kasp.models.modeling import default_model_path, load_classifier, load_tokenizer  # noqa: E402
from kasp.training.step import training_step  # noqa: E402
from kasp.training.weights_story import STORY_FILE, read_story
from kasp.training.story_recorder import StoryRecorder  # noqa: E402

STEPS, EVENTS, TARGET = 2000, 100, 0.9  # the default SST-2 prune recipe


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    torch.manual_seed(0)
    path = default_model_path()
    tok = load_tokenizer(path)
    student = load_classifier(path, num_labels=2)
    teacher = load_classifier(path, num_labels=2).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    data = encode(load_split(get_task("sst2"), "train").sample(n=32 * 12, random_state=0), tok, 64)
    batches = [collate(data, b, tok.pad_token_id or 0) for b in LengthBucketSampler(data.lengths, 32, seed=0)]
    loss_fn = KaspLoss.from_config(make_config("prune", "kasp", "sst2"), student, teacher)  # the default recipe's loss
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4)
    pruner = MagnitudePruner(student, TARGET, STEPS, EVENTS)
    pruner.step(pruner.interval * 30)  # masks at about 60 % sparsity, as mid-run
    it = iter(batches * 3)

    def step():
        training_step(student, next(it), loss_fn, opt, pruner=pruner)

    student.train()
    step()  # warm-up
    t_step = _median_time(step, 8)
    t_update = _median_time(lambda: pruner._update(pruner.current_sparsity), 3)

    with tempfile.TemporaryDirectory() as d:
        rec = StoryRecorder(Path(d) / "probe.jsonl")
        ev = {"step": 1, "phase": "start", "sparsity": pruner.current_sparsity, "linears": pruner.linears,
              "masks": pruner.masks}
        t_snap = _median_time(lambda: rec("masks", ev), 5)

        # the default recipe's story, along the cubic schedule on the pre-trained weights
        story_pruner = MagnitudePruner(load_classifier(path, num_labels=2), TARGET, STEPS, EVENTS)
        recorder = StoryRecorder(Path(d) / STORY_FILE, StoryRecorder.stride(EVENTS))

        def emit(s, phase):
            recorder("masks", {"step": s, "phase": phase, "sparsity": story_pruner.current_sparsity,
                               "linears": story_pruner.linears, "masks": story_pruner.masks})

        emit(0, "start")
        for s in range(1, STEPS):
            if story_pruner.step(s):
                emit(s, "prune")
        story_pruner.finish()
        emit(STEPS, "end")
        size = (Path(d) / STORY_FILE).stat().st_size
        story = read_story(Path(d) / STORY_FILE)
        snapshots = len(story.steps)
    every_event = EVENTS + 2
    out = {
        "model": "MiniLM-L6-H384 (36 encoder linear matrices)", "threads": torch.get_num_threads(),
        "kasp_step_s": t_step, "mask_update_s": t_update, "snapshot_s": t_snap, "recorded_snapshots": snapshots,
        "story_bytes": size, "run_steps": STEPS, "mask_updates": EVENTS,
        "cost_fraction": snapshots * t_snap / (STEPS * t_step),
        "cost_fraction_every_update": every_event * t_snap / (STEPS * t_step),
        "story_bytes_every_update_estimate": size / snapshots * every_event,
        "mask_updates_fraction": EVENTS * t_update / (STEPS * t_step),
    }
    (ROOT / "bench" / "weights_story.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"KASP step (batch 32, SST-2): {t_step * 1000:.0f} ms; mask update: {t_update * 1000:.0f} ms; "
          f"story snapshot: {t_snap * 1000:.0f} ms")
    print(f"default recipe ({STEPS} steps, {EVENTS} mask updates): {snapshots} snapshots, "
          f"{size / 1024:.0f} KiB, recording = {out['cost_fraction'] * 100:.2f} % of the run's step time "
          f"(mask updates themselves: {out['mask_updates_fraction'] * 100:.2f} %)")
    print(f"recording every mask update instead: {out['cost_fraction_every_update'] * 100:.2f} %, "
          f"about {out['story_bytes_every_update_estimate'] / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
