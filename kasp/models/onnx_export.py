"""A dense ONNX export of a checkpoint, checked against PyTorch, and latency measured side by side.

``kasp export CHECKPOINT OUT --format onnx`` writes ``OUT/model.onnx`` (plus ``config.json``, the
tokenizer files, the model card and ``onnx_check.json``) through torch's own exporter
(``torch.onnx.export`` with ``dynamo=False``, the TorchScript-based path, which needs no package
beyond ``onnx``), with dynamic batch and sequence axes:

    inputs  ``input_ids``, ``attention_mask``, ``token_type_ids``: int64 [batch, sequence]
    output  ``logits``: float32 [batch, num_labels]

Before anything is renamed into place, ONNX Runtime's logits on the task's first dev examples are
compared with PyTorch's (computed before the export, from the checkpoint as loaded); the export is
refused when the largest absolute difference exceeds ``tolerance`` (1e-4). The model is dense: the
pruned zeros are stored and multiplied like any other weight (ONNX Runtime's CPU kernels have no
unstructured-sparse path), so a 90 %-sparse checkpoint runs as fast as a dense one;
:func:`quantize_int8` (ONNX Runtime's dynamic int8 quantisation) is what makes it smaller and faster.

The two packages are pinned in requirements.txt (``onnx``, ``onnxruntime``); without them
:func:`require_onnx` says how to install them.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from kasp.ground.errors import KaspError
from kasp.ground.staging import require_new_dir, staged_dir
from kasp.models.export import copy_side_files

ONNX_FILE = "model.onnx"
CHECK_FILE = "onnx_check.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
TOLERANCE = 1e-4


def require_onnx() -> tuple[Any, Any]:
    """(onnx, onnxruntime), imported.

    Raises:
        KaspError: when either is missing, with the install command (the pins of requirements.txt).
    """
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise KaspError(f"the ONNX export needs onnx and onnxruntime ({e.name} is missing): install kasp[onnx] "
                        "(`pip install \"kasp[onnx]\"`; in a checkout `pip install -r requirements.txt`, or "
                        "`pip install onnx==1.23.2 onnxruntime==1.32.0`)") from None
    return onnx, onnxruntime


class _Logits(nn.Module):
    """The classifier as a function of the three input tensors, returning the logits only."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def dev_inputs(tokenizer, task_name: str, samples: int, max_seq_length: int = 128) -> Any:
    """The first ``samples`` dev examples of a GLUE task, encoded (:class:`kasp.data.glue.Encoded`).

    Raises:
        KaspError: unknown task or dev split not available.
    """
    from kasp.data.glue import encode, get_task, load_split

    df = load_split(get_task(task_name), "dev").iloc[:samples]
    return encode(df, tokenizer, max_seq_length)


def batches(data: Any, batch_size: int, pad_id: int = 0) -> list[dict[str, np.ndarray]]:
    """Consecutive batches of an encoded split as ONNX Runtime feeds: int64 numpy arrays [B, T] (padded to
    each batch's longest row) under the names of :data:`INPUTS`."""
    from kasp.data.glue import collate

    out = []
    for s in range(0, len(data), batch_size):
        b = collate(data, list(range(s, min(s + batch_size, len(data)))), pad_id)
        out.append({k: b[k].numpy() for k in INPUTS})
    return out


