"""Teacher-output cache: what the distillation loss needs from the fixed teacher, kept per training example.

The fine-tuned teacher never changes during a prune run, so its outputs for one training example are
the same in every epoch. The first time the loop meets an example, :class:`kasp.core.distill.KaspLoss`
runs the teacher as usual and hands this cache the teacher's side of the loss for that example:

- logits: [C];
- the mapped hidden states (embeddings and the layers matched to the student's): (L_S + 1) x [n, H];
- the mapped pre-softmax attention scores: L_S x [heads, n, n] (real query rows and key columns);

with n the example's own number of tokens (no padding). Later epochs read them back and skip the
teacher's forward pass. Padded positions are not stored: the loss ignores them
(:func:`kasp.core.distill.attention_loss`, :func:`kasp.core.distill.hidden_loss`), so a cached and a
recomputed batch give the same loss terms up to fp16 rounding of the targets (``tests/core/test_teacher_cache.py``).

Storage: one folder per (teacher weights, task, length limit, training set, layer map) under
``$KASP_CACHE_DIR/teacher`` (default ``~/.cache/kasp/teacher``): ``values.f16`` (one fp16 memory-mapped
array, the examples one after another), ``filled.u8`` (one byte per example, set after its values are
written) and ``meta.json``. The file is sparse on disk: only examples seen take space. ``cap_bytes``
bounds it: examples whose record would end past the cap are not cached, and the teacher is run for any
batch that holds one (the fallback). The cap holds for all folders together too: opening one removes
the least recently opened others until the whole cache fits (:func:`evict`). The cap is also lowered to leave 2 GiB of the disk free, so the
cache can never fill a disk.

One process at a time writes a given example (runs of one process; a multi-process run does not use
the cache). Two runs on the same teacher and data share one folder: both would write the same values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

_VERSION = 1
_DISK_MARGIN = 2 << 30  # bytes of the disk the cache always leaves free


def cache_root() -> Path:
    """``$KASP_CACHE_DIR/teacher``, default ``~/.cache/kasp/teacher``."""
    from kasp.ground import settings

    return settings.get().cache_dir / "teacher"


def weights_digest(checkpoint: str | Path) -> str:
    """SHA-256 over the checkpoint's weight files (``*.safetensors``, sorted by name): the teacher's identity.

    Raises:
        FileNotFoundError: if the folder holds no safetensors file.
    """
    files = sorted(Path(checkpoint).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {checkpoint}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def data_digest(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]]) -> str:
    """SHA-256 of a tokenised training set in its order (the examples the cache indexes)."""
    h = hashlib.sha256()
    for ids, tt in zip(input_ids, token_type_ids):
        h.update(np.asarray(ids, dtype=np.int32).tobytes())
        h.update(b"|")
        h.update(np.asarray(tt, dtype=np.int8).tobytes())
        h.update(b";")
    return h.hexdigest()


@dataclass(frozen=True)
class Layout:
    """Sizes of one example's record: ``num_logits`` C, ``n_hidden`` mapped hidden states of width
    ``hidden``, ``n_scores`` mapped score tensors of ``heads`` heads."""

    num_logits: int
    n_hidden: int
    hidden: int
    n_scores: int
    heads: int

    def record(self, n: int) -> int:
        """fp16 values of an example of ``n`` tokens: C + n_hidden * n * H + n_scores * heads * n * n."""
        return self.num_logits + self.n_hidden * n * self.hidden + self.n_scores * self.heads * n * n


class TeacherCache:
    """fp16 memory-mapped teacher outputs for the examples of one training set (see the module docstring).

    Args:
        folder: the cache folder (created if missing; reused when its ``meta.json`` matches ``key``).
        key: what identifies the teacher's outputs (teacher weights, task, length limit, data, layer maps);
            any difference means another folder (:func:`open_cache` derives the folder from it).
        lengths: tokens per example, [N].
        layout: record sizes.
        cap_bytes: at most this many bytes of values; examples past it are never cached.
    """

    def __init__(self, folder: Path, key: dict, lengths: Sequence[int], layout: Layout, cap_bytes: float):
        from filelock import FileLock

        self.folder = Path(folder)
        self.layout = layout
        self.lengths = np.asarray(lengths, dtype=np.int64)
        sizes = np.array([layout.record(int(n)) for n in self.lengths], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder) + ".lock", timeout=120):
            meta_path = self.folder / "meta.json"
            meta = None
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text(encoding="utf-8"))
                except (OSError, ValueError, UnicodeDecodeError):
                    meta = None
            if not (isinstance(meta, dict) and meta.get("key") == key and meta.get("version") == _VERSION):
                for name in ("values.f16", "filled.u8", "meta.json"):
                    (self.folder / name).unlink(missing_ok=True)
                free = shutil.disk_usage(self.folder).free
                cap = int(max(0, min(cap_bytes, free - _DISK_MARGIN)) // 2)  # in fp16 values
                n_cached = int(np.searchsorted(self.offsets[1:], cap, side="right"))
                meta = {"version": _VERSION, "key": key, "examples": len(self.lengths), "cached_examples": n_cached,
                        "values": int(self.offsets[n_cached])}
                np.memmap(self.folder / "filled.u8", dtype=np.uint8, mode="w+", shape=(max(1, len(self.lengths)),)).flush()
                if meta["values"]:
                    with open(self.folder / "values.f16", "wb") as f:  # sparse: only written records take disk
                        f.truncate(2 * meta["values"])
                tmp = meta_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(meta), encoding="utf-8")
                os.replace(tmp, meta_path)
        self.cached_examples = int(meta["cached_examples"])
        self.filled = np.memmap(self.folder / "filled.u8", dtype=np.uint8, mode="r+")
        self.values = (np.memmap(self.folder / "values.f16", dtype=np.float16, mode="r+", shape=(int(meta["values"]),))
                       if meta["values"] else np.zeros(0, dtype=np.float16))
        self.hits = self.misses = 0

    # --- queries ----------------------------------------------------------------------------
    def has(self, indices: Sequence[int]) -> bool:
        """True when every example of the batch is stored."""
        return all(i < self.cached_examples and self.filled[i] for i in indices)

    def cacheable(self, i: int) -> bool:
        """Whether example ``i`` fits under the size cap."""
        return i < self.cached_examples

    @property
    def stored_bytes(self) -> int:
        """Bytes of the records written so far."""
        idx = np.flatnonzero(np.asarray(self.filled[: self.cached_examples]))
        return int(2 * (self.offsets[idx + 1] - self.offsets[idx]).sum())

    # --- read and write ---------------------------------------------------------------------
    def _parts(self, i: int):
        """Views into example ``i``'s record: logits [C], hidden [n_hidden, n, H], scores [n_scores, heads, n, n]."""
        lay, n = self.layout, int(self.lengths[i])
        rec = self.values[self.offsets[i]: self.offsets[i + 1]]
        a = lay.num_logits
        b = a + lay.n_hidden * n * lay.hidden
        return (rec[:a], rec[a:b].reshape(lay.n_hidden, n, lay.hidden),
                rec[b:].reshape(lay.n_scores, lay.heads, n, n))

    def read(self, indices: Sequence[int], T: int, device: torch.device | str = "cpu"):
        """The teacher's side of the loss for a batch, padded with zeros to ``T`` tokens.

        Returns:
            (logits [B, C], hidden: list of n_hidden tensors [B, T, H], scores: list of n_scores
            tensors [B, heads, T, T]), float32.
        Raises:
            KeyError: if an example is not stored (check :meth:`has` first).
        """
        lay, B = self.layout, len(indices)
        logits = np.zeros((B, lay.num_logits), dtype=np.float32)
        hidden = np.zeros((lay.n_hidden, B, T, lay.hidden), dtype=np.float32)
        scores = np.zeros((lay.n_scores, B, lay.heads, T, T), dtype=np.float32)
        for r, i in enumerate(indices):
            if not (i < self.cached_examples and self.filled[i]):
                raise KeyError(f"example {i} is not in the teacher cache")
            n = int(self.lengths[i])
            lg, hs, sc = self._parts(i)
            logits[r] = lg
            hidden[:, r, :n] = hs
            scores[:, r, :, :n, :n] = sc
        self.hits += B
        to = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        return to(logits), [to(h) for h in hidden], [to(s) for s in scores]

    def write(self, indices: Sequence[int], logits: torch.Tensor, hidden: Sequence[torch.Tensor],
              scores: Sequence[torch.Tensor]) -> None:
        """Store the teacher's outputs of a batch (the examples past the cap are skipped).

        Args:
            indices: the batch's example indices, [B].
            logits: [B, C]; hidden: n_hidden tensors [B, T, H]; scores: n_scores tensors [B, heads, T, T],
                as the teacher produced them for the padded batch (only each example's first n rows and
                columns are kept).
        """
        self.misses += len(indices)
        lg = logits.detach().float().cpu().numpy()
        hs = [h.detach().float().cpu().numpy() for h in hidden]
        sc = [s.detach().float().cpu().numpy() for s in scores]
        for r, i in enumerate(indices):
            if not self.cacheable(i) or self.filled[i]:
                continue
            n = int(self.lengths[i])
            out_l, out_h, out_s = self._parts(i)
            out_l[:] = lg[r]
            for j, h in enumerate(hs):
                out_h[j] = h[r, :n]
            for j, s in enumerate(sc):
                out_s[j] = s[r, :, :n, :n]
            self.filled[i] = 1  # after the values: a reader never sees a half-written record as stored

    def close(self) -> None:
        """Flush both memory maps to disk."""
        if isinstance(self.values, np.memmap):
            self.values.flush()
        self.filled.flush()


