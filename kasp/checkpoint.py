"""Reading a checkpoint's weights without building a model: per-matrix sparsity and parameter groups.

Works on any BERT-family checkpoint directory (sequence classification or base model, KASP's or
anyone's) by reading the safetensors file(s) directly; nothing is unpickled.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from kasp.errors import KaspError
from kasp.modeling import MATRIX_KINDS, check_checkpoint_dir, resolve_model
from kasp.runs import read_json

_LAYER_RE = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.(.+)\.weight$")
_PATH_TO_KIND = {v: k for k, v in MATRIX_KINDS.items()}
_BUFFERS = ("position_ids", "token_type_ids")


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory's ``*.safetensors`` files (name -> tensor).

    Raises:
        KaspError: for a missing, corrupt or truncated file, or pickle-only weights.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_checkpoint_dir(path)
    state: dict[str, torch.Tensor] = {}
    for f in sorted(Path(path).glob("*.safetensors")):
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise KaspError(f"{f} is not a readable safetensors file ({e}); it may be truncated or corrupt") from None
    return state


def matrix_name(key: str) -> str | None:
    """'bert.encoder.layer.3.attention.self.query.weight' -> '3.Q'; None for tensors KASP never prunes."""
    m = _LAYER_RE.search(key)
    if not m or m.group(2) not in _PATH_TO_KIND:
        return None
    return f"{m.group(1)}.{_PATH_TO_KIND[m.group(2)]}"


def inspect_checkpoint(path: str | Path, state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Sparsity report of a checkpoint (a checkpoint directory or a KASP run directory).

    Returns:
        dict with ``per_matrix`` ("<layer>.<kind>" -> fraction of zeros), ``layers`` (count),
        ``pruned_sparsity`` (zeros / weights in the six encoder Linear kinds), ``overall_sparsity``
        (zeros / all parameters), ``parameters`` (embeddings / encoder_linear / other counts),
        ``model_type``, ``path`` and, for a KASP run, its ``recipe``.

    Raises:
        KaspError: see :func:`load_state`; also when no encoder Linear weight is found.
    """
    ckpt = resolve_model(str(path))
    state = load_state(ckpt) if state is None else state
    per_matrix: dict[str, float] = {}
    counts = {"embeddings": 0, "encoder_linear": 0, "other": 0}
    zeros = {"pruned": 0, "all": 0}
    for key, t in state.items():
        if key.endswith(_BUFFERS):
            continue
        nz = int((t == 0).sum())
        zeros["all"] += nz
        name = matrix_name(key)
        if name:
            per_matrix[name] = nz / t.numel()
            counts["encoder_linear"] += t.numel()
            zeros["pruned"] += nz
        elif ".embeddings." in f".{key}":
            counts["embeddings"] += t.numel()
        else:
            counts["other"] += t.numel()
    if not per_matrix:
        raise KaspError(f"{ckpt}: no encoder Linear weights found (expected keys like encoder.layer.0.attention.self.query.weight)")
    total = sum(counts.values())
    layers = 1 + max(int(k.split(".")[0]) for k in per_matrix)
    cfg = read_json(Path(ckpt) / "config.json", {}) or {}
    run_cfg = read_json(Path(ckpt).parent / "config.json", {}) if Path(ckpt).name == "checkpoint" else {}
    ordered = dict(sorted(per_matrix.items(), key=lambda kv: (int(kv[0].split(".")[0]), list(MATRIX_KINDS).index(kv[0].split(".", 1)[1]))))
    return {
        "path": str(ckpt), "model_type": cfg.get("model_type"), "layers": layers,
        "hidden_size": cfg.get("hidden_size"), "heads": cfg.get("num_attention_heads"),
        "per_matrix": ordered, "pruned_sparsity": zeros["pruned"] / counts["encoder_linear"],
        "overall_sparsity": zeros["all"] / total, "parameters": counts, "total_parameters": total,
        "recipe": (run_cfg or {}).get("recipe"),
    }


def sparsity_grid(per_matrix: dict[str, float]) -> tuple[list[int], list[str], list[list[float]]]:
    """Per-matrix sparsity as a layers x kinds grid (rows: layers; columns: Q, K, V, O, FFN-in, FFN-out)."""
    kinds = list(MATRIX_KINDS)
    layers = sorted({int(k.split(".")[0]) for k in per_matrix})
    return layers, kinds, [[per_matrix.get(f"{i}.{k}", float("nan")) for k in kinds] for i in layers]


