"""The checkpoints the app's model pages (Predictions, Attention, Inspect) offer: the user's finished runs, then the
models that ship with KASP (:mod:`kasp.models.shipped`, unpacked once into a store under the cache folder), so
that these pages work on a fresh clone before anything is trained.

Torch-free to import; the first call of :func:`shipped_store` unpacks the weights (torch), about a second.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir, iter_done
from kasp.models.shipped import PREFIX, manifest, shipped_info


@functools.lru_cache(maxsize=4)
def _store(cache: str) -> Path | None:
    from kasp.models.shipped import shipped_store as unpack_store

    return unpack_store(cache)


def shipped_store() -> Path | None:
    """The unpacked store of the shipped models, or None when none ship or they cannot be unpacked (the
    reason is printed once on stderr, and the pages go on with the user's runs)."""
    try:
        return _store(str(settings.get().cache_dir))
    except (KaspError, OSError) as e:
        import sys

        print(f"kasp: the shipped models are not available: {e}", file=sys.stderr, flush=True)
        return None


def model_runs(**match: Any) -> list[RunDir]:
    """Finished runs with a checkpoint whose recipe matches ``match`` (as :func:`kasp.ground.runs.iter_done`): the
    user's store first (newest first), then the shipped models (teacher, then KASP, magnitude, small dense)."""
    runs = list(iter_done(**match))
    shipped = manifest()["runs"]
    store = shipped_store() if any(r["task"] == match.get("task", r["task"]) for r in shipped) else None
    if store is not None:
        order = {r["name"]: i for i, r in enumerate(shipped)}
        runs += sorted(iter_done(store, **match), key=lambda r: order.get(r.id.split("-", 2)[-1], 99))
    return runs


def is_shipped(run: RunDir | str | Path) -> bool:
    """Whether a run (or run directory) is one of the shipped models."""
    return Path(run.path if isinstance(run, RunDir) else run).name.startswith(PREFIX)


def shipped_line(run: RunDir) -> str:
    """One sentence on where a shipped model came from and what it scored (measured on the shipped weights)."""
    info = shipped_info(run.path) or {}
    rec = run.recipe()
    dev = info.get("dev") or {}
    score = ", ".join(f"{k} {v * 100:.2f}" for k, v in dev.items() if k != "n" and isinstance(v, float))
    steps = rec.get("max_steps")
    return (f"**{run.id}**: shipped with KASP, trained by `scripts/train_shipped.sh` (default {rec.get('kind')} recipe"
            + (f", {steps} steps" if steps else "") + ", word embeddings frozen so that they are shared with the "
            f"pre-trained model); dev {score} on all {dev.get('n', '?')} dev examples, measured on the shipped "
            "(float16) weights.")


def shipped_export_bytes(checkpoint: str | Path) -> int | None:
    """The size in bytes of the compact export that KASP ships for a shipped model (``shipped.json`` "bytes": its
    weights file(s) under ``assets/models/<task>/<name>/compact/``, float16 values, the word-embedding matrix
    not stored), or None for any other checkpoint.

    Args:
        checkpoint: a checkpoint directory (a shipped run's ``checkpoint/``) or a run directory.
    """
    p = Path(checkpoint)
    for run in (p, p.parent) if p.name == "checkpoint" else (p,):
        n = (shipped_info(run) or {}).get("bytes")
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None
