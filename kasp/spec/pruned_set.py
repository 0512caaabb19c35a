"""The pruned set: which weights KASP prunes, in one place (no torch, no transformers).

KASP prunes the six encoder Linear weights of every layer of a BERT-family encoder (Xu et al.,
NAACL 2021, section 3; docs/method.md §3): the attention query, key, value and
output projections and the two feed-forward matrices. Biases, embeddings, LayerNorm, pooler and
classifier stay dense. Masks (:mod:`kasp.core.masks`, via :func:`kasp.models.modeling.prunable_linears`),
checkpoint analysis (:mod:`kasp.analysis.inspection`) and the sparse export (:mod:`kasp.models.export`) all use
this module, so the three always agree on the set.

A matrix is named ``"<layer>.<kind>"``, e.g. ``"0.Q"``, ``"5.FFN-out"``.
"""

from __future__ import annotations

import re

#: the six encoder Linear layers pruned in every layer, short name -> module path inside a layer.
MATRIX_KINDS: dict[str, str] = {
    "Q": "attention.self.query",
    "K": "attention.self.key",
    "V": "attention.self.value",
    "O": "attention.output.dense",
    "FFN-in": "intermediate.dense",
    "FFN-out": "output.dense",
}

_PATH_TO_KIND = {v: k for k, v in MATRIX_KINDS.items()}
_LAYER_RE = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)\.weight$")


def matrix_name(key: str) -> str | None:
    """State-dict key -> matrix name, or None for a tensor KASP never prunes.

    'bert.encoder.layer.3.attention.self.query.weight' -> '3.Q'. Works for every supported model
    type (the prefix before ``encoder.`` is ignored; a base model saved without one matches too).
    """
    m = _LAYER_RE.search(key)
    if not m or m.group(2) not in _PATH_TO_KIND:
        return None
    return f"{m.group(1)}.{_PATH_TO_KIND[m.group(2)]}"


def parameter_group(key: str) -> str:
    """The group a parameter counts in: "encoder_linear" (the pruned set), "embeddings", or "other"
    (biases, LayerNorm, pooler, classifier). Used for every parameter count KASP reports."""
    if matrix_name(key):
        return "encoder_linear"
    return "embeddings" if ".embeddings." in f".{key}" else "other"


def sort_key(name: str) -> tuple[int, int]:
    """Order of matrix names: by layer, then Q, K, V, O, FFN-in, FFN-out."""
    layer, kind = name.split(".", 1)
    return int(layer), list(MATRIX_KINDS).index(kind)


def sparsity_grid(per_matrix: dict[str, float]) -> tuple[list[int], list[str], list[list[float]]]:
    """Per-matrix values as a layers x kinds grid (rows: layers; columns: Q, K, V, O, FFN-in, FFN-out).

    Returns:
        (layer indices, kind names, grid); a matrix missing from ``per_matrix`` is NaN.
    """
    kinds = list(MATRIX_KINDS)
    layers = sorted({int(k.split(".")[0]) for k in per_matrix})
    return layers, kinds, [[per_matrix.get(f"{i}.{k}", float("nan")) for k in kinds] for i in layers]
