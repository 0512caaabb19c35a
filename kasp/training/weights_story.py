"""The weights' story of a pruning run: small pictures of every encoder linear matrix along the schedule.

At the start of a prune run, at every pruning event (mask update on the cubic schedule) and at the
end (exact target imposed), :class:`StoryRecorder` stores for each of the pruned matrices
("<layer>.<kind>", kinds Q, K, V, O, FFN-in, FFN-out; :func:`kasp.models.modeling.prunable_linears`):

- **mask density picture**: the fraction of kept weights in each cell of a coarse grid over the
  matrix, quantised to uint8 (``round(255 * fraction)``). The grid has :data:`SHORT_CELLS` (8) cells
  along the matrix's shorter side and ``round(8 * long / short)`` (at most :data:`MAX_CELLS`, 32)
  along the longer one; cell ``i`` of a side of length ``d`` split into ``g`` cells spans rows
  ``round(i * d / g)`` to ``round((i + 1) * d / g)``, so a side that ``g`` does not divide gets
  cells differing by at most one row or column. For MiniLM-L6-H384 (384 x 384 and 1536 x 384 /
  384 x 1536 weights) every cell is exactly 48 x 48 weights (grids 8 x 8, 32 x 8, 8 x 32).
- **magnitude histogram** of |w| of the surviving (kept) weights: exact counts in :data:`HIST_BINS`
  (66) fixed bins, bin 0 = [0, 2**-14), then quarter-octave bins (four per factor of 2, edges
  ``2**e * (1, 1.25, 1.5, 1.75)``) up to 2**2 = 4, last bin [4, inf) (:func:`hist_edges`; a value
  equal to an edge falls in the bin above it). These edges are the float32 exponent and top two
  mantissa bits, so counting is one bit shift and one ``bincount`` per matrix.
- **magnitude threshold**: the smallest kept |w| of the matrix at that moment (right after the
  masks were updated and applied, before the next optimizer step). With magnitude masks
  (Zhu & Gupta 2017; :mod:`kasp.core.masks`) every weight pruned at this event had |w| at most this value.

Format (``kasp-weights-story/1``): a list of JSON records, written one per line to
``<run>/weights.jsonl`` (append-only; a reader skips a torn last line, so the app reads it while the
run is live). The first record is the layout, every further one a snapshot::

    {"type": "layout", "format": "kasp-weights-story/1", "matrices": ["0.Q", ...],
     "shapes": [[out, in], ...], "grids": [[rows, cols], ...],
     "hist_log2": [-14, 2], "hist_bins": 66}
    {"type": "snapshot", "step": 40, "phase": "start" | "prune" | "end", "sparsity": 0.0816,
     "density": B64, "hist": B64, "threshold": B64}

where each B64 is base64 of zlib-compressed little-endian arrays concatenated in matrix order:
``density`` uint8 grids (row-major), ``hist`` uint32 counts ``[matrices, hist_bins]``, ``threshold``
float32 ``[matrices]``; ``sparsity`` is the fraction of zeros the masks hold (the schedule's value
at that step). No pickle anywhere: arrays are rebuilt with ``numpy.frombuffer`` and an explicit
dtype. A results file (a shipped precomputed run, a sweep entry) carries the same list of records
under the key ``"weights_story"``; :func:`read_story` reads either.

Size: MiniLM-L6 (36 matrices) takes about 4.6 KB of density and 5.5 KB of counts per snapshot
before compression; the measured size of whole runs is in ``bench/weights_story.py``'s output.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from kasp.ground.runs import read_jsonl

FORMAT = "kasp-weights-story/1"
STORY_FILE = "weights.jsonl"
SHORT_CELLS = 8
MAX_CELLS = 32
HIST_LOG2 = (-14, 2)
HIST_BINS = 4 * (HIST_LOG2[1] - HIST_LOG2[0]) + 2
SNAPSHOTS = 20


# --- pictures ---------------------------------------------------------------------------------
def grid_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """Cells (rows, cols) of the density grid of a weight of ``shape`` (out_features, in_features)."""
    r, c = int(shape[0]), int(shape[1])
    short, long_ = min(r, c), max(r, c)
    gs = min(SHORT_CELLS, short)
    gl = max(1, min(MAX_CELLS, long_, round(gs * long_ / short)))
    return (gs, gl) if r <= c else (gl, gs)


def cell_edges(dim: int, cells: int) -> list[int]:
    """Boundaries ``round(i * dim / cells)`` for i = 0..cells (first 0, last ``dim``)."""
    return [round(i * dim / cells) for i in range(cells + 1)]


def cell_sizes(shape: tuple[int, int]) -> np.ndarray:
    """Number of weights in each density-grid cell: int64 [rows, cols]."""
    gr, gc = grid_shape(shape)
    er, ec = np.diff(cell_edges(shape[0], gr)), np.diff(cell_edges(shape[1], gc))
    return np.outer(er, ec).astype(np.int64)


def hist_edges(log2_range: tuple[int, int] = HIST_LOG2) -> np.ndarray:
    """Bin edges of the |w| histogram: float32 [bins + 1].

    0, then quarter-octave edges ``2**e * (1, 1.25, 1.5, 1.75)`` for e = lo .. hi - 1, then
    ``2**hi`` and inf: bin 0 holds |w| < 2**lo, the last bin |w| >= 2**hi. These are exactly the
    float32 values sharing the exponent and top two mantissa bits, so binning is a bit shift.
    """
    lo, hi = log2_range
    inner = [2.0 ** e * (1 + j / 4) for e in range(lo, hi) for j in range(4)] + [2.0 ** hi]
    return np.array([0.0] + inner + [np.inf], dtype=np.float32)


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(arr).tobytes(), 6)).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.dtype(dtype))


def layout_record(shapes: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """The first record of a story: matrix names, weight shapes, grid shapes and histogram bins."""
    return {"type": "layout", "format": FORMAT, "matrices": list(shapes),
            "shapes": [list(map(int, s)) for s in shapes.values()],
            "grids": [list(grid_shape(s)) for s in shapes.values()],
            "hist_log2": list(HIST_LOG2), "hist_bins": HIST_BINS}


@dataclass
class Story:
    """A run's weights' story, decoded.

    Attributes:
        matrices: names "<layer>.<kind>" [M]; shapes: weight shapes [M]; grids: grid shapes [M].
        steps: int64 [S] optimizer steps of the snapshots; phases: [S]; sparsity: float [S] (fraction).
        density: per snapshot, per matrix a float32 [rows, cols] array of kept fractions (uint8 / 255).
        hist: int64 [S, M, bins] counts; edges: float32 [bins + 1]; threshold: float32 [S, M].
    """

    matrices: list[str]
    shapes: list[tuple[int, int]]
    grids: list[tuple[int, int]]
    steps: np.ndarray
    phases: list[str]
    sparsity: np.ndarray
    density: list[list[np.ndarray]]
    hist: np.ndarray
    edges: np.ndarray
    threshold: np.ndarray

    def index(self, name: str) -> int:
        """Position of matrix ``name``.

        Raises:
            KeyError: naming the matrices the story holds.
        """
        try:
            return self.matrices.index(name)
        except ValueError:
            raise KeyError(f"no matrix {name!r} in this story; it has {', '.join(self.matrices)}") from None

    def nearest(self, step: int) -> int:
        """Index of the last snapshot at or before ``step`` (the first one if ``step`` precedes all)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return max(i, 0)

    def kept_fraction(self, i: int, name: str) -> float:
        """Fraction of kept weights of a matrix at snapshot ``i`` as the picture says (cell-size weighted)."""
        k = self.index(name)
        sizes = cell_sizes(self.shapes[k])
        return float((self.density[i][k] * sizes).sum() / sizes.sum())


