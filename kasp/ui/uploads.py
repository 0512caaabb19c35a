"""Uploaded checkpoints and TSV files for the app: a cache keyed on content, with a size cap.

An uploaded checkpoint (a .zip of the directory, or config.json + .safetensors + tokenizer files)
is opened by :mod:`kasp.models.safety` into ``<root>/<sha256 of every file's name and whole content>/``;
a second upload of the same bytes reuses it, and any change anywhere in any file (a different
model with the same names and the same first MiB, a truncated copy) gets its own directory, read
and checked from scratch. The cache keeps at most ``max_entries`` checkpoints and ``max_bytes`` on
disk, dropping the least recently used; an entry that was never completed is removed. An uploaded
TSV is written to a temporary file for the evaluation and removed right after.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.models.safety import extract_checkpoint_zip, save_file_pair

MAX_ENTRIES = 4
MAX_BYTES = 2 << 30  # 2 GiB on disk in all
_MARKER = "ok"
_STALE_SECONDS = 600  # an entry without its marker this old was abandoned mid-write


def content_digest(files: Iterable[tuple[str, bytes]]) -> str:
    """SHA-256 (hex) over every file's name, length and whole content, in name order."""
    h = hashlib.sha256()
    for name, data in sorted(files, key=lambda f: f[0]):
        h.update(name.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0")
        h.update(data)
    return h.hexdigest()


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def uploads_root() -> Path:
    """The cache's folder: ``$KASP_UPLOADS_DIR``, else ``kasp-uploads`` in the system's temporary folder."""
    return settings.get().uploads_dir


def prune_cache(root: Path | None = None, keep: Path | None = None, max_entries: int = MAX_ENTRIES,
                max_bytes: int = MAX_BYTES) -> list[Path]:
    """Remove abandoned entries, then the least recently used ones beyond the caps. Returns those removed.

    ``keep`` (the entry just opened) is never removed, even when it alone exceeds ``max_bytes``;
    ``root`` defaults to :func:`uploads_root`.
    """
    root = Path(root or uploads_root())
    if not root.is_dir():
        return []
    removed = []
    done: list[tuple[float, Path]] = []
    now = time.time()
    for d in root.iterdir():
        if not d.is_dir():
            continue
        marker = d / _MARKER
        if marker.is_file():
            done.append((marker.stat().st_mtime, d))
        elif now - d.stat().st_mtime > _STALE_SECONDS and d != keep:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    done.sort(reverse=True)  # most recently used first
    total, count = 0, 0
    for _, d in done:
        size = _size(d)
        if d == keep or (count < max_entries and total + size <= max_bytes):
            total += size
            count += 1
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def open_upload(files: list[tuple[str, bytes]], root: Path | None = None, max_entries: int = MAX_ENTRIES,
                max_bytes: int = MAX_BYTES) -> Path:
    """The checkpoint directory of an upload: ``files`` is [(file name, bytes)], either one .zip or
    config.json + .safetensors (+ tokenizer files).

    Returns:
        the directory holding config.json (inside the cache entry).

    Raises:
        KaspError: no files; anything :func:`kasp.models.safety.extract_checkpoint_zip` or
            :func:`kasp.models.safety.save_file_pair` refuses (nothing of a refused upload is kept).
    """
    root = Path(root or uploads_root())
    if not files:
        raise KaspError("no file uploaded")
    target = root / content_digest(files)
    marker = target / _MARKER
    if marker.is_file():
        ckpt = target / marker.read_text(encoding="utf-8")
        if (ckpt / "config.json").is_file():
            marker.touch()  # recently used
            prune_cache(root, keep=target, max_entries=max_entries, max_bytes=max_bytes)
            return ckpt
    shutil.rmtree(target, ignore_errors=True)  # an unfinished entry of the same content: start again
    root.mkdir(parents=True, exist_ok=True)
    zips = [data for name, data in files if name.lower().endswith(".zip")]
    if len(zips) > 1 or (zips and len(files) > 1):
        raise KaspError("upload either one .zip of the checkpoint directory or its loose files, not both")
    try:
        if zips:
            ckpt = extract_checkpoint_zip(zips[0], target)
        else:
            ckpt = save_file_pair(dict(files), target / "checkpoint")
    except KaspError:
        shutil.rmtree(target, ignore_errors=True)  # nothing of a refused upload is kept, not even its folder
        raise
    marker.write_text(str(ckpt.relative_to(target)), encoding="utf-8")
    prune_cache(root, keep=target, max_entries=max_entries, max_bytes=max_bytes)
    return ckpt


def upload_message(message: str, checkpoint: str | Path) -> str:
    """An error message about an opened upload with the cache's copy named as the upload, never by its path in
    the cache: "<cache>/<sha>/checkpoint/model.safetensors is ..." -> "the uploaded model.safetensors is ...".

    Args:
        message: the message (of a :class:`KaspError` raised reading or scoring the upload).
        checkpoint: what :func:`open_upload` returned.
    """
    ck = str(checkpoint)
    return message.replace(ck + os.sep, "the uploaded ").replace(ck, "the upload")


def evaluate_uploaded_tsv(checkpoint: str | Path, task: str, name: str, data: bytes, max_examples: int | None = None,
                          root: Path | None = None) -> dict[str, object]:
    """:func:`kasp.training.evaluate.evaluate_checkpoint` on an uploaded TSV; the temporary copy is removed after.

    Error messages name the uploaded file (``name``), not the temporary copy.

    Raises:
        KaspError: as :func:`kasp.training.evaluate.evaluate_checkpoint`.
    """
    from kasp.training.evaluate import evaluate_checkpoint

    root = Path(root or uploads_root())
    root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".eval-", suffix=".tsv")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        res = evaluate_checkpoint(str(checkpoint), task, tmp, max_examples)
    except KaspError as e:
        raise KaspError(str(e).replace(tmp, name)) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    res["data"] = name
    return res
