"""Recording the weights' story of a prune run (torch): mask density pictures, magnitude histograms and
thresholds of every encoder linear matrix, written as :mod:`kasp.training.weights_story` records.

The format, the codec and the reader are torch-free in :mod:`kasp.training.weights_story`; this module holds the
part that reads tensors during training (:class:`StoryRecorder`, used by :mod:`kasp.training.train` and
:mod:`kasp.training.hf_trainer`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from kasp.ground.runs import atomic_write_text
from kasp.training.weights_story import HIST_BINS, HIST_LOG2, SNAPSHOTS, _b64, cell_edges, grid_shape, layout_record, story_records


@torch.no_grad()
def density_grid(mask: torch.Tensor) -> torch.Tensor:
    """Fraction of kept weights (mask True) per grid cell: float32 [rows, cols] in [0, 1].

    Raises:
        ValueError: if ``mask`` is not 2-D.
    """
    if mask.ndim != 2:
        raise ValueError(f"a density grid needs a 2-D mask, got shape {tuple(mask.shape)}")
    R, C = mask.shape
    gr, gc = grid_shape((R, C))
    if R % gr == 0 and C % gc == 0:  # equal blocks: one reshape
        return mask.reshape(gr, R // gr, gc, C // gc).sum(dim=(1, 3), dtype=torch.int64).float() / (R // gr * C // gc)
    er, ec = cell_edges(R, gr), cell_edges(C, gc)
    m = mask.to(torch.int64)
    rows = torch.stack([m[er[i]:er[i + 1]].sum(0) for i in range(gr)])  # [gr, C]
    sums = torch.stack([rows[:, ec[j]:ec[j + 1]].sum(1) for j in range(gc)], dim=1)  # [gr, gc]
    sizes = torch.tensor([[(er[i + 1] - er[i]) * (ec[j + 1] - ec[j]) for j in range(gc)] for i in range(gr)])
    return sums.float() / sizes.float()


@torch.no_grad()
def magnitude_histogram(weight: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, float]:
    """Histogram of |w| over the kept weights and the magnitude threshold, for a masked weight.

    ``weight`` must already be masked (pruned entries exactly 0, as :meth:`MagnitudePruner.apply`
    leaves them); ``mask`` is True where kept. A kept weight that is exactly 0 counts in bin 0.

    Returns:
        (counts int64 [HIST_BINS] in the bins of :func:`hist_edges`, threshold = the smallest kept
        |w|, or 0.0 when nothing is kept).
    """
    n_kept = int(mask.sum())
    if n_kept == 0:
        return np.zeros(HIST_BINS, dtype=np.int64), 0.0
    bits = weight.detach().float().contiguous().view(torch.int32) & 0x7FFFFFFF  # |w| as its float bits
    fine = torch.bincount((bits >> 21).view(-1), minlength=1024).cpu().numpy()  # sign-less exponent + 2 mantissa bits
    base = (HIST_LOG2[0] + 127) * 4  # index of 2**lo in ``fine``
    top = (HIST_LOG2[1] + 127) * 4
    counts = np.concatenate([[fine[:base].sum() - (weight.numel() - n_kept)], fine[base:top], [fine[top:].sum()]])
    if n_kept < weight.numel() and counts[0] < 0:
        raise ValueError("magnitude_histogram needs a masked weight: pruned entries must be exactly 0")
    # the smallest kept |w|: the smallest non-zero bit pattern (zeros wrap to the largest int32)
    low = int(((bits - 1) & 0x7FFFFFFF).min()) + 1
    if fine[0] > weight.numel() - n_kept:  # some kept weight is exactly 0
        low = 0
    return counts.astype(np.int64), float(np.array([low], dtype=np.int32).view(np.float32)[0])


@torch.no_grad()
def snapshot_record(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor], step: int,
                    phase: str, sparsity: float) -> dict[str, Any]:
    """One snapshot record of every matrix in ``weights`` (name -> 2-D weight; ``masks`` the same
    names, bool, True = kept). ``sparsity`` is the masks' target fraction of zeros at ``step``."""
    dens, hists, thr = [], [], []
    for name, w in weights.items():
        m = masks[name]
        dens.append(torch.round(density_grid(m) * 255).to(torch.uint8).cpu().numpy().ravel())
        h, t = magnitude_histogram(w, m)
        hists.append(h)
        thr.append(t)
    return {"type": "snapshot", "step": int(step), "phase": phase, "sparsity": float(sparsity),
            "density": _b64(np.concatenate(dens).astype("<u1")),
            "hist": _b64(np.stack(hists).astype("<u4")),
            "threshold": _b64(np.asarray(thr, dtype="<f4"))}


class StoryRecorder:
    """Training callback (``(event, record)``, :mod:`kasp.training.train`) that appends the story to a file.

    Listens to the "masks" event, whose record holds ``step``, ``phase`` ("start", "prune", "end"),
    ``sparsity``, ``linears`` (name -> nn.Linear) and ``masks`` (name -> bool tensor). Records the
    start, the end and every ``every``-th pruning event (``every`` = 1: all of them). Writes the
    layout record before the first snapshot; each record is one ``write`` of one line.
    """

    def __init__(self, path: str | Path, every: int = 1):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.path = Path(path)
        self.every = every
        self._started = False
        self._events = 0
        self.seconds = 0.0  # time spent recording (read by the benchmark)

    def resume(self, step: int, events: int) -> None:
        """Continue the file of a resumed run (:mod:`kasp.training.resume`): keep the layout and the snapshots
        taken before ``step`` (drop any later ones, which the resumed run records again), and count
        ``events`` pruning events as already seen so the stride stays on the same events.
        """
        kept = [r for r in story_records(self.path) if r.get("type") == "layout" or r.get("step", 0) < step]
        self._events = events
        self._started = any(r.get("type") == "layout" for r in kept)
        if self._started:
            atomic_write_text(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in kept))

    @staticmethod
    def stride(pruning_events: int, snapshots: int = SNAPSHOTS) -> int:
        """``every`` that records at most ``snapshots`` of ``pruning_events`` mask updates."""
        return max(1, -(-pruning_events // snapshots))

    def __call__(self, event: str, record: dict[str, Any]) -> None:
        if event != "masks":
            return
        if record["phase"] == "prune":
            self._events += 1
            if self._events % self.every:
                return
        import time

        t = time.perf_counter()
        weights = {n: lin.weight for n, lin in record["linears"].items()}
        lines = []
        if not self._started:
            lines.append(layout_record({n: tuple(w.shape) for n, w in weights.items()}))
            self._started = True
        lines.append(snapshot_record(weights, record["masks"], record["step"], record["phase"], record["sparsity"]))
        with open(self.path, "a" if lines[0]["type"] == "snapshot" else "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))
        self.seconds += time.perf_counter() - t


# --- reading ----------------------------------------------------------------------------------
