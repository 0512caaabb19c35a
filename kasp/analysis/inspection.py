"""Analysis of a checkpoint that has been read (:mod:`kasp.models.checkpoint`): sparsity, parameter groups,
structured zeros, sizes on disk, non-finite tensors and fitness for scoring.

:func:`analyse` is the one analysis behind ``kasp inspect`` and the app's Inspect page.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from kasp.training.card import card_problem, read_card_facts
from kasp.models.checkpoint import Checkpoint, non_finite_count, read_checkpoint, tensor_bytes, tensor_nbytes
from kasp.data.glue import get_task
from kasp.ground.errors import KaspError
from kasp.models.export import encode_sparse
from kasp.models.modeling import PRUNE_HINT, label_order, load_tokenizer, no_head_message, tokenizer_problem
from kasp.spec.pruned_set import matrix_name, parameter_group, sort_key

_BUFFERS = ("position_ids", "token_type_ids")


def _as_checkpoint(checkpoint: str | Path | Checkpoint) -> Checkpoint:
    return checkpoint if isinstance(checkpoint, Checkpoint) else read_checkpoint(checkpoint)


def inspect_checkpoint(checkpoint: str | Path | Checkpoint, state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Sparsity report of a checkpoint (a checkpoint directory, a KASP run directory, or one already read).

    Returns:
        dict with ``per_matrix`` ("<layer>.<kind>" -> fraction of zeros), ``layers`` (count),
        ``pruned_sparsity`` (zeros / weights in the six encoder Linear kinds), ``overall_sparsity``
        (zeros / all parameters), ``parameters`` (embeddings / encoder_linear / other counts),
        ``total_parameters``, ``model_type``, ``hidden_size``, ``heads``, ``path`` and, for a KASP
        run, its ``recipe``. Sizes and layers are the weights' own (the config is checked against
        them when read).

    Raises:
        KaspError: see :func:`kasp.models.checkpoint.read_checkpoint`; also when no encoder Linear weight is
            found (with the prune.remove() hint when the tensors look like prune leftovers).
    """
    ck = _as_checkpoint(checkpoint)
    state = ck.state if state is None else state
    per_matrix: dict[str, float] = {}
    counts = {"embeddings": 0, "encoder_linear": 0, "other": 0}
    zeros = {"pruned": 0, "all": 0}
    for key, t in state.items():
        if key.endswith(_BUFFERS):
            continue
        nz = int((t == 0).sum())
        zeros["all"] += nz
        counts[parameter_group(key)] += t.numel()
        name = matrix_name(key)
        if name:
            per_matrix[name] = nz / t.numel()
            zeros["pruned"] += nz
    if not per_matrix:
        raise KaspError(f"{ck.path}: no encoder Linear weights found (expected keys like "
                        "encoder.layer.0.attention.self.query.weight)")
    total = sum(counts.values())
    cfg = ck.config
    q = next(t for k, t in state.items() if matrix_name(k) and matrix_name(k).endswith(".Q"))
    return {
        "path": str(ck.path), "model_type": cfg.get("model_type"),
        "layers": 1 + max(int(k.split(".")[0]) for k in per_matrix),
        "hidden_size": int(q.shape[1]), "heads": cfg.get("num_attention_heads"),
        "per_matrix": dict(sorted(per_matrix.items(), key=lambda kv: sort_key(kv[0]))),
        "pruned_sparsity": zeros["pruned"] / counts["encoder_linear"],
        "overall_sparsity": zeros["all"] / total, "parameters": counts, "total_parameters": total,
        "recipe": ck.run_recipe,
    }


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


#: the float types a wider float value may be exactly representable in, each 16 bits a value
_NARROW_FLOATS = (torch.float16, torch.bfloat16)


def value_bits(t: torch.Tensor) -> int:
    """The bits each non-zero value of ``t`` needs to be stored exactly in an IEEE-style float type: 16 when ``t``
    is a floating tensor wider than 16 bits whose every non-zero value is exactly representable in float16 or in
    bfloat16 (as in a checkpoint unpacked from KASP's compact export, whose float32 values were rounded to
    float16: their low 16 bits are zero, and any compressor finds that), else the element size in bits (32 for
    float32, 16 for float16 and bfloat16, 8 for float8 and int8, ...).

    A NaN is never "exactly representable" (NaN != NaN), so a tensor holding one keeps its element size; a
    value beyond float16's range becomes inf there and is not representable either.
    """
    bits = 8 * t.element_size()
    if not t.is_floating_point() or bits <= 16:
        return bits
    for narrow in _NARROW_FLOATS:  # a zero round-trips exactly, so the whole tensor can be compared
        if torch.equal(t.to(narrow).to(t.dtype), t):
            return 16
    return bits


