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


def inspect_checkpoint(path: str | Path) -> dict[str, Any]:
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
    state = load_state(ckpt)
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
