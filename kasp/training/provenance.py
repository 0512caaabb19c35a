"""Provenance: what a result was made with, written by every producer of results from here.

- :func:`versions`: the software and platform (KASP, torch, transformers, accelerate, Python, the OS) and
  torch's thread count: a run's config.json and a sweep's results file (``machine``) both carry them.
- :func:`run_provenance`: a run's ``config.json["provenance"]``: the versions, the command line, the model
  and teacher folders, the data files with their SHA-256, the start time, augmentation and the paper.
"""

from __future__ import annotations

import hashlib
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kasp.spec.config import RunConfig

PAPER = "Xu et al., Rethinking Network Pruning - under the Pre-train and Fine-tune Paradigm, NAACL 2021"


def versions() -> dict[str, Any]:
    """``{"kasp", "torch", "transformers", "accelerate", "python", "platform": version text, "threads":
    torch's intra-op thread count}``."""
    import accelerate
    import torch
    import transformers

    import kasp

    return {"kasp": kasp.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": sys.version.split()[0], "platform": platform.platform(),
            "threads": torch.get_num_threads()}


def sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_provenance(cfg: "RunConfig", model_path: str, teacher_path: str | None) -> dict[str, Any]:
    """Versions (:func:`versions`), paths, data checksums and the command line of a run (its config.json's
    ``provenance``). A split that is not a file of the GLUE folder (:func:`kasp.ground.resources.glue_dir`) was
    read from the Hub (``{"source": "hub nyu-mll/glue"}``)."""
    from kasp.ground.resources import glue_dir
    from kasp.spec.tasks import get_task

    task = get_task(cfg.task)
    files = {}
    for split, name in (("train", "train.tsv"), ("dev", task.dev_file)):
        p = glue_dir() / task.folder / name
        files[split] = {"path": str(p), "sha256": sha256(p)} if p.is_file() else {"source": "hub nyu-mll/glue"}
    return {
        **versions(), "command": sys.argv, "model_path": model_path,
        "teacher_path": teacher_path, "data": files, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "augmented_data": {"copies": cfg.augment, "source": cfg.augment_source} if cfg.augment else False,
        "paper": PAPER,
    }
