"""Distillation losses of knowledge-aware sparse pruning, and capture of pre-softmax attention scores.

Paper: Xu, Yen, Zhao, Xiao, "Rethinking Network Pruning - under the Pre-train and Fine-tune
Paradigm", NAACL-HLT 2021 (SparseBERT), which sums TinyBERT's task-distillation terms (Jiao et al.,
"TinyBERT", Findings of EMNLP 2020, eqs. 7-10) in one stage while pruning. See docs/method.md §2:

- attention: MSE of the pre-softmax scores QK^T / sqrt(d_h) (+ additive mask) per layer, with the
  entries at padded key columns and padded query rows counted as 0, mean over [B, heads, T, T],
  summed over layers (TinyBERT eq. 7);
- hidden: MSE of the embedding output and every layer output, [B, T, H] each, padded positions
  counted as 0, summed over the L + 1 tensors (TinyBERT eqs. 8-9, no projection when widths match);
- prediction: soft cross-entropy -sum softmax(z_T / tau) * log_softmax(z_S / tau), mean over the
  batch (TinyBERT eq. 10); for regression, MSE against the gold score.

Layer map for a student of depth L_S and teacher of depth L_T, k = L_T / L_S: attention layer i of
the student matches teacher layer i*k + k - 1; hidden state i matches teacher hidden state i*k.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kasp.ground.errors import KaspError
from kasp.models.modeling import encoder_layers

#: the name under which :class:`AttentionScores` registers its attention function with transformers
ATTENTION_FUNCTION = "kasp_scores"


class ScoreCapture:
    """Forward hooks on every layer's query and key projections; pre-softmax scores on demand.

    After a forward pass, :meth:`scores` returns, per layer, QK^T / sqrt(d_h) with entries at
    masked key positions set to 0: a list of L tensors [B, heads, T, T]. Works with any attention
    implementation (sdpa or eager), since it recomputes the scores from the projections.
    """

    def __init__(self, model: nn.Module):
        layers = encoder_layers(model)
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self._q: list[torch.Tensor | None] = [None] * len(layers)
        self._k: list[torch.Tensor | None] = [None] * len(layers)
        self._handles = []
        for i, layer in enumerate(layers):
            att = layer.attention.self
            self._handles.append(att.query.register_forward_hook(self._saver(self._q, i)))
            self._handles.append(att.key.register_forward_hook(self._saver(self._k, i)))

    @staticmethod
    def _saver(store: list, i: int):
        def hook(module, args, output):
            store[i] = output
        return hook

    def scores(self, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Pre-softmax scores per layer, masked key positions zeroed.

        Args:
            attention_mask: [B, T], 1 for real tokens, 0 for padding.
        Returns:
            list of L tensors [B, heads, T, T].
        """
        out = []
        keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, T) over keys
        for q, k in zip(self._q, self._k):
            if q is None or k is None:
                raise RuntimeError("ScoreCapture.scores() called before a forward pass")
            B, T, _ = q.shape
            qh = q.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
            kh = k.view(B, T, self.heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
            s = qh @ kh.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, nh, T, T)
            out.append(s.masked_fill(~keep, 0.0))
        return out

    def clear(self) -> None:
        """Forget the captured projections (in place: the hooks hold these lists)."""
        for store in (self._q, self._k):
            store[:] = [None] * len(store)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


# module (a BertSelfAttention) -> (its AttentionScores, layer index); weak, so dropped models are not kept alive
_SINKS: "weakref.WeakKeyDictionary[nn.Module, tuple[AttentionScores, int]]" = weakref.WeakKeyDictionary()