def information_bound_bytes(n: int, nnz: int, value_bits: int = 32) -> float:
    """Information-theoretic lower bound, in bytes, on storing an n-entry matrix with nnz non-zero values of
    ``value_bits`` bits each: log2 C(n, nnz) bits to say where the non-zeros are, plus ``value_bits`` per value.

    Formula: bytes = (log2 C(n, nnz) + nnz x value_bits) / 8, with log2 C(n, nnz) computed as
    (lgamma(n+1) - lgamma(nnz+1) - lgamma(n-nnz+1)) / ln 2. The positions term is the entropy of a support
    drawn uniformly among the C(n, nnz) possible ones, below which no uniquely decodable code's expected
    length can go (Cover & Thomas, *Elements of Information Theory*, 2nd ed., ch. 5, Theorem 5.3.1 with
    McMillan's inequality, 5.5). The values term takes each value's bits as incompressible, so pass the
    bits the values actually need (:func:`value_bits`: 16 for float32 values that are exact float16 or
    bfloat16 numbers), or a lossless encoder that drops the always-zero low bits (zstd does) beats the
    "bound". It is the bound for a format that stores each non-zero value verbatim at the narrowest float
    width that holds it exactly; a support with structure (whole zero rows) or values of lower entropy
    still (few distinct values, as after quantisation) can be compressed somewhat below it.

    Args:
        n: entries of the matrix; nnz: its non-zero entries (0 <= nnz <= n); value_bits: bits per value.
    """
    from math import lgamma, log

    positions = (lgamma(n + 1) - lgamma(nnz + 1) - lgamma(n - nnz + 1)) / log(2)
    return (positions + nnz * value_bits) / 8


