"""Reading a checkpoint directory's weights without building a model, and checking they are whole.

Reading only (the analysis of what is read lives in :mod:`kasp.analysis.inspection`): the safetensors
file(s) of a BERT-family checkpoint directory (sequence classification or base model, KASP's or
anyone's) are read directly; nothing is unpickled. On the way in:

- tensors left by ``torch.nn.utils.prune`` (``<name>_orig`` and ``<name>_mask``, saved while the
  pruning hooks were still on) are folded, ``<name> = <name>_orig * <name>_mask``, which is what
  ``prune.remove()`` does; the folded names are reported;
- the tensors' shapes are compared with ``config.json`` (hidden size, vocabulary, positions,
  layers, FFN width, the shapes of the pruned matrices; :func:`kasp.models.modeling.check_shapes`); a
  disagreement is refused, naming both sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from kasp.ground.errors import KaspError
from kasp.ground.finite import non_finite_count  # noqa: F401  (re-exported: kasp inspect counts with it)
from kasp.models.modeling import PRUNE_HINT, check_checkpoint_dir, check_shapes, check_wrapper_prefix, resolve_model
from kasp.spec.pruned_set import MATRIX_KINDS, matrix_name

_BUFFERS = ("position_ids", "token_type_ids")


@dataclass
class Checkpoint:
    """What :func:`read_checkpoint` returns.

    ``path``: the checkpoint directory; ``config``: its config.json; ``state``: name -> tensor
    (prune leftovers folded); ``folded``: names whose ``_orig``/``_mask`` pair was folded;
    ``run_recipe``: the recipe when the directory is a KASP run's ``checkpoint/`` (else None).
    """

    path: Path
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    folded: list[str] = field(default_factory=list)
    run_recipe: dict[str, Any] | None = None


def tensor_nbytes(t: torch.Tensor) -> int:
    """Bytes of a tensor's data as safetensors stores it (any dtype, bfloat16 and float8 included)."""
    return t.numel() * t.element_size()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor's data, row-major (any dtype; numpy has no bfloat16, so via uint8)."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def fold_prune_leftovers(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold ``torch.nn.utils.prune`` leftovers: ``X_orig`` and ``X_mask`` become ``X = X_orig * X_mask``.

    The product is written with ``masked_fill`` so that a pruned entry is +0.0, as after
    ``prune.remove()``. Returns the new state and the folded names.

    Raises:
        KaspError: an ``_orig`` without its ``_mask`` (or the reverse), or shapes that differ.
    """
    origs = {k[:-5] for k in state if k.endswith("_orig")}
    masks = {k[:-5] for k in state if k.endswith("_mask")}
    if not origs and not masks:
        return state, []
    lone = sorted(origs ^ masks)
    if lone:
        raise KaspError(f"tensor {lone[0]}_orig or {lone[0]}_mask has no partner: the checkpoint holds half of a "
                        f"torch.nn.utils.prune parametrisation; {PRUNE_HINT}")
    out = {k: v for k, v in state.items() if not (k.endswith(("_orig", "_mask")) and k[:-5] in origs)}
    for base in sorted(origs):
        w, m = state[base + "_orig"], state[base + "_mask"]
        if w.shape != m.shape:
            raise KaspError(f"{base}_orig {list(w.shape)} and {base}_mask {list(m.shape)} differ in shape; {PRUNE_HINT}")
        if base in out:
            raise KaspError(f"{base} is stored both plain and as _orig/_mask; {PRUNE_HINT}")
        out[base] = w.masked_fill(m == 0, 0)
    return out, sorted(origs)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory (or a KASP run directory: its ``checkpoint/``).

    Raises:
        KaspError: missing directory or config, unsupported model type, pickle-only weights, a
            missing, corrupt or truncated safetensors file, weight names with a training wrapper's
            prefix ("module.", "model.": :func:`kasp.models.modeling.check_wrapper_prefix`), unpaired prune
            leftovers, shapes that disagree with config.json.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    ckpt = Path(resolve_model(str(path)))
    check_checkpoint_dir(ckpt)
    state: dict[str, torch.Tensor] = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        try:
            state.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as e:
            raise KaspError(f"{f} is not a readable safetensors file ({e}); it may be truncated or corrupt") from None
    check_wrapper_prefix(state, ckpt)  # inspect and export refuse it as the loader does (one rule everywhere)
    state, folded = fold_prune_leftovers(state)
    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    check_shapes(state, config, ckpt)
    recipe = None
    if ckpt.name == "checkpoint":
        try:
            recipe = (json.loads((ckpt.parent / "config.json").read_text(encoding="utf-8")) or {}).get("recipe")
        except (OSError, ValueError, AttributeError):  # a damaged run config.json (not UTF-8, not JSON, a list)
            recipe = None
        recipe = recipe if isinstance(recipe, dict) else None
    return Checkpoint(ckpt, config, state, folded, recipe)


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory (name -> tensor), read and checked by :func:`read_checkpoint`.

    Raises:
        KaspError: see :func:`read_checkpoint`.
    """
    return read_checkpoint(path).state


def fingerprint(path: str | Path) -> tuple:
    """What identifies a checkpoint directory's current content for a cache: (name, size, mtime in ns) of
    every file in it (a KASP run directory: its ``checkpoint/``, plus the run's config.json).

    Raises:
        KaspError: the path is not a checkpoint directory (see :func:`kasp.models.modeling.check_checkpoint_dir`).
    """
    ckpt = Path(resolve_model(str(path)))
    check_checkpoint_dir(ckpt)
    files = sorted(f for f in ckpt.iterdir() if f.is_file())
    if ckpt.name == "checkpoint" and (ckpt.parent / "config.json").is_file():
        files.append(ckpt.parent / "config.json")
    return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)


def pruned_matrices(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Matrix name -> state key, for the tensors of the pruned set (:mod:`kasp.spec.pruned_set`)."""
    return {n: k for k, n in ((k, matrix_name(k)) for k in state) if n}


__all__ = ["Checkpoint", "MATRIX_KINDS", "PRUNE_HINT", "check_shapes", "fingerprint", "fold_prune_leftovers", "load_state",
           "matrix_name", "non_finite_count", "pruned_matrices", "read_checkpoint", "tensor_bytes", "tensor_nbytes"]