def _kasp_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                    **kwargs):
    """transformers attention function (``AttentionInterface``) that keeps the pre-softmax scores.

    For a layer registered with an enabled :class:`AttentionScores` it computes eager attention,
    softmax(QK^T * scaling, masked) V, and hands QK^T * scaling to the capture; otherwise it is
    transformers' own sdpa attention, so evaluation costs what it costs without KASP.

    Args:
        query, key, value: [B, heads, T, d_h]; attention_mask: [B, 1, T, T] bool (True = attend,
            transformers' sdpa mask, registered for this name) or None when nothing is padded.
    Returns:
        (output [B, T, heads, d_h], attention probabilities [B, heads, T, T] or None), as every
        transformers attention function.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    sink = _SINKS.get(module)
    if sink is None or not sink[0].enabled:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, nh, T, T)
    sink[0]._keep(sink[1], scores)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:  # an additive float mask
            scores = scores + attention_mask
    probs = F.dropout(F.softmax(scores, dim=-1), p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, T, nh, hd)
    return out, probs


def _register_attention_function() -> None:
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(ATTENTION_FUNCTION, _kasp_attention)
    AttentionMaskInterface.register(ATTENTION_FUNCTION, sdpa_mask)


class AttentionScores:
    """Pre-softmax attention scores taken from the attention computation itself (no recomputation).

    Registers :func:`_kasp_attention` with transformers' ``AttentionInterface`` and switches the
    model's ``config._attn_implementation`` to it until :meth:`remove`. During a forward pass each
    encoder layer then computes eager attention and keeps its scaled scores QK^T / sqrt(d_h), the
    same tensor the softmax reads; the student's scores stay in the autograd graph, so the attention
    term back-propagates through them. :meth:`scores` returns them as :meth:`ScoreCapture.scores`
    does (the hook-based capture, which recomputes QK^T from the projections): a list of L tensors
    [B, heads, T, T] with the entries at masked key positions set to 0. Set ``enabled = False`` to
    run plain sdpa attention (evaluation) without removing the capture.

    Raises:
        KaspError: if the model does not have BERT's encoder layout.
    """

    def __init__(self, model: nn.Module):
        layers = encoder_layers(model)
        _register_attention_function()
        self.model = model
        self.enabled = True
        self._previous = model.config._attn_implementation
        self._scores: list[torch.Tensor | None] = [None] * len(layers)
        self._modules = [layer.attention.self for layer in layers]
        for i, m in enumerate(self._modules):
            _SINKS[m] = (self, i)
        model.set_attn_implementation(ATTENTION_FUNCTION)

    def _keep(self, i: int, scores: torch.Tensor) -> None:
        self._scores[i] = scores

    def scores(self, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Pre-softmax scores per layer from the last forward pass, masked key positions zeroed.

        Args:
            attention_mask: [B, T], 1 for real tokens, 0 for padding.
        Returns:
            list of L tensors [B, heads, T, T].
        Raises:
            RuntimeError: before a forward pass with the capture enabled.
        """
        if any(s is None for s in self._scores):
            raise RuntimeError("AttentionScores.scores() called before a forward pass")
        keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, T) over keys
        return [s.masked_fill(~keep, 0.0) for s in self._scores]

    def clear(self) -> None:
        self._scores = [None] * len(self._scores)

    def remove(self) -> None:
        """Restore the model's own attention implementation and forget the scores."""
        for m in self._modules:
            _SINKS.pop(m, None)
        self.clear()
        if self.model.config._attn_implementation == ATTENTION_FUNCTION:
            self.model.set_attn_implementation(self._previous or "sdpa")


def layer_map(student_layers: int, teacher_layers: int) -> tuple[list[int], list[int]]:
    """Teacher indices matched to each student attention layer and hidden state.

    Returns:
        (attention map of length L_S, hidden map of length L_S + 1); hidden index 0 is the
        embedding output. Source: TinyBERT's uniform mapping, as used by SparseBERT's code.

    Raises:
        KaspError: if the teacher depth is not a multiple of the student depth.
    """
    if teacher_layers % student_layers:
        raise KaspError(f"teacher depth {teacher_layers} is not a multiple of student depth {student_layers}")
    k = teacher_layers // student_layers
    return [i * k + k - 1 for i in range(student_layers)], [i * k for i in range(student_layers + 1)]


def _real_rows(attention_mask: torch.Tensor | None, ndim: int) -> torch.Tensor | None:
    """[B, T] mask (1 = real token) shaped to broadcast over query rows: [B, 1, T, 1] for scores
    (ndim 4) or [B, T, 1] for hidden states (ndim 3); None without a mask."""
    if attention_mask is None:
        return None
    m = attention_mask.bool()
    return m[:, None, :, None] if ndim == 4 else m[:, :, None]