def structured_zeros(state: dict[str, torch.Tensor], heads: int | None) -> dict[str, Any]:
    """What structured removal could drop: all-zero rows, columns, attention heads and FFN neurons.

    A head h of a layer is removable when its rows of Q, K and V and its columns of the
    attention-output matrix are all zero; an FFN neuron j when row j of FFN-in and column j of
    FFN-out are all zero (its bias then passes through a zero column and contributes nothing).

    Returns:
        ``per_matrix``: "<layer>.<kind>" -> {"zero_rows", "rows", "zero_cols", "cols"};
        ``heads``: layer -> list of removable head indices; ``ffn_neurons``: layer -> count.
    """
    mats: dict[str, torch.Tensor] = {}
    for key, t in state.items():
        name = matrix_name(key)
        if name:
            mats[name] = t
    per_matrix = {}
    for name, t in mats.items():
        z = t == 0
        per_matrix[name] = {"zero_rows": int(z.all(1).sum()), "rows": t.shape[0],
                            "zero_cols": int(z.all(0).sum()), "cols": t.shape[1]}
    layers = sorted({int(k.split(".")[0]) for k in mats})
    out_heads: dict[int, list[int]] = {}
    ffn: dict[int, int] = {}
    for i in layers:
        q, k, v, o = (mats.get(f"{i}.{x}") for x in ("Q", "K", "V", "O"))
        if heads and all(m is not None for m in (q, k, v, o)):
            dh = q.shape[0] // heads
            out_heads[i] = [h for h in range(heads)
                            if all(bool((m[h * dh:(h + 1) * dh] == 0).all()) for m in (q, k, v))
                            and bool((o[:, h * dh:(h + 1) * dh] == 0).all())]
        fi, fo = mats.get(f"{i}.FFN-in"), mats.get(f"{i}.FFN-out")
        if fi is not None and fo is not None:
            ffn[i] = int(((fi == 0).all(1) & (fo == 0).all(0)).sum())
    return {"per_matrix": per_matrix, "heads": out_heads, "ffn_neurons": ffn}


def information_bound_bytes(n: int, nnz: int, value_bits: int = 32) -> float:
    """Information-theoretic lower bound on storing an n-entry matrix with nnz arbitrary values.

    log2 C(n, nnz) bits to say where the non-zeros are (any positional code needs at least this
    many for a uniformly random support) plus ``value_bits`` per value, in bytes.
    """
    from math import lgamma, log

    positions = (lgamma(n + 1) - lgamma(nnz + 1) - lgamma(n - nnz + 1)) / log(2)
    return (positions + nnz * value_bits) / 8


def size_report(path: str | Path, zstd_level: int = 3, state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Sizes of a checkpoint's weights, side by side, in bytes.

    - ``dense``: the safetensors file(s) as stored;
    - ``dense_zstd``: the same bytes compressed with zstd at ``zstd_level``;
    - ``sparse_export``: KASP's sparse format (:mod:`kasp.export`) of the whole model;
    - ``bound``: the information lower bound (:func:`information_bound_bytes`) for the pruned
      matrices at their sparsity, plus the other tensors' raw bytes;
    and the same four restricted to the encoder linear weights (``*_encoder_linear``; the zstd
    figure there compresses only those tensors' raw bytes).
    """
    import zstandard

    from kasp.export import encode_sparse

    ckpt = Path(resolve_model(str(path)))
    state = load_state(ckpt) if state is None else state
    files = sorted(ckpt.glob("*.safetensors"))
    cctx = zstandard.ZstdCompressor(level=zstd_level)
    dense = sum(f.stat().st_size for f in files)
    dense_zstd = sum(len(cctx.compress(f.read_bytes())) for f in files)
    tensors, shapes = encode_sparse(state)
    sparse_lin = sum(t.numel() * t.element_size() for k, t in tensors.items() if "::" in k)
    other = sum(t.numel() * t.element_size() for k, t in tensors.items() if "::" not in k)
    lin = {k: state[k] for k in shapes}
    lin_dense = sum(t.numel() * t.element_size() for t in lin.values())
    lin_zstd = len(cctx.compress(b"".join(t.contiguous().numpy().tobytes() for t in lin.values())))
    bound_lin = sum(information_bound_bytes(t.numel(), int((t != 0).sum()), 8 * t.element_size()) for t in lin.values())
    return {
        "dense": dense, "dense_zstd": dense_zstd, "sparse_export": sparse_lin + other, "bound": bound_lin + other,
        "dense_encoder_linear": lin_dense, "dense_zstd_encoder_linear": lin_zstd,
        "sparse_export_encoder_linear": sparse_lin, "bound_encoder_linear": bound_lin,
        "zstd_level": zstd_level,
    }