def story_records(path: str | Path) -> list[dict[str, Any]]:
    """The raw records of a run directory's (or a file's) story, [] when there is none: what a results
    file (shipped precomputed run, sweep entry) stores under ``"weights_story"``."""
    path = Path(path)
    return read_jsonl(path / STORY_FILE if path.is_dir() else path)


def read_story(source: str | Path | Iterable[dict[str, Any]] | None) -> Story | None:
    """Decode a story from a run directory, a ``weights.jsonl`` file or a list of records.

    Returns None when there is no story (no file, no layout record or no snapshot yet).

    Raises:
        ValueError: for records of another format, arrays whose sizes do not fit the layout, or
            records of the wrong shape (a damaged file).
    """
    try:
        return _read_story(source)
    except (KeyError, TypeError, IndexError, AttributeError, binascii.Error, zlib.error) as e:
        raise ValueError(f"weights story records of the wrong shape ({type(e).__name__}: {str(e)[:80]})") from None


def _read_story(source: str | Path | Iterable[dict[str, Any]] | None) -> Story | None:
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        records = story_records(source)
    else:
        records = list(source)
    layout = next((r for r in records if r.get("type") == "layout"), None)
    snaps = [r for r in records if r.get("type") == "snapshot"]
    if layout is None or not snaps:
        return None
    if layout.get("format") != FORMAT:
        raise ValueError(f"weights story format {layout.get('format')!r} is not {FORMAT!r}")
    names = list(layout["matrices"])
    shapes = [tuple(s) for s in layout["shapes"]]
    grids = [tuple(g) for g in layout["grids"]]
    bins = int(layout["hist_bins"])
    sizes = [g[0] * g[1] for g in grids]
    offsets = np.cumsum([0] + sizes)
    density, hist, thr = [], [], []
    for r in snaps:
        d = _unb64(r["density"], "<u1")
        h = _unb64(r["hist"], "<u4")
        t = _unb64(r["threshold"], "<f4")
        if d.size != offsets[-1] or h.size != len(names) * bins or t.size != len(names):
            raise ValueError(f"weights story snapshot at step {r.get('step')} does not fit its layout")
        density.append([(d[offsets[k]:offsets[k + 1]].reshape(grids[k]) / 255.0).astype(np.float32)
                        for k in range(len(names))])
        hist.append(h.reshape(len(names), bins).astype(np.int64))
        thr.append(t)
    return Story(names, shapes, grids, np.array([r["step"] for r in snaps], dtype=np.int64),
                 [r.get("phase", "prune") for r in snaps], np.array([r["sparsity"] for r in snaps], dtype=float),
                 density, np.stack(hist), hist_edges(tuple(layout["hist_log2"])), np.stack(thr))


