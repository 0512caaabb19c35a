"""Predictions side by side: the teacher's and the students' outputs for a sentence (pair) someone types.

Uses the same path as ``kasp evaluate`` (:func:`kasp.data.glue.encode` then :func:`kasp.training.evaluate.predict`,
maximum length 128 tokens), so a row of the table is what ``kasp evaluate`` would score for that
sentence. Checkpoints load through :func:`kasp.models.modeling.load_classifier` (safetensors only).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from kasp.data.glue import GlueTask, encode, get_task, load_split
from kasp.ground.errors import KaspError
from kasp.ground.runs import measured_sparsity

MAX_SEQ_LENGTH = 128  # as ``kasp evaluate``'s default

def class_names(task: GlueTask) -> list[str]:
    """Readable name of each class id of a classification task, from the task table
    (:attr:`kasp.spec.tasks.GlueTask.shown_class_names`: "not equivalent", "equivalent" for MRPC); ``"0"`` for
    the one output of a regression task."""
    names = task.shown_class_names
    return list(names) if names and len(names) == task.num_labels else [str(i) for i in range(task.num_labels)]


def _mtime(path: str) -> float:
    files = list(Path(path).glob("*.safetensors"))
    return max((f.stat().st_mtime for f in files), default=0.0)


@functools.lru_cache(maxsize=6)
def _load(path: str, mtime: float, task_name: str):
    from kasp.models.modeling import load_for_task

    model, tok, _ = load_for_task(path, get_task(task_name))
    return model, tok


def load_for_prediction(checkpoint: str | Path, task: GlueTask) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint directory or run directory for ``task``, through the same
    fitness check as ``kasp evaluate`` (:func:`kasp.models.modeling.load_for_task`: head with the task's
    outputs, label names mapped to KASP's class order, finite weights, tokenizer); cached while its
    weights are unchanged.

    Raises:
        KaspError: the first check that fails, in one line.
    """
    from kasp.models.modeling import resolve_model

    path = resolve_model(str(checkpoint))
    return _load(path, _mtime(path), task.name)


def logits_for(checkpoint: str | Path, task: GlueTask, df: pd.DataFrame) -> np.ndarray:
    """Logits [N, C] of a checkpoint for the rows of ``df`` (columns text_a, text_b, label), computed
    exactly as ``kasp evaluate`` does."""
    from kasp.training.evaluate import predict

    model, tok = load_for_prediction(checkpoint, task)
    enc = encode(df, tok, MAX_SEQ_LENGTH)
    return predict(model, enc, 64, "cpu", tok.pad_token_id or 0).numpy()


def cut_warnings(models: dict[str, str | Path], task_name: str) -> list[str]:
    """One warning per model whose inputs are cut below :data:`MAX_SEQ_LENGTH` (a tokenizer with a small
    ``model_max_length``, or a short position table), naming the model and the limit that won
    (:func:`kasp.data.glue.length_warning`); models that cannot be loaded are skipped (the table says why)."""
    from kasp.data.glue import input_length, length_warning
    from kasp.ground.errors import KaspError

    task, out = get_task(task_name), []
    for label, path in models.items():
        try:
            _, tok = load_for_prediction(path, task)
        except KaspError:
            continue
        warning = length_warning(input_length(tok, MAX_SEQ_LENGTH))
        if warning:
            out.append(f"{label}: {warning}")
    return out


def gold_label(task_name: str, text_a: str, text_b: str | None = None) -> float | int | None:
    """The dev set's label of this exact sentence (pair), or None when it is not a dev example."""
    dev = _dev(task_name)
    hit = dev[(dev["text_a"] == text_a.strip()) & ((dev["text_b"] == (text_b or "").strip()) if get_task(task_name).text_b
                                                     else True)]
    return None if hit.empty else hit.iloc[0]["label"].item()


@functools.lru_cache(maxsize=4)
def _dev(task_name: str) -> pd.DataFrame:
    return load_split(get_task(task_name), "dev")