@torch.no_grad()
def torch_logits(model: nn.Module, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """PyTorch logits [N, num_labels] (float32) of the batches ``feeds``, model in eval mode."""
    model.eval()
    return np.concatenate([model(**{k: torch.from_numpy(v) for k, v in f.items()}).logits.float().numpy()
                           for f in feeds])


def session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU inference session on ``path`` with ``threads`` intra-op threads (1 inter-op)."""
    _, ort = require_onnx()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_logits(sess, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    """ONNX Runtime logits [N, num_labels] of the batches ``feeds``."""
    return np.concatenate([sess.run(["logits"], f)[0] for f in feeds])


def write_onnx(model: nn.Module, path: str | Path, opset: int = OPSET) -> None:
    """``torch.onnx.export`` (TorchScript-based, ``dynamo=False``) of a sequence classifier to ``path``,
    with dynamic batch and sequence axes; the model is left in eval mode."""
    model.eval()
    wrapper = _Logits(model).eval()  # the exporter restores the wrapper's mode afterwards: keep it eval
    ids = torch.full((2, 8), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUTS} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():  # TorchScript tracer warnings about Python control flow on shapes
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask, torch.zeros_like(ids)), str(path), dynamo=False, input_names=list(INPUTS),
                          output_names=["logits"], dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    model.eval()


def quantize_int8(src: str | Path, dst: str | Path) -> None:
    """ONNX Runtime's dynamic int8 quantisation (``quantize_dynamic``, int8 weights of MatMul/Gemm, activations
    quantised per batch at run time) of the ONNX model ``src`` into ``dst``."""
    import logging

    require_onnx()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its root-logger advice to run shape pre-processing first
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)


def export_onnx(checkpoint: str | Path, out: str | Path, task: str | None = None, samples: int = 64,
                max_seq_length: int = 128, tolerance: float = TOLERANCE, opset: int = OPSET) -> dict[str, Any]:
    """Write a dense ONNX model of a checkpoint into the new directory ``out``, checked against PyTorch.

    Safe writes as :func:`kasp.models.export.export_sparse`: everything goes into a fresh temporary directory
    beside ``out``, renamed to ``out`` only when the check passed; on any error only that temporary
    directory is removed.

    Args:
        checkpoint: a checkpoint directory or a KASP run directory (with a trained classification head).
        task: GLUE task whose dev examples are compared (default: the task the checkpoint records).
        samples: dev examples compared (in batches of 16, padded per batch).
        tolerance: the largest absolute logit difference accepted.

    Returns:
        what ``onnx_check.json`` holds: ``max_abs_diff``, ``dev_examples``, ``task``, ``tolerance``, ``opset``,
        ``file_bytes``, ``exporter`` and the versions.

    Raises:
        KaspError: onnx / onnxruntime missing; ``out`` not a new or empty directory; the checkpoint cannot be
            loaded (no head, pickle, prune leftovers, ...); no task known; logits differ by more than
            ``tolerance`` (nothing is written then).
    """
    onnx, ort = require_onnx()
    from kasp.models.modeling import load_classifier, load_tokenizer, resolve_model

    out = Path(out)
    require_new_dir(out)
    if not samples > 0:
        raise KaspError(f"--samples must be > 0 (dev examples compared), got {samples}")
    path = resolve_model(str(checkpoint))
    model = load_classifier(path)  # refuses a base model, pickle, prune leftovers, NaN
    cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    task = task or cfg.get("kasp_task")
    if not task:
        raise KaspError(f"{path} does not record its task (config.json has no kasp_task): give --task, e.g. --task sst2")
    tok = load_tokenizer(path, model.config)
    data = dev_inputs(tok, task, samples, max_seq_length)
    feeds = batches(data, 16, tok.pad_token_id or 0)
    reference = torch_logits(model, feeds)  # the checkpoint as loaded, before the exporter touches it
    with staged_dir(out, suffix=".kasp-export") as tmp:
        write_onnx(model, tmp / ONNX_FILE, opset)
        onnx.checker.check_model(str(tmp / ONNX_FILE))
        got = onnx_logits(session(tmp / ONNX_FILE), feeds)
        diff = float(np.abs(got - reference).max())
        if not diff <= tolerance:
            raise KaspError(f"the ONNX model's logits differ from PyTorch's by up to {diff:.3g} (> {tolerance:g}) on "
                            f"{len(data)} {task} dev examples; nothing was written")
        copy_side_files(Path(path), tmp)
        check = {"max_abs_diff": diff, "dev_examples": len(data), "task": task, "tolerance": tolerance,
                 "opset": opset, "file_bytes": (tmp / ONNX_FILE).stat().st_size,
                 "exporter": "torch.onnx.export(dynamo=False)", "torch": torch.__version__, "onnx": onnx.__version__,
                 "onnxruntime": ort.__version__, "inputs": list(INPUTS), "output": "logits"}
        (tmp / CHECK_FILE).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
    return check


def latency_inputs(tokenizer, task: str = "sst2", batch_sizes: tuple[int, ...] = (1, 32),
                   max_seq_length: int = 128) -> dict[int, dict[str, np.ndarray]]:
    """One input per batch size, from real dev sentences: batch 1 is the dev example of median length,
    batch B the first B dev examples padded to their longest (the shapes are in the arrays)."""
    data = dev_inputs(tokenizer, task, max(batch_sizes), max_seq_length)
    order = sorted(range(len(data)), key=lambda i: data.lengths[i])
    out = {}
    pad = tokenizer.pad_token_id or 0
    for b in batch_sizes:
        from kasp.data.glue import collate

        idx = [order[len(order) // 2]] if b == 1 else list(range(b))
        c = collate(data, idx, pad)
        out[b] = {k: c[k].numpy() for k in INPUTS}
    return out


def measure_latency(model: nn.Module, onnx_path: str | Path, int8_path: str | Path | None,
                    inputs: dict[int, dict[str, np.ndarray]], threads: int = 1, repeats: int = 10,
                    progress: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """Batch latency of the same model in dense PyTorch, ONNX Runtime and ONNX Runtime int8, side by side.

    The runtimes take turns: each of ``repeats`` rounds times one call of every (runtime, batch size)
    in turn, after 2 untimed warm-up rounds, so that a busy spell of a shared machine falls on all of
    them alike rather than on whichever was being timed then.

    Args:
        model: the PyTorch classifier (eval mode); onnx_path / int8_path: its ONNX export and quantised copy
            (None: no int8 row).
        inputs: batch size -> feeds (:func:`latency_inputs`).
        threads: torch and ONNX Runtime intra-op threads while measuring (torch's setting is restored).

    Returns:
        one row per (runtime, batch size): ``runtime`` ("PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime
        int8"), ``batch``, ``tokens`` (sequence length), ``threads``, ``median_ms`` (with ``min_ms`` and
        ``max_ms``) over ``repeats`` timed calls, ``repeats``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model.eval()

        def pt(feed):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits

        runtimes: list[tuple[str, Callable[[dict[str, np.ndarray]], Any]]] = [("PyTorch fp32", pt)]
        fp32 = session(onnx_path, threads)
        runtimes.append(("ONNX Runtime fp32", lambda feed: fp32.run(["logits"], feed)))
        if int8_path is not None:
            q = session(int8_path, threads)
            runtimes.append(("ONNX Runtime int8", lambda feed: q.run(["logits"], feed)))
        cells = [(name, fn, b, feed) for name, fn in runtimes for b, feed in inputs.items()]
        times: dict[tuple[str, int], list[float]] = {(name, b): [] for name, _, b, _ in cells}
        for r in range(repeats + 2):
            progress(f"round {r + 1} of {repeats + 2} ({threads} thread(s))")
            for name, fn, b, feed in cells:
                t = time.perf_counter()
                fn(feed)
                if r >= 2:
                    times[(name, b)].append((time.perf_counter() - t) * 1e3)
        rows = []
        for name, _, b, feed in cells:
            ts = times[(name, b)]
            rows.append({"runtime": name, "batch": b, "tokens": int(feed["input_ids"].shape[1]), "threads": threads,
                         "median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "repeats": repeats})
    finally:
        torch.set_num_threads(before)
    return rows


def quick_latency(checkpoint: str | Path, task: str = "sst2", threads: int = 1, repeats: int = 5,
                  progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """A short latency measurement of one checkpoint on this machine (the Inspect page's button): export to a
    temporary directory (checked as :func:`export_onnx`), quantise to int8, then :func:`measure_latency` at
    batch 1 and 32 with ``threads`` threads; the temporary files are removed.

    Returns:
        ``rows`` (as :func:`measure_latency`), ``max_abs_diff`` of the export check, ``task``, ``machine``
        (CPU count and platform), ``measured`` (UTC time).

    Raises:
        KaspError: as :func:`export_onnx`.
    """
    import platform

    from kasp.models.modeling import load_classifier, load_tokenizer, resolve_model

    path = resolve_model(str(checkpoint))
    with tempfile.TemporaryDirectory(prefix="kasp-latency-") as tmp:
        progress("exporting to ONNX and checking the logits")
        check = export_onnx(path, Path(tmp) / "onnx", task=task, samples=32)
        progress("quantising to int8")
        quantize_int8(Path(tmp) / "onnx" / ONNX_FILE, Path(tmp) / "int8.onnx")
        model = load_classifier(path)
        tok = load_tokenizer(path, model.config)
        rows = measure_latency(model, Path(tmp) / "onnx" / ONNX_FILE, Path(tmp) / "int8.onnx",
                               latency_inputs(tok, task), threads=threads, repeats=repeats, progress=progress)
    return {"rows": rows, "max_abs_diff": check["max_abs_diff"], "task": task,
            "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, {platform.platform()}",
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