# --- the app's view of stories ----------------------------------------------------------------
KINDS = ("Q", "K", "V", "O", "FFN-in", "FFN-out")


def pair_index(story: Story, i: int, other: Story) -> int:
    """The snapshot of ``other`` to draw beside snapshot ``i`` of ``story``: the one whose sparsity (the
    fraction of zeros its masks held) is nearest to ``story``'s at ``i``; of equally near ones, the one
    at the nearest fraction of its run (step / last recorded step).

    Two runs of different lengths (a 500-step class run beside a 2,000-step shipped one) are thereby
    compared at equal sparsity, never at equal step numbers, which would set 90 % against 52 %.
    """
    s = float(story.sparsity[i])
    frac = float(story.steps[i]) / max(float(story.steps[-1]), 1.0)
    ofrac = other.steps.astype(float) / max(float(other.steps[-1]), 1.0)
    keys = [(round(abs(float(o) - s), 6), abs(f - frac)) for o, f in zip(other.sparsity, ofrac)]
    return min(range(len(keys)), key=keys.__getitem__)


def pruned_count(story: Story, i: int, name: str) -> int:
    """Weights of matrix ``name`` that are zero (pruned) at snapshot ``i``: all its weights minus the kept
    ones the histogram counts (exact, from the recorded counts)."""
    k = story.index(name)
    rows, cols = story.shapes[k]
    return int(rows * cols - int(story.hist[i, k].sum()))


