"""The models that ship with KASP: real trained checkpoints, so that the app's Predictions, Attention and
Inspect pages work on a fresh clone without training (issue 25).

In the repository, ``assets/models/<task>/<name>/`` holds one finished run each (``scripts/pack_shipped.py``
writes them from runs of ``scripts/train_shipped.sh``):

- the run's own record, as the run store keeps it: ``config.json`` (recipe and provenance),
  ``report.json``, ``status.json``, ``progress.jsonl``;
- ``compact/``: its weights in the compact export (:mod:`kasp.models.export`, version 2: float16 values,
  masks where they pay, the word-embedding matrix taken from the installed pre-trained model, because
  the shipped runs were trained with ``--freeze-word-embeddings``);
- ``retention.json`` (students): the attention-retention measures against the shipped teacher on 128 dev
  examples (:func:`kasp.analysis.retention.run_retention`), measured on the packed weights;
- ``shipped.json``: what the app shows for it, measured on exactly the packed weights
  (``"dev"``: the metrics on the whole dev set after unpacking, ``"bytes"``: the size of
  its weights files, ``"teacher"``: the name of its teacher among the shipped models).

The teacher's weights are written in parts of at most 15 MB (``sparse.safetensors``, ``sparse-2.safetensors``;
:mod:`kasp.models.export`, "Parts") so that no file in the repository reaches 20 MB.
``assets/models/manifest.json`` lists the runs with the sha256 of each weights file and the time of packing
(a new packing is unpacked afresh). The app never
trains or writes there: :func:`shipped_store` unpacks the runs once into an ordinary, read-mostly run
store under the cache folder (``$KASP_CACHE_DIR/shipped-runs/<manifest hash>/shipped-<task>-<name>/``),
which every command and page reads like any other (``kasp evaluate``, the retention measures).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.ground.staging import staged_dir
from kasp.ground.resources import assets_dir

MANIFEST = "manifest.json"
#: what unpacking writes, beyond the manifest's files: a new value unpacks every store afresh (2: the checkpoint's
#: model card and ``kasp`` block name the unpacked teacher, not the training machine's path)
UNPACK_LAYOUT = 2
RUN_FILES = ("config.json", "report.json", "status.json", "progress.jsonl", "shipped.json", "retention.json")
PREFIX = "shipped-"


def models_dir() -> Path:
    """``assets/models``: the shipped models (it may be missing in a checkout without them)."""
    return assets_dir() / "models"


def manifest() -> dict[str, Any]:
    """The shipped models' manifest: ``{"runs": [{"task", "name", "teacher", "files": {weights file name: sha256}},
    ...]}``; empty runs when none ship.

    Raises:
        KaspError: a manifest that is not JSON of that shape.
    """
    f = models_dir() / MANIFEST
    if not f.is_file():
        return {"runs": []}
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
        if not all({"task", "name", "files"} <= set(r) and isinstance(r["files"], dict) and r["files"]
                   for r in m["runs"]):
            raise ValueError("an entry lacks task, name or files (weights file -> sha256)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise KaspError(f"{f} is not a valid shipped-models manifest ({e}); restore it with `git checkout {f}`") from None
    return m


def run_id(task: str, name: str) -> str:
    """The id (directory name) of a shipped run in the unpacked store, e.g. ``shipped-sst2-kasp-90``."""
    return f"{PREFIX}{task}-{name}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shipped_store(cache: str | Path | None = None) -> Path | None:
    """The run store of the shipped models, unpacked on first use; None when no model ships.

    Each run is unpacked into a temporary directory and renamed into place when complete, so a store
    interrupted half-way is finished on the next call and never read half-written. A student's report,
    recipe, model card and ``kasp`` block are pointed at the unpacked teacher (:func:`_point_at_teacher`).

    Args:
        cache: the cache folder (default ``$KASP_CACHE_DIR``, :mod:`kasp.ground.settings`).

    Returns:
        the store folder (``<cache>/shipped-runs/<first 16 hex of the sha256 of the manifest and UNPACK_LAYOUT>``).

    Raises:
        KaspError: a shipped weights file whose hash differs from the manifest's (a damaged checkout), or
            what :func:`kasp.models.export.unpack` raises.
    """
    from kasp.models.export import unpack

    m = manifest()
    if not m["runs"]:
        return None
    key = hashlib.sha256(json.dumps({**m, "unpack_layout": UNPACK_LAYOUT}, sort_keys=True).encode()).hexdigest()[:16]
    store = Path(cache or settings.get().cache_dir) / "shipped-runs" / key
    runs = sorted(m["runs"], key=lambda r: r.get("teacher") is not None)  # teachers first
    for r in runs:
        dest = store / run_id(r["task"], r["name"])
        if (dest / "checkpoint" / "model.safetensors").is_file():
            continue
        src = models_dir() / r["task"] / r["name"]
        for name, sha in r["files"].items():
            weights = src / "compact" / name
            if not weights.is_file() or _sha256(weights) != sha:
                raise KaspError(f"{weights} is missing or differs from the one KASP shipped (sha256 in "
                                f"{models_dir() / MANIFEST}); restore it with `git checkout -- {src}`")
        with staged_dir(dest, suffix=".unpacking", replace=True) as tmp:
            for f in RUN_FILES:
                if (src / f).is_file():
                    shutil.copy2(src / f, tmp / f)
            unpack(src / "compact", tmp / "checkpoint")
            teacher = r.get("teacher")
            if teacher:
                _point_at_teacher(tmp, store / run_id(r["task"], teacher))
    return store


def _point_at_teacher(run: Path, teacher_run: Path) -> None:
    """Rewrite a student's record to name the unpacked teacher run instead of the training machine's paths:
    the report (``teacher.path``), the recipe (``recipe.teacher``), and in its checkpoint the ``kasp`` block
    of ``config.json`` (``teacher.path``: the teacher's ``checkpoint/``; ``recipe.teacher``: its run) and the
    model card (``README.md``: every occurrence of the old paths)."""
    moved: dict[str, str] = {}
    for name, where, new in (("report.json", ("teacher", "path"), teacher_run),
                             ("config.json", ("recipe", "teacher"), teacher_run),
                             ("checkpoint/config.json", ("kasp", "teacher", "path"), teacher_run / "checkpoint"),
                             ("checkpoint/config.json", ("kasp", "recipe", "teacher"), teacher_run)):
        f = run / name
        if not f.is_file():
            continue
        d = json.loads(f.read_text(encoding="utf-8"))
        node = d
        for k in where[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(where[-1]) is not None:
            if name.startswith("checkpoint/") and isinstance(node[where[-1]], str) and node[where[-1]] != str(new):
                moved[node[where[-1]]] = str(new)
            node[where[-1]] = str(new)
            f.write_text(json.dumps(d, indent=2, sort_keys=name.startswith("checkpoint/")) + "\n", encoding="utf-8")
    card = run / "checkpoint" / "README.md"
    if moved and card.is_file():
        # one pass, longest first: the teacher's checkpoint path before its run's (a prefix of it)
        pattern = re.compile("|".join(re.escape(old) for old in sorted(moved, key=len, reverse=True)))
        card.write_text(pattern.sub(lambda m: moved[m.group(0)], card.read_text(encoding="utf-8")), encoding="utf-8")


def shipped_info(run_path: str | Path) -> dict[str, Any] | None:
    """The ``shipped.json`` of an unpacked shipped run (dev metrics measured on the packed weights, size),
    or None for any other run."""
    f = Path(run_path) / "shipped.json"
    if not Path(run_path).name.startswith(PREFIX) or not f.is_file():
        return None
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