def predict_texts(models: dict[str, str | Path], task_name: str, text_a: str, text_b: str | None = None,
                  teacher: str | None = None) -> pd.DataFrame:
    """One row per model: its prediction for one sentence (or pair) and, when the sentence is a dev
    example, the gold label.

    Args:
        models: label shown in the table -> checkpoint or run directory.
        task_name: GLUE task; pair tasks need ``text_b``.
        teacher: the label in ``models`` whose prediction the others are compared with (column
            "agrees with teacher"; for STS-B, "difference from teacher").

    Returns:
        DataFrame with columns ``model``, ``prediction`` (class name, or the score for STS-B), one
        ``P(<class>)`` column per class (softmax probabilities, fractions) or ``score``, ``gold``
        (None when not a dev example) and the comparison column when ``teacher`` is given.

    Raises:
        KaspError: empty text, a missing second sentence for a pair task, an unloadable checkpoint or
            one whose head does not fit the task.
    """
    task = get_task(task_name)
    if not text_a or not text_a.strip():
        raise KaspError("type a sentence first")
    if task.text_b and not (text_b and text_b.strip()):
        raise KaspError(f"{task.name} compares two sentences: type the second one too")
    df = pd.DataFrame({"text_a": [text_a.strip()], "text_b": [text_b.strip() if task.text_b else None],
                       "label": [0.0 if task.is_regression else 0]})
    gold = gold_label(task.name, text_a, text_b)
    names = class_names(task)
    rows = []
    for label, path in models.items():
        z = torch.from_numpy(logits_for(path, task, df)[0])
        row: dict[str, Any] = {"model": label}
        if task.is_regression:
            row["prediction"] = f"{float(z[0]):.3f}"
            row["score"] = float(z[0])
        else:
            p = torch.softmax(z, -1)
            row["prediction"] = names[int(p.argmax())]
            row.update({f"P({n})": float(p[i]) for i, n in enumerate(names)})
        rows.append(row)
    out = pd.DataFrame(rows)
    if teacher is not None and teacher in models:
        ref = out[out["model"] == teacher].iloc[0]
        if task.is_regression:
            out["difference from teacher"] = out["score"] - ref["score"]
        else:
            out["agrees with teacher"] = out["prediction"] == ref["prediction"]
    out["gold"] = None if gold is None else (f"{gold:.3f}" if task.is_regression else names[int(gold)])
    return out


def disagreements(teacher: str | Path, students: list[str | Path], task_name: str, n: int = 256,
                  regression_gap: float = 1.0) -> list[int]:
    """Indices among the first ``n`` dev examples where some student disagrees with the teacher:
    a different predicted class, or (STS-B) a score differing by more than ``regression_gap``;
    ordered by how strongly (largest probability or score gap first)."""
    task = get_task(task_name)
    dev = _dev(task.name).head(n)
    t = logits_for(teacher, task, dev)
    gaps = np.zeros(len(dev))
    differ = np.zeros(len(dev), dtype=bool)
    for s in students:
        z = logits_for(s, task, dev)
        if task.is_regression:
            g = np.abs(z[:, 0] - t[:, 0])
            differ |= g > regression_gap
        else:
            differ |= z.argmax(-1) != t.argmax(-1)
            g = np.abs(torch.softmax(torch.from_numpy(z), -1).numpy() - torch.softmax(torch.from_numpy(t), -1).numpy()).max(-1)
        gaps = np.maximum(gaps, g)
    idx = np.flatnonzero(differ)
    return [int(i) for i in idx[np.argsort(-gaps[idx], kind="stable")]]


def dev_example(task_name: str, i: int) -> tuple[str, str | None]:
    """The text(s) of dev example ``i`` of a task."""
    row = _dev(get_task(task_name).name).iloc[i]
    return row["text_a"], (row["text_b"] if isinstance(row["text_b"], str) else None)


def prediction_runs(task_name: str, store: str | Path | None = None) -> dict[str, list[dict[str, Any]]]:
    """Finished live runs of a task whose checkpoints can predict, newest first.

    Returns:
        {"teachers": [...], "students": [...]}, each item ``id``, ``label`` (id with method and
        sparsity), ``short`` (method and sparsity alone, "KASP, 90 %", or "dense teacher"), ``path``
        (the run directory) and, for students, ``teacher`` (their teacher's checkpoint path from the
        report, or None).
    """
    from kasp.ground.runs import iter_done
    from kasp.spec.methods import label as method_label

    out: dict[str, list[dict[str, Any]]] = {"teachers": [], "students": []}
    for r in iter_done(store, task=get_task(task_name).name):
        rec, rep = r.recipe(), r.report()
        if rec.get("kind") == "finetune":
            out["teachers"].append({"id": r.id, "label": f"{r.id} (dense teacher)", "short": "dense teacher",
                                    "path": str(r.path)})
        else:
            sp = measured_sparsity(rep)
            sp = sp if sp is not None else rec.get("sparsity") or 0
            short = f"{method_label(rec.get('method'))}, {sp * 100:.0f} %"
            out["students"].append({"id": r.id, "label": f"{r.id} ({short})", "short": short, "path": str(r.path),
                                    "teacher": (rep.get("teacher") or {}).get("path")})
    return out
