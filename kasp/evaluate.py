"""Evaluation of a sequence-classification model on a GLUE dev set or a user's labelled TSV."""

from __future__ import annotations

import torch
from torch import nn

from kasp.data import Encoded, GlueTask, collate, eval_batches
from kasp.metrics import glue_metrics


@torch.no_grad()
def predict(model: nn.Module, data: Encoded, batch_size: int = 64, device: torch.device | str = "cpu",
            pad_id: int = 0) -> torch.Tensor:
    """Logits for every example, in the original order: [N, num_labels] float32.

    Batches are sorted by length (dynamic padding) and the order restored afterwards.
    """
    was_training = model.training
    model.eval()
    out: list[torch.Tensor | None] = [None] * len(data)
    for idx in eval_batches(data, batch_size):
        batch = collate(data, idx, pad_id)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits.float().cpu()
        for r, i in enumerate(idx):
            out[i] = logits[r]
    model.train(was_training)
    return torch.stack(out)  # type: ignore[arg-type]


def evaluate_model(model: nn.Module, data: Encoded, task: GlueTask, batch_size: int = 64,
                   device: torch.device | str = "cpu", pad_id: int = 0) -> dict[str, float]:
    """The task's GLUE metrics (fractions) on ``data``, plus ``n`` (number of examples)."""
    logits = predict(model, data, batch_size, device, pad_id)
    preds = logits.squeeze(-1) if task.is_regression else logits.argmax(-1)
    metrics = glue_metrics(task.metric, preds.numpy(), data.labels.numpy())
    metrics["n"] = len(data)
    return metrics
