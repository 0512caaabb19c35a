"""Evaluation of a sequence-classification model on a GLUE dev set or a user's labelled TSV."""

from __future__ import annotations

import torch
from torch import nn

from kasp.data.glue import Encoded, GlueTask, collate, eval_batches
from kasp.spec.metrics import glue_metrics


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
    return score_logits(task, predict(model, data, batch_size, device, pad_id), data.labels)


def score_logits(task: GlueTask, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """GLUE metrics of logits [N, C] (C = 1 for regression) against labels [N], plus ``n``.

    Raises:
        KaspError: if any logit is NaN or inf (a broken model: no score is given for it).
    """
    from kasp.ground.finite import non_finite_mask

    bad = non_finite_mask(logits)
    if bad.any():
        from kasp.ground.errors import KaspError

        rows = int(bad.reshape(len(logits), -1).any(-1).sum())
        raise KaspError(f"the model produced non-finite outputs (NaN or inf) for {rows} of {len(logits)} examples; "
                        "no score is reported for a broken model. Check the checkpoint with `kasp inspect`.")
    preds = logits.squeeze(-1) if task.is_regression else logits.argmax(-1)
    metrics = glue_metrics(task.metric, preds.numpy(), labels.numpy())
    metrics["n"] = len(labels)
    return metrics


def evaluate_sharded(model: nn.Module, data: Encoded, task: GlueTask, accelerator, batch_size: int = 64,
                     pad_id: int = 0) -> dict[str, float]:
    """Data-parallel evaluation: each process scores every num_processes-th example, the logits are
    gathered on all processes (``accelerate.utils.gather_object``) and scored once, in order."""
    from accelerate.utils import gather_object

    if accelerator.num_processes == 1:
        return evaluate_model(model, data, task, batch_size, accelerator.device, pad_id)
    shard = list(range(accelerator.process_index, len(data), accelerator.num_processes))
    sub = Encoded([data.input_ids[i] for i in shard], [data.token_type_ids[i] for i in shard], data.labels[shard])
    logits = predict(model, sub, batch_size, accelerator.device, pad_id)
    pairs = gather_object([(i, row.tolist()) for i, row in zip(shard, logits)])
    ordered = torch.tensor([row for _, row in sorted(pairs, key=lambda p: p[0])])
    return score_logits(task, ordered, data.labels)


def evaluate_checkpoint(checkpoint: str, task_name: str | None = None, data_path: str | None = None,
                        max_examples: int | None = None, max_seq_length: int = 128,
                        batch_size: int = 64) -> dict[str, object]:
    """Load a checkpoint safely and score it on a GLUE dev set or a labelled TSV in the task's layout.

    The checkpoint must be fit for the task (:func:`kasp.models.modeling.load_for_task`: tokenizer, trained
    head with the task's outputs, label names mapped, finite weights); inputs longer than the
    model's position table are cut at its limit; non-finite outputs are refused.

    Returns:
        {"checkpoint", "task", "task_source" ("given" or "checkpoint": its recorded ``kasp_task``),
        "recorded_task" (the checkpoint's ``kasp_task`` or None),
        "data" (what was scored), "metrics" (fractions and n), "label_order" (model output of each
        task class when the checkpoint's names re-ordered them, else None), "max_length" (the
        effective input length in tokens), "input_length" (:func:`kasp.data.glue.input_length`: the
        length and which limit set it)}.

    Raises:
        KaspError: unloadable or unfit checkpoint, unknown task, a malformed TSV (with its line
            number), non-finite outputs.
    """
    from kasp.data.glue import encode, get_task, input_length, load_split, read_user_tsv
    from kasp.ground.errors import KaspError
    from kasp.models.modeling import load_config, load_for_task, resolve_model

    for what, v in (("--max-seq-length", max_seq_length), ("--batch-size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise KaspError(f"{what} must be a positive whole number, got {v!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise KaspError(f"--max-eval-samples must be a positive whole number (or left out for all), got {max_examples!r}")
    ckpt = resolve_model(checkpoint)
    recorded = getattr(load_config(ckpt), "kasp_task", None)
    name = task_name or recorded
    if not name:
        raise KaspError(f"{ckpt} does not record its task: pass --task")
    task = get_task(name)
    df = read_user_tsv(task, data_path) if data_path else load_split(task, "dev")  # bad data: before the model load
    if max_examples:
        df = df.head(max_examples)
    model, tok, order = load_for_task(ckpt, task)
    data = encode(df, tok, max_seq_length)
    metrics = evaluate_model(model, data, task, batch_size, "cpu", tok.pad_token_id or 0)
    length = input_length(tok, max_seq_length)
    return {"checkpoint": ckpt, "task": task.name, "task_source": "given" if task_name else "checkpoint",
            "data": data_path or f"GLUE {task.name} dev", "metrics": metrics, "label_order": order,
            "max_length": length["tokens"], "input_length": length, "recorded_task": recorded}


def evaluation_notes(res: dict[str, object]) -> list[str]:
    """Lines that say how an evaluation was set up: the effective input length (a warning when a
    tokenizer or position-table limit cuts below --max-seq-length), task from the checkpoint, labels
    re-mapped."""
    from kasp.data.glue import get_task

    from kasp.data.glue import input_length_text, length_warning

    notes = []
    if isinstance(res.get("input_length"), dict):
        notes.append(length_warning(res["input_length"]) or input_length_text(res["input_length"]))
    if res.get("task_source") == "checkpoint":
        notes.append(f"task {res['task']} as recorded in the checkpoint's config (kasp_task)")
    elif res.get("recorded_task") and res["recorded_task"] != res["task"]:
        notes.append(f"note: the checkpoint was trained on {res['recorded_task']} (kasp_task) and is scored on "
                     f"{res['task']} as asked")
    if res.get("label_order"):
        names = get_task(res["task"]).class_names
        notes.append("labels mapped from the checkpoint's id2label: " +
                     ", ".join(f"{n} = output {i}" for n, i in zip(names, res["label_order"])))
    return notes
