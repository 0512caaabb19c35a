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


def evaluate_checkpoint(checkpoint: str, task_name: str | None = None, data_path: str | None = None,
                        max_examples: int | None = None, max_seq_length: int = 128,
                        batch_size: int = 64) -> dict[str, object]:
    """Load a checkpoint safely and score it on a GLUE dev set or a labelled TSV in the task's layout.

    Returns:
        {"checkpoint", "task", "data" (what was scored), "metrics" (fractions and n)}.

    Raises:
        KaspError: unloadable checkpoint, unknown task, a head whose size does not fit the task,
            or a malformed TSV (with its line number).
    """
    from kasp.data import encode, get_task, load_split, read_task_tsv
    from kasp.errors import KaspError
    from kasp.modeling import load_classifier, load_tokenizer, resolve_model

    ckpt = resolve_model(checkpoint)
    model = load_classifier(ckpt)
    task_name = task_name or getattr(model.config, "kasp_task", None)
    if not task_name:
        raise KaspError(f"{ckpt} does not record its task: pass --task")
    task = get_task(task_name)
    if model.config.num_labels != task.num_labels:
        raise KaspError(f"{ckpt} has {model.config.num_labels} output(s) but task {task.name} needs {task.num_labels}; "
                        "was it fine-tuned on this task?")
    df = read_task_tsv(task, data_path) if data_path else load_split(task, "dev")
    if max_examples:
        df = df.head(max_examples)
    tok = load_tokenizer(ckpt)
    metrics = evaluate_model(model, encode(df, tok, max_seq_length), task, batch_size, "cpu", tok.pad_token_id or 0)
    return {"checkpoint": ckpt, "task": task.name, "data": data_path or f"GLUE {task.name} dev", "metrics": metrics}