def disk_bytes(folder: Path) -> int:
    """Bytes a cache folder takes on disk (its files are sparse: blocks actually written, not their length)."""
    total = 0
    for f in folder.glob("*"):
        try:
            st = f.stat()
        except OSError:
            continue
        total += getattr(st, "st_blocks", 0) * 512 or st.st_size
    return total


def evict(root: Path, keep: Path, budget_bytes: float) -> list[Path]:
    """Remove the least recently opened cache folders under ``root`` (not ``keep``, not one in use) until
    the others take at most ``budget_bytes`` of disk; return the folders removed.

    A folder's last use is the time its ``meta.json`` was last touched (every :class:`TeacherCache`
    touches it when it opens the folder); a folder whose lock another process holds is in use and stays.
    """
    from filelock import FileLock, Timeout

    others = []
    for d in root.glob("*"):
        if d.is_dir() and d.resolve() != keep.resolve():
            meta = d / "meta.json"
            others.append((meta.stat().st_mtime if meta.exists() else 0.0, d))
    others.sort()  # oldest first
    used = sum(disk_bytes(d) for _, d in others)
    removed = []
    for _, d in others:
        if used <= budget_bytes:
            break
        lock = FileLock(str(d) + ".lock", timeout=0)
        try:
            with lock:
                size = disk_bytes(d)
                shutil.rmtree(d, ignore_errors=True)
        except Timeout:
            continue
        Path(str(d) + ".lock").unlink(missing_ok=True)
        used -= size
        removed.append(d)
    return removed