def step_numbers(story: Story, i: int, layer: int) -> dict[str, dict[str, float]]:
    """Per matrix kind of one layer at snapshot ``i``: ``threshold``, ``kept`` (fraction), the
    picture's ``min_cell`` and ``max_cell`` kept fractions."""
    out = {}
    for kind in KINDS:
        name = f"{layer}.{kind}"
        if name not in story.matrices:
            continue
        k = story.index(name)
        d = story.density[i][k]
        out[kind] = {"threshold": float(story.threshold[i, k]), "kept": story.kept_fraction(i, name),
                     "min_cell": float(d.min()), "max_cell": float(d.max())}
    return out


def _matrix_words(kind: str, layer: int) -> str:
    return f"layer {layer}'s {kind} matrix"


def what_to_notice(story: Story, step: int, layer: int, kind: str, other: Story | None = None,
                   labels: tuple[str, str] = ("this run", "the other run"), other_index: int | None = None) -> str:
    """A few sentences about the displayed matrix (``layer``'s ``kind``) at the snapshot drawn for ``step``,
    computed from the numbers shown: how many of its weights are zero, its magnitude threshold, how
    uneven its mask is, where its threshold stands among the layer's six matrices and, with ``other``
    (drawn at ``other_index``, default :func:`pair_index`), how the other run's same matrix compares."""
    i = story.nearest(step)
    name = f"{layer}.{kind}"
    k = story.index(name)
    what = _matrix_words(kind, layer)
    rows, cols = story.shapes[k]
    total = rows * cols
    zeros = pruned_count(story, i, name)
    if story.sparsity[i] == 0:
        s = (f"At step {story.steps[i]} nothing is pruned yet: every block of {what} is full and the histogram is "
             f"the magnitudes of all its {total:,} weights as the run started.")
    else:
        nums = step_numbers(story, i, layer)
        n = nums[kind]
        order = sorted(nums, key=lambda x: -nums[x]["threshold"])
        rank = order.index(kind) + 1
        ranks = {1: "the highest", len(order): "the lowest"}.get(
            rank, f"the {rank}{'nd' if rank == 2 else 'rd' if rank == 3 else 'th'} highest")
        s = (f"At step {story.steps[i]} ({story.sparsity[i] * 100:.1f} % of the run's encoder linear weights pruned), "
             f"{what} has {zeros:,} of its {total:,} weights at zero ({zeros / total * 100:.1f} %, the grey bar at 0); "
             f"every kept weight has |w| ≥ {n['threshold']:.3g}, its magnitude threshold, {ranks} of the layer's six "
             f"(from {nums[order[-1]]['threshold']:.3g} for {order[-1]} to {nums[order[0]]['threshold']:.3g} for "
             f"{order[0]}). Its blocks keep between {n['min_cell'] * 100:.0f} % and {n['max_cell'] * 100:.0f} % of "
             f"their weights, so its mask is "
             f"{'far from uniform' if n['max_cell'] - n['min_cell'] > 0.15 else 'nearly uniform'}.")
    if other is not None and name in other.matrices:
        j = pair_index(story, i, other) if other_index is None else other_index
        k2 = other.index(name)
        oz = pruned_count(other, j, name)
        orows, ocols = other.shapes[k2]
        if (orows, ocols) != (rows, cols):  # another model: its matrix has other shapes, nothing to compare block by block
            return s + (f" Beside it, {labels[1]} is a run of another model ({orows} x {ocols} against {rows} x {cols} "
                        f"weights in this matrix): at its step {other.steps[j]} its same matrix has "
                        f"{oz / (orows * ocols) * 100:.1f} % of its weights at zero.")
        diff = float(np.abs(story.density[i][k] - other.density[j][k2]).mean())
        s += (f" Beside it, {labels[1]} at its step {other.steps[j]} ({other.sparsity[j] * 100:.1f} % pruned): the same "
              f"matrix has {oz / total * 100:.1f} % of its weights at zero and threshold {other.threshold[j, k2]:.3g} "
              f"against {story.threshold[i, k]:.3g} for {labels[0]}; their pictures differ by {diff * 100:.1f} "
              f"percentage points per block on average.")
    return s
