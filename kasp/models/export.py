"""KASP's sparse checkpoint format: bitmask + values in a safetensors file, restored bit for bit.

Format (version 1), a directory with ``config.json``, the tokenizer files and ``sparse.safetensors``:

- every tensor that KASP prunes (encoder Q, K, V, attention-output, FFN-in, FFN-out weights) is
  stored as two tensors:
    ``<name>::mask``   uint8 [ceil(n / 8)]: the flattened (row-major) positions whose bits are not
                       all zero, packed 8 per byte, most significant bit first (``numpy.packbits``);
    ``<name>::values`` the tensor's dtype [nnz]: those entries, in row-major order;
- every other tensor is stored unchanged under its own name;
- the safetensors metadata holds ``{"format": "kasp-sparse", "version": "1", "shapes": JSON of
  name -> shape}`` for the split tensors.

Every tensor comes back bit for bit, with one exception: a negative zero (-0.0) is stored as a zero
and comes back as +0.0, equal as a number (keeping its sign would cost another bit per weight).
KASP's own checkpoints contain no -0.0 (masks are applied with ``masked_fill``). Cost of a matrix of n fp32 weights at density d: n / 8 + 4 d n bytes, that is
(1/32 + d) of its dense 4n bytes (0.131 at 90 % sparsity). Nothing is unpickled: the file is
safetensors, read with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from kasp.models.checkpoint import read_checkpoint, tensor_nbytes
from kasp.ground.errors import KaspError
from kasp.spec.pruned_set import matrix_name

SPARSE_FILE = "sparse.safetensors"
_COPY = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
         "merges.txt", "vocab.json", "README.md")  # README.md: the model card (kasp/training/card.py)


def _nonzero(t: torch.Tensor) -> torch.Tensor:
    """Bool [n]: the entries that are not zero (-0.0 counts as zero), row-major."""
    return t.detach().contiguous().flatten() != 0


def encode_sparse(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list[int]]]:
    """Split every prunable matrix of ``state`` into a packed bitmask and its non-zero values.

    Returns:
        (tensors to save, name -> original shape of each split tensor).
    """
    out: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for name, t in state.items():
        if matrix_name(name) is None:
            out[name] = t.contiguous()
            continue
        keep = _nonzero(t)
        out[f"{name}::mask"] = torch.from_numpy(np.packbits(keep.numpy()))
        out[f"{name}::values"] = t.detach().contiguous().flatten()[keep].clone()
        shapes[name] = list(t.shape)
    return out, shapes


def decode_sparse(tensors: dict[str, torch.Tensor], shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`encode_sparse`.

    Raises:
        KaspError: if a mask and its values disagree (a corrupt file).
    """
    state = {k: v for k, v in tensors.items() if "::" not in k}
    for name, shape in shapes.items():
        n = int(np.prod(shape))
        try:
            bits = np.unpackbits(tensors[f"{name}::mask"].numpy(), count=n).astype(bool)
            values = tensors[f"{name}::values"]
        except KeyError as e:
            raise KaspError(f"sparse checkpoint is missing {e.args[0]}; the file is corrupt") from None
        if int(bits.sum()) != values.numel():
            raise KaspError(f"sparse checkpoint: {name} has {int(bits.sum())} mask bits but {values.numel()} values")
        full = torch.zeros(n, dtype=values.dtype)
        full[torch.from_numpy(bits)] = values
        state[name] = full.view(shape)
    return state


def export_sparse(checkpoint: str | Path, out: str | Path) -> dict[str, int]:
    """Write the sparse format of a checkpoint (directory or KASP run) into the new directory ``out``.

    Safe writes: the checkpoint is read and checked, and the output encoded, before anything is
    written; the files go into a fresh uniquely named temporary directory beside ``out``
    (``tempfile.mkdtemp``), which is renamed to ``out`` only when complete. On any error that
    temporary directory (the only thing this function creates) is removed; nothing else is touched.
    ``torch.nn.utils.prune`` leftovers are folded (:func:`kasp.models.checkpoint.fold_prune_leftovers`),
    so the export is a clean checkpoint.

    Returns:
        byte counts: ``file`` (sparse.safetensors), ``encoder_linear_sparse`` (masks + values of the
        pruned matrices), ``encoder_linear_dense`` (their dense bytes).

    Raises:
        KaspError: unreadable or inconsistent checkpoint; ``out`` is a file, or a directory that is
            not empty; no encoder Linear weights to export.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KaspError(f"{out} is a file; give the name of a new directory for the export")
    if out.is_dir() and any(out.iterdir()):
        raise KaspError(f"{out} exists and is not empty; choose a new directory")
    ck = read_checkpoint(checkpoint)
    tensors, shapes = encode_sparse(ck.state)
    if not shapes:
        raise KaspError(f"{ck.path}: no encoder Linear weights found (expected keys like "
                        "encoder.layer.0.attention.self.query.weight); nothing to export")
    parent = out.parent if str(out.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise KaspError(f"{parent} is a file, not a directory")
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.", suffix=".kasp-export"))
    try:
        save_file(tensors, str(tmp / SPARSE_FILE), metadata={"format": "kasp-sparse", "version": "1",
                                                             "shapes": json.dumps(shapes)})
        for f in _COPY:
            if (ck.path / f).is_file():
                shutil.copy2(ck.path / f, tmp / f)
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        os.replace(tmp, out)  # atomic; replaces only an empty directory
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KaspError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sparse_part = sum(tensor_nbytes(t) for k, t in tensors.items() if "::" in k)
    dense_part = sum(tensor_nbytes(ck.state[k]) for k in shapes)
    return {"file": (out / SPARSE_FILE).stat().st_size, "encoder_linear_sparse": sparse_part,
            "encoder_linear_dense": dense_part}


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The full (dense) state dict of a sparse export, bit for bit as exported.

    Raises:
        KaspError: not a KASP sparse export, or a corrupt file.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    f = Path(path) / SPARSE_FILE
    if not f.is_file():
        raise KaspError(f"{path} has no {SPARSE_FILE}: not a KASP sparse export")
    try:
        with safe_open(str(f), "pt") as h:
            meta = h.metadata() or {}
        tensors = load_file(str(f))
    except (SafetensorError, OSError) as e:
        raise KaspError(f"{f} is not a readable safetensors file ({e})") from None
    if meta.get("format") != "kasp-sparse":
        raise KaspError(f"{f} is not in the kasp-sparse format")
    return decode_sparse(tensors, json.loads(meta["shapes"]))


def load_sparse_model(path: str | Path):
    """A transformers sequence-classification model built from a sparse export's config and weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    state = load_sparse(path)
    cfg = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_config(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise KaspError(f"{path}: weights and config disagree (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model.eval()
