"""The small-dense baseline: a dense student with as many weights as a pruned one has non-zeros.

The paper's second claim (Xu et al., NAACL 2021, section 5) is that a sparse model beats a small
dense model with the same number of non-zero weights. This module builds that small dense model:

- **Size.** Counted, like "sparsity" everywhere in KASP, over the encoder linear weights (Q, K, V,
  attention-output, FFN-in, FFN-out). A layer of width H with FFN width F holds 4 H^2 + 2 H F of
  them, so a pruned model at sparsity s keeps (1 - s) L_T (4 H^2 + 2 H F) non-zeros.
  :func:`size_for_sparsity` picks the depth L_S first (the coarse step, one layer) and then one FFN
  width F_S for every layer (the fine step, ``ffn_step`` neurons) so that
  L_S (4 H^2 + 2 H F_S) is as close to that number as the architecture allows.
- **Depths that divide.** L_S is restricted to divisors of L_T (for a 6-layer MiniLM: 1, 2, 3, 6)
  because the method's layer map (:func:`kasp.core.distill.layer_map`, TinyBERT's uniform map with
  k = L_T / L_S) is only defined for them; the FFN width gives the finer steps in between.
- **Which layers.** Student layer i starts from pre-trained layer i k + k - 1, the top layer of
  its block of k: the same teacher layer whose attention scores it is distilled towards
  (layer map), so every student layer starts as the pre-trained version of the layer it imitates.
  (DistilBERT likewise initialises from a subset of the teacher's layers, every second one.)
- **Which FFN neurons.** When F_S < F, each kept layer keeps the F_S intermediate neurons j with
  the largest ||W_in[j, :]||_2 * ||W_out[:, j]||_2 (structured magnitude: the neuron's weight into
  and out of the FFN), with their biases.
- Embeddings, LayerNorms, pooler and classifier are copied unchanged. Attention heads and the
  hidden width stay as they are (the distillation terms need equal heads and width), so below one
  layer's attention weights (4 H^2) no smaller student exists: the closest size is then one layer
  with the narrowest FFN, and the run records the sparsity it actually stands for.

The result is a vanilla transformers model (``num_hidden_layers`` and ``intermediate_size`` set in
its config), so ``AutoModelForSequenceClassification.from_pretrained`` loads its checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from kasp.ground.errors import KaspError
from kasp.models.modeling import encoder_layers

#: FFN width granularity of the small-dense student (neurons); a multiple of 8 keeps matmuls aligned.
FFN_STEP = 32


@dataclass(frozen=True)
class SmallDenseSize:
    """Shape of a small-dense student and the size it matches.

    layers: L_S; ffn_width: F_S; kept_layers: pre-trained layer index of each student layer;
    encoder_linear: L_S (4 H^2 + 2 H F_S) weights; target_nonzeros: (1 - s) x the full model's encoder
    linear weights; stands_for_sparsity: the requested s; equivalent_sparsity: 1 - encoder_linear /
    full, the sparsity whose non-zero count the student has exactly.
    """

    layers: int
    ffn_width: int
    kept_layers: tuple[int, ...]
    encoder_linear: int
    full_encoder_linear: int
    target_nonzeros: int
    stands_for_sparsity: float
    equivalent_sparsity: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kept_layers"] = list(self.kept_layers)
        return d


def _layer_weights(hidden: int, ffn: int) -> int:
    """Encoder linear weights of one BERT layer: Q, K, V, O (H x H each) + FFN-in and FFN-out (H x F each)."""
    return 4 * hidden * hidden + 2 * hidden * ffn


def kept_layers(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """Pre-trained layer indices the student keeps: i k + k - 1 for k = L_T / L_S (the layer map's targets).

    Raises:
        KaspError: if L_S does not divide L_T.
    """
    if student_layers < 1 or teacher_layers % student_layers:
        raise KaspError(f"a small-dense student of {student_layers} layers does not divide the teacher's "
                        f"{teacher_layers}: use a depth in {divisors(teacher_layers)}")
    k = teacher_layers // student_layers
    return tuple(i * k + k - 1 for i in range(student_layers))


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def size_for_sparsity(config: Any, sparsity: float, ffn_step: int = FFN_STEP) -> SmallDenseSize:
    """The small-dense shape whose encoder linear weights best match the non-zeros at ``sparsity``.

    Args:
        config: a transformers config (or any object) with ``num_hidden_layers``, ``hidden_size``
            and ``intermediate_size`` of the full (pre-trained) model.
        sparsity: the sparsity s in [0, 1) the student stands for.
        ffn_step: FFN width granularity in neurons.

    Returns:
        :class:`SmallDenseSize`. Depth L_S = the smallest divisor of L_T whose full-width layers hold
        at least (1 - s) x the full count; then F_S = the multiple of ``ffn_step`` in
        [ffn_step, F] that brings L_S (4 H^2 + 2 H F_S) closest to it. The result lies within one
        FFN step per layer of the target whenever the target is at least one layer's attention weights.

    Raises:
        ValueError: sparsity outside [0, 1) or a non-positive ``ffn_step``.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if ffn_step <= 0:
        raise ValueError(f"ffn_step must be > 0, got {ffn_step}")
    L, H, F = int(config.num_hidden_layers), int(config.hidden_size), int(config.intermediate_size)
    full = L * _layer_weights(H, F)
    target = round((1.0 - sparsity) * full)
    per_full_layer = _layer_weights(H, F)
    depth = next(d for d in divisors(L) if d * per_full_layer >= target)
    best = None
    widths = list(range(ffn_step, F, ffn_step)) + [F]
    for w in widths:
        n = depth * _layer_weights(H, w)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (w, n)
    w, n = best
    return SmallDenseSize(layers=depth, ffn_width=w, kept_layers=kept_layers(L, depth), encoder_linear=n,
                          full_encoder_linear=full, target_nonzeros=target, stands_for_sparsity=float(sparsity),
                          equivalent_sparsity=1.0 - n / full)


@torch.no_grad()
def _narrow_ffn(layer: nn.Module, width: int) -> None:
    """Keep the ``width`` FFN neurons with the largest ||W_in[j]|| * ||W_out[:, j]|| (in place)."""
    fin, fout = layer.intermediate.dense, layer.output.dense
    if width >= fin.out_features:
        return
    score = fin.weight.norm(dim=1) * fout.weight.norm(dim=0)  # (F,)
    keep = torch.topk(score, width).indices.sort().values
    new_in = nn.Linear(fin.in_features, width, bias=fin.bias is not None, dtype=fin.weight.dtype)
    new_in.weight.copy_(fin.weight[keep])
    if fin.bias is not None:
        new_in.bias.copy_(fin.bias[keep])
    new_out = nn.Linear(width, fout.out_features, bias=fout.bias is not None, dtype=fout.weight.dtype)
    new_out.weight.copy_(fout.weight[:, keep])
    if fout.bias is not None:
        new_out.bias.copy_(fout.bias)
    layer.intermediate.dense, layer.output.dense = new_in, new_out


def shrink_to(model: nn.Module, size: SmallDenseSize) -> nn.Module:
    """Turn a (pre-trained) classifier into the small-dense student of ``size``, in place, and return it.

    Keeps the encoder layers ``size.kept_layers`` (in order), narrows their FFN to ``size.ffn_width``
    and updates ``config.num_hidden_layers`` / ``config.intermediate_size`` so that
    ``save_pretrained`` writes a checkpoint that loads with ``from_pretrained``.

    Raises:
        KaspError: the model's depth differs from the one ``size`` was computed for, or the model
            does not have BERT's layout.
    """
    layers = encoder_layers(model)
    if len(layers) * _layer_weights(model.config.hidden_size, model.config.intermediate_size) != size.full_encoder_linear:
        raise KaspError("the small-dense size was computed for a different model shape")
    kept = nn.ModuleList([layers[i] for i in size.kept_layers])
    for new_idx, layer in enumerate(kept):
        _narrow_ffn(layer, size.ffn_width)
        att = getattr(layer.attention, "self", None)
        if att is not None and hasattr(att, "layer_idx"):
            att.layer_idx = new_idx
    model.base_model.encoder.layer = kept
    model.config.num_hidden_layers = size.layers
    model.config.intermediate_size = size.ffn_width
    model.config.kasp_small_dense = size.to_dict()
    return model