def size_report(checkpoint: str | Path | Checkpoint, zstd_level: int = 3,
                state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Sizes of a checkpoint's weights, side by side, in bytes.

    - ``dense``: the safetensors file(s) as stored, measured on disk (for a shipped model: the float32 copy
      that :mod:`kasp.models.shipped` unpacked into the cache, not the compact file that ships);
    - ``dense_zstd``: the same bytes compressed with zstd at ``zstd_level``;
    - ``sparse_export``: KASP's sparse format (:mod:`kasp.models.export`, version 1: values in their
      dtype as read) of the whole model, computed by encoding these weights, not written to disk;
    - ``bound``: the information lower bound (:func:`information_bound_bytes`) for the pruned matrices at
      their sparsity with the bits their values need (:func:`value_bits`), plus the other tensors at
      their values' bits too (all entries, no saving on positions): numel x :func:`value_bits` / 8;
    and the same four restricted to the encoder linear weights (``*_encoder_linear``; the zstd
    figure there compresses only those tensors' raw bytes), plus ``value_bits_encoder_linear``: the
    distinct bits per value the bound counted for the pruned matrices, ascending (e.g. ``[16]`` for
    float32 weights rounded to float16, ``[32]`` for trained float32 ones). Every figure comes from
    the tensors' raw bytes (element size x count), so it holds for every dtype safetensors stores
    (bfloat16, float16, float8, integer and bool tensors included).
    """
    import zstandard

    ck = _as_checkpoint(checkpoint)
    state = ck.state if state is None else state
    files = sorted(ck.path.glob("*.safetensors"))
    cctx = zstandard.ZstdCompressor(level=zstd_level)
    dense = sum(f.stat().st_size for f in files)
    dense_zstd = sum(len(cctx.compress(f.read_bytes())) for f in files)
    tensors, shapes = encode_sparse(state)
    sparse_lin = sum(tensor_nbytes(t) for k, t in tensors.items() if "::" in k)
    other = sum(tensor_nbytes(t) for k, t in tensors.items() if "::" not in k)
    lin = {k: state[k] for k in shapes}
    lin_dense = sum(tensor_nbytes(t) for t in lin.values())
    lin_zstd = len(cctx.compress(b"".join(tensor_bytes(t) for t in lin.values())))
    lin_bits = {k: value_bits(t) for k, t in lin.items()}
    bound_lin = sum(information_bound_bytes(t.numel(), int((t != 0).sum()), lin_bits[k]) for k, t in lin.items())
    bound_other = sum(t.numel() * value_bits(t) / 8 for k, t in state.items() if k not in shapes)
    return {
        "dense": dense, "dense_zstd": dense_zstd, "sparse_export": sparse_lin + other,
        "bound": bound_lin + bound_other,
        "dense_encoder_linear": lin_dense, "dense_zstd_encoder_linear": lin_zstd,
        "sparse_export_encoder_linear": sparse_lin, "bound_encoder_linear": bound_lin,
        "value_bits_encoder_linear": sorted(set(lin_bits.values())),
        "zstd_level": zstd_level,
    }


def non_finite_tensors(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """Tensor name -> number of NaN / inf entries, for every tensor that has any."""
    out = {}
    for k, t in state.items():
        n = non_finite_count(t)
        if n:
            out[k] = n
    return out


def analyse(checkpoint: str | Path, sizes: bool = True) -> dict[str, Any]:
    """Everything ``kasp inspect`` and the Inspect page show about a checkpoint, from one reading.

    Args:
        checkpoint: a checkpoint directory or a KASP run directory.
        sizes: also compute :func:`size_report` (compresses the whole file: the slow part).

    Returns:
        the :func:`inspect_checkpoint` dict plus ``structured`` (removable heads per layer, FFN
        neurons per layer, all-zero rows and columns in all, and ``per_matrix`` detail),
        ``sizes`` (or None), ``non_finite`` (tensor -> count of NaN/inf), ``folded`` (tensors
        folded from torch.nn.utils.prune leftovers), ``problems`` (one-line reasons the checkpoint
        cannot be scored as it is: the same messages the CLI's evaluate gives), ``task`` (the GLUE
        task the checkpoint records as ``kasp_task``, or None), ``num_labels`` and ``card`` (the
        ``kasp`` block of its config.json, :func:`kasp.training.card.read_card_facts`, or None); ``recipe``
        falls back to the card's recipe for a checkpoint copied out of its run directory.

    Raises:
        KaspError: the checkpoint cannot be read (see :func:`kasp.models.checkpoint.read_checkpoint`).
    """
    ck = read_checkpoint(checkpoint)
    info = inspect_checkpoint(ck)
    struct = structured_zeros(ck.state, info["heads"])
    info["structured"] = {
        "heads": struct["heads"], "ffn_neurons": struct["ffn_neurons"],
        "zero_rows": sum(v["zero_rows"] for v in struct["per_matrix"].values()),
        "zero_cols": sum(v["zero_cols"] for v in struct["per_matrix"].values()),
        "per_matrix": struct["per_matrix"],
    }
    info["sizes"] = size_report(ck) if sizes else None
    info["non_finite"] = non_finite_tensors(ck.state)
    info["folded"] = ck.folded
    info["problems"] = scoring_problems(ck)
    info["task"] = ck.config.get("kasp_task")
    info["card"] = read_card_facts(ck.config)  # what the checkpoint says about itself (kasp/training/card.py)
    block = ck.config.get("kasp")
    info["card_problem"] = card_problem(block) if isinstance(block, dict) and block.get("format") else (
        None if block is None else card_problem(block))
    if info["recipe"] is None and info["card"]:  # a checkpoint copied out of its run directory
        info["recipe"] = info["card"].get("recipe")
    info["num_labels"] = len(ck.config.get("id2label") or {}) or ck.config.get("num_labels")
    return info


def inspect_warnings(info: dict[str, Any], non_finite: bool = True, scoring: bool = True) -> list[str]:
    """The warnings ``kasp inspect`` prints (the Inspect page shows the same): non-finite tensors,
    folded prune leftovers, and why the checkpoint cannot be scored as it is.

    Args:
        info: what :func:`analyse` returned.
        non_finite, scoring: include the non-finite line / the "cannot be scored" lines (the page
            shows those as an error and in its Evaluate section).
    """
    out = []
    nf = info.get("non_finite") or {}
    if nf and non_finite:
        names = ", ".join(f"{k} ({n})" for k, n in list(nf.items())[:3])
        out.append(f"{len(nf)} tensor(s) hold NaN or inf values: {names}; scores from this checkpoint would be "
                   "meaningless")
    if info.get("card_problem"):
        out.append(f"config.json's `kasp` block is damaged ({info['card_problem']}): what the checkpoint says about "
                   "itself is not shown; the figures below are measured from its weights")
    if info.get("folded"):
        out.append(f"{len(info['folded'])} tensor(s) were saved as torch.nn.utils.prune _orig/_mask pairs and are "
                   "shown folded (orig x mask)")
    if scoring:
        out += [f"cannot be scored as it is: {p}" for p in info.get("problems") or [] if "non-finite" not in p]
    return out


def scoring_problems(ck: Checkpoint) -> list[str]:
    """Reasons a checkpoint that has been read cannot be scored as it is, without building a model.

    The same rules and messages as :func:`load_for_task`: tokenizer files, a trained head,
    finite weights, torch.nn.utils.prune leftovers (``kasp evaluate`` refuses them), label names
    matching the recorded task (``kasp_task``), the tokenizer within the embedding matrix.
    """
    out = []
    problem = tokenizer_problem(ck.path)
    if problem:
        out.append(problem)
    if not any(k.startswith("classifier.") or ".classifier." in k for k in ck.state):
        out.append(no_head_message(ck.path))
    bad = [k for k, t in ck.state.items() if non_finite_count(t)]
    if bad:
        out.append(f"{ck.path} holds non-finite weights (NaN or inf) in {len(bad)} tensor(s), e.g. {bad[0]}; any "
                   "score from it would be meaningless")
    if ck.folded:
        out.append(f"{ck.path} was saved with torch.nn.utils.prune hooks still on ({len(ck.folded)} tensors); "
                   f"{PRUNE_HINT}")
    task_name = ck.config.get("kasp_task")
    if task_name and not out:
        try:
            cfg = SimpleNamespace(num_labels=len(ck.config.get("id2label") or {}) or ck.config.get("num_labels", 2),
                                  id2label=ck.config.get("id2label"), label2id=ck.config.get("label2id"),
                                  problem_type=ck.config.get("problem_type"))
            label_order(cfg, get_task(task_name), ck.path)
        except KaspError as e:
            out.append(str(e))
    if not problem:
        try:
            load_tokenizer(str(ck.path))
        except KaspError as e:
            out.append(str(e))
    return out
