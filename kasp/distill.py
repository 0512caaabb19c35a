"""Distillation losses of knowledge-aware sparse pruning, and capture of pre-softmax attention scores.

Paper: Xu, Yen, Zhao, Xiao, "Rethinking Network Pruning - under the Pre-train and Fine-tune
Paradigm", NAACL-HLT 2021 (SparseBERT), which sums TinyBERT's task-distillation terms (Jiao et al.,
"TinyBERT", Findings of EMNLP 2020, eqs. 7-10) in one stage while pruning. See docs/method.md §2:

- attention: MSE of the pre-softmax scores QK^T / sqrt(d_h) (+ additive mask) per layer, with the
  entries at masked (padded) key positions set to 0 in both models, mean over [B, heads, T, T],
  summed over layers (TinyBERT eq. 7);
- hidden: MSE of the embedding output and every layer output, [B, T, H] each, summed over the
  L + 1 tensors (TinyBERT eqs. 8-9, no projection when widths match);
- prediction: soft cross-entropy -sum softmax(z_T / tau) * log_softmax(z_S / tau), mean over the
  batch (TinyBERT eq. 10); for regression, MSE against the gold score.

Layer map for a student of depth L_S and teacher of depth L_T, k = L_T / L_S: attention layer i of
the student matches teacher layer i*k + k - 1; hidden state i matches teacher hidden state i*k.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kasp.errors import KaspError
from kasp.modeling import encoder_layers


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
        self._q = [None] * len(self._q)
        self._k = [None] * len(self._k)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


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


def attention_loss(student_scores: list[torch.Tensor], teacher_scores: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the mean squared error of pre-softmax scores [B, heads, T, T].

    Both lists must already be layer-mapped and have masked positions zeroed (as
    :meth:`ScoreCapture.scores` returns them).
    """
    return sum(F.mse_loss(s, t) for s, t in zip(student_scores, teacher_scores))


def hidden_loss(student_hidden: tuple[torch.Tensor, ...], teacher_hidden: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Sum over the L + 1 mapped hidden states [B, T, H] of their mean squared error."""
    return sum(F.mse_loss(s, t) for s, t in zip(student_hidden, teacher_hidden))


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
    """The weighted loss of one batch, shared by the CLI loop (:mod:`kasp.train`) and the Trainer route
    (:mod:`kasp.hf_trainer`):

        total = a * attention + h * hidden + p * prediction + c * task

    with the terms above (docs/method.md §2). Terms with weight 0 are not computed; without a
    teacher only the task term exists. Hooks for the attention term are installed on ``student``
    and ``teacher`` (the unwrapped modules) until :meth:`remove`.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, *, attention_weight: float = 1.0,
                 hidden_weight: float = 1.0, prediction_weight: float = 1.0, task_loss_weight: float = 0.0,
                 temperature: float = 1.0, regression: bool = False):
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
                self.s_cap, self.t_cap = ScoreCapture(student), ScoreCapture(teacher)
        self.need_hidden = teacher is not None and hidden_weight > 0

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        """Returns (total loss tensor, {term: tensor}, the student's outputs)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        out = model(**inputs, output_hidden_states=self.need_hidden)
        terms: dict[str, torch.Tensor] = {}
        if self.teacher is not None:
            with torch.no_grad():
                t_out = self.teacher(**inputs, output_hidden_states=self.need_hidden)
                t_scores = self.t_cap.scores(batch["attention_mask"]) if self.t_cap else None
            if self.s_cap is not None:
                s_scores = self.s_cap.scores(batch["attention_mask"])
                terms["attention"] = attention_loss(s_scores, [t_scores[j] for j in self.amap])
            if self.need_hidden:
                terms["hidden"] = hidden_loss(out.hidden_states, [t_out.hidden_states[j] for j in self.hmap])
            if self.weights["prediction"] > 0:
                terms["prediction"] = (task_loss(out.logits, batch["labels"]) if self.regression
                                       else prediction_loss(out.logits, t_out.logits, self.temperature))
        if self.weights["task"] > 0:
            terms["task"] = task_loss(out.logits, batch["labels"])
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total, terms, out

    def remove(self) -> None:
        for cap in (self.s_cap, self.t_cap):
            if cap is not None:
                cap.remove()