def _padded_mse(s: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Mean over all entries of (s - t)^2, with the entries where ``keep`` is False counted as 0."""
    d = s - t
    if keep is not None:
        d = d.masked_fill(~keep, 0.0)
    return d.pow(2).mean()


def attention_loss(student_scores: list[torch.Tensor], teacher_scores: list[torch.Tensor],
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over layers of the mean squared error of pre-softmax scores [B, heads, T, T].

    Both lists must already be layer-mapped and have masked key columns zeroed (as
    :meth:`ScoreCapture.scores` returns them). With ``attention_mask`` ([B, T], 1 = real token) the
    query rows of padded positions count as 0 as well: padding carries no knowledge, and each
    example's targets then do not depend on the batch it is padded into (what the teacher cache,
    :mod:`kasp.core.teacher_cache`, needs). The mean stays over all B * heads * T * T entries, as in
    TinyBERT eq. 7 over padded batches.
    """
    keep = _real_rows(attention_mask, 4)
    return sum(_padded_mse(s, t, keep) for s, t in zip(student_scores, teacher_scores))


def hidden_loss(student_hidden: tuple[torch.Tensor, ...], teacher_hidden: tuple[torch.Tensor, ...],
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over the L + 1 mapped hidden states [B, T, H] of their mean squared error.

    With ``attention_mask`` ([B, T], 1 = real token) padded positions count as 0 (see
    :func:`attention_loss`); the mean stays over all B * T * H entries.
    """
    keep = _real_rows(attention_mask, 3)
    return sum(_padded_mse(s, t, keep) for s, t in zip(student_hidden, teacher_hidden))


def prediction_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Soft cross-entropy -sum_c softmax(z_T/tau)_c log_softmax(z_S/tau)_c, mean over the batch.

    Args:
        student_logits, teacher_logits: [B, C] with C >= 2. For regression (STS-B) the method uses
            the MSE against the gold score instead: :func:`task_loss`.
    Raises:
        ValueError: for a single-output (regression) head.
    """
    if student_logits.shape[-1] < 2:
        raise ValueError("prediction_loss is for classification heads; use task_loss for regression")
    p_t = F.softmax(teacher_logits / temperature, dim=-1)
    return -(p_t * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1).mean()


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against gold class ids, or MSE against gold scores for regression (STS-B)."""
    if logits.shape[-1] == 1:
        return F.mse_loss(logits.squeeze(-1), labels.float())
    return F.cross_entropy(logits, labels)


class KaspLoss:
    """The weighted loss of one batch, shared by the CLI loop (:mod:`kasp.training.train`) and the Trainer route
    (:mod:`kasp.training.hf_trainer`):

        total = a * attention + h * hidden + p * prediction + c * task

    with the terms above (docs/method.md §2). Terms with weight 0 are not computed; without a
    teacher only the task term exists. The attention term reads the scores through
    :class:`AttentionScores` (``score_capture="attention"``, the default: the scores the attention
    computation forms anyway) or :class:`ScoreCapture` (``"hooks"``: recomputed from the query and
    key projections; the same values within float rounding, kept as a reference). Either is
    installed on ``student`` and ``teacher`` (the unwrapped modules) until :meth:`remove`.

    For regression (STS-B) the prediction term is the MSE against the gold score; rows whose gold
    score is NaN (unlabelled augmentation sentences, :mod:`kasp.training.augment`) take the teacher's
    prediction as their target instead.

    Raises:
        KaspError: if teacher and student head counts differ while the attention term is on, or the
            teacher depth is not a multiple of the student depth.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, *, attention_weight: float = 1.0,
                 hidden_weight: float = 1.0, prediction_weight: float = 1.0, task_loss_weight: float = 0.0,
                 temperature: float = 1.0, regression: bool = False, score_capture: str = "attention"):
        if score_capture not in ("attention", "hooks"):
            raise ValueError(f"score_capture must be 'attention' or 'hooks', got {score_capture!r}")
        self.teacher = teacher
        self.weights = {"attention": attention_weight, "hidden": hidden_weight, "prediction": prediction_weight,
                        "task": task_loss_weight}
        self.temperature = temperature
        self.regression = regression
        self.amap = self.hmap = []
        self.s_cap = self.t_cap = None
        if teacher is not None:
            if teacher.config.num_attention_heads != student.config.num_attention_heads and attention_weight > 0:
                raise KaspError("teacher and student head counts differ; attention distillation needs equal heads")
            self.amap, self.hmap = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
            if attention_weight > 0:
                cap = AttentionScores if score_capture == "attention" else ScoreCapture
                self.s_cap, self.t_cap = cap(student), cap(teacher)
        self.need_hidden = teacher is not None and hidden_weight > 0
        self.cache = None

    @classmethod
    def from_config(cls, cfg: Any, student: nn.Module, teacher: nn.Module | None, *, regression: bool | None = None,
                    score_capture: str = "attention") -> "KaspLoss":
        """The loss of a recipe: its four weights and temperature read from ``cfg`` here, in one place.

        Args:
            cfg: a :class:`kasp.spec.config.RunConfig` (``attention_weight``, ``hidden_weight``,
                ``prediction_weight``, ``task_loss_weight``, ``temperature``; ``task`` when
                ``regression`` is None).
            student, teacher: as in :class:`KaspLoss`.
            regression: the task is a regression (STS-B); None: read from ``cfg.task``'s task record.
            score_capture: as in :class:`KaspLoss`.

        Raises:
            KaspError: as :class:`KaspLoss`, or an unknown ``cfg.task`` when ``regression`` is None.
        """
        if regression is None:
            from kasp.spec.tasks import get_task

            regression = get_task(cfg.task).is_regression
        return cls(student, teacher, attention_weight=cfg.attention_weight, hidden_weight=cfg.hidden_weight,
                   prediction_weight=cfg.prediction_weight, task_loss_weight=cfg.task_loss_weight,
                   temperature=cfg.temperature, regression=regression, score_capture=score_capture)

    def set_capture(self, enabled: bool) -> None:
        """Switch score capture off (plain sdpa attention, e.g. for dev evaluation) or back on."""
        for cap in (self.s_cap, self.t_cap):
            if isinstance(cap, AttentionScores):
                cap.enabled = enabled

    def use_cache(self, cache) -> None:
        """Read the teacher's side of the loss from ``cache`` (:class:`kasp.core.teacher_cache.TeacherCache`) for
        batches that carry example indices (``batch["index"]``) and are fully stored; batches that are
        not run the teacher and store its outputs. With a cache, every target is rounded to fp16 as
        stored, so a run gives the same weights whether its examples were stored before it started or
        not. ``None`` switches the cache off."""
        self.cache = cache

    def cache_layout(self) -> tuple[list[int], list[int]]:
        """(attention map, hidden map) of the teacher outputs the loss reads: empty where a term is off."""
        return (list(self.amap) if self.s_cap is not None else []), (list(self.hmap) if self.need_hidden else [])

    def _teacher_targets(self, inputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]):
        """(logits [B, C], mapped hidden states [B, T, H] each, mapped pre-softmax scores [B, heads, T, T]
        each) of the teacher: read from the cache when every example of the batch is stored, else computed
        (and stored)."""
        cache, index = getattr(self, "cache", None), batch.get("index")
        idx = index.tolist() if cache is not None and index is not None else None
        if idx is not None and cache.has(idx):
            return cache.read(idx, batch["attention_mask"].shape[1], batch["attention_mask"].device)
        with torch.no_grad():
            t_out = self.teacher(**inputs, output_hidden_states=self.need_hidden)
            scores = []
            if self.t_cap is not None:
                all_scores = self.t_cap.scores(batch["attention_mask"])
                scores = [all_scores[j] for j in self.amap]
                self.t_cap.clear()
            hidden = [t_out.hidden_states[j] for j in self.hmap] if self.need_hidden else []
        if idx is None:
            return t_out.logits, hidden, scores
        cache.write(idx, t_out.logits, hidden, scores)
        # the targets as the cache returns them (fp16-rounded), whether this batch was stored or not: a run
        # trains the same whatever the cache held when it started (another run's epochs, a resume)
        fp16 = lambda x: x.half().float()  # noqa: E731
        return fp16(t_out.logits), [fp16(h) for h in hidden], [fp16(x) for x in scores]

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Returns (total loss tensor, {term: tensor}, the student's outputs). The terms are 0-d
        tensors still on the device: reading them (``float``) is left to the caller, so a loop can
        read them at its log points only. ``batch["index"]`` (example indices, [B]), when present, is
        not a model input: it keys the teacher cache (:meth:`use_cache`)."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
        out = model(**inputs, output_hidden_states=self.need_hidden)
        terms: dict[str, torch.Tensor] = {}
        if self.teacher is not None:
            am = batch["attention_mask"]
            t_logits, t_hidden, t_scores = self._teacher_targets(inputs, batch)
            if self.s_cap is not None:
                s_scores = self.s_cap.scores(am)
                terms["attention"] = attention_loss(s_scores, t_scores, am)
                self.s_cap.clear()  # the graph keeps what backward needs; drop the rest now
            if self.need_hidden:
                terms["hidden"] = hidden_loss(out.hidden_states, t_hidden, am)
            if self.weights["prediction"] > 0:
                if self.regression:
                    labels = batch["labels"].float()
                    gold = ~torch.isnan(labels)
                    target = torch.where(gold, labels, t_logits.squeeze(-1).float())
                    terms["prediction"] = task_loss(out.logits, target)
                else:
                    terms["prediction"] = prediction_loss(out.logits, t_logits, self.temperature)
        if self.weights["task"] > 0:
            terms["task"] = task_loss(out.logits, batch["labels"])
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms, out

    def remove(self) -> None:
        for cap in (self.s_cap, self.t_cap):
            if cap is not None:
                cap.remove()
        self.s_cap = self.t_cap = None