def open_cache(teacher_path: str | Path, task: str, max_seq_length: int, data, amap: Sequence[int],
               hmap: Sequence[int], teacher_config, num_logits: int, cap_gb: float,
               root: Path | None = None) -> TeacherCache:
    """The cache of a teacher's outputs on a run's training set (:class:`kasp.data.glue.Encoded`).

    Args:
        teacher_path: the teacher checkpoint folder (its safetensors files identify it).
        amap, hmap: the student's attention and hidden layer maps into the teacher
            (:func:`kasp.core.distill.layer_map`); ``amap`` empty when the attention term is off and
            ``hmap`` empty when the hidden term is off.
        cap_gb: size cap in GiB.
    Raises:
        FileNotFoundError: if the teacher folder has no safetensors weights.
    """
    key = {"teacher": weights_digest(teacher_path), "task": task, "max_seq_length": max_seq_length,
           "data": data_digest(data.input_ids, data.token_type_ids), "amap": list(amap), "hmap": list(hmap),
           "num_logits": num_logits, "hidden": teacher_config.hidden_size, "heads": teacher_config.num_attention_heads}
    folder = (root or cache_root()) / f"{task}-{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]}"
    layout = Layout(num_logits=num_logits, n_hidden=len(hmap), hidden=teacher_config.hidden_size,
                    n_scores=len(amap), heads=teacher_config.num_attention_heads)
    cache = TeacherCache(folder, key, data.lengths, layout, cap_gb * (1 << 30))
    os.utime(folder / "meta.json")  # the folder's last use, for evict()
    evict(folder.parent, folder, cap_gb * (1 << 30) - cache.offsets[cache.cached_examples] * 2)
    return cache
