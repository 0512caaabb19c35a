"""Attention-knowledge retention: how much of a teacher's attention and representations a student kept.

Measures, on task examples (dev by default), with padding never counted:

- per (layer, head), the **pre-softmax attention-score MSE** (the training term of
  :func:`kasp.core.distill.attention_loss`), averaged over real query x real key pairs;
- per (layer, head), the **attention similarity** 1 - JS, where JS is the Jensen-Shannon divergence
  (base 2) between the teacher's and the student's attention distributions of each real query over
  the real keys, averaged over queries. JS is chosen over cosine because it compares probability
  distributions as distributions, is symmetric, handles zeros, and is bounded in [0, 1] with base-2
  logs, so 1 - JS reads as a similarity from 0 (disjoint) to 1 (identical);
- per hidden state (embeddings and every layer), **linear CKA** (Kornblith et al., ICML 2019, eq. 5
  with a linear kernel) between teacher and student token representations of real tokens; CKA is
  invariant to rotation and isotropic scaling, and works across widths;
- overall, the **top-1 agreement** of predictions and the mean **KL(teacher || student)** of the
  prediction distributions (classification tasks; for regression, the MSE between predictions).

Teacher and student of different depths are matched with the method's layer map
(:func:`kasp.core.distill.layer_map`). Pairs whose head counts or tokenizers differ are refused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kasp.data.glue import collate, encode, get_task, input_length, load_split
from kasp.core.distill import ScoreCapture, layer_map
from kasp.ground.errors import KaspError
from kasp.models.modeling import cap_length, load_classifier, load_for_task, load_tokenizer, resolve_model


@dataclass
class Retention:
    """Retention measures. Arrays are nested lists so that the object serialises to JSON.

    score_mse: [L_S][heads]; similarity: [L_S][heads] in [0, 1]; cka: [L_S + 1] in [0, 1] (NaN where
    undefined: a constant representation; None in :meth:`to_dict`);
    agreement in [0, 1] (None for regression); kl in nats (None for regression);
    prediction_mse (regression only); samples: examples used.
    """

    score_mse: list[list[float]]
    similarity: list[list[float]]
    cka: list[float]
    agreement: float | None
    kl: float | None
    prediction_mse: float | None
    samples: int
    teacher: str
    student: str
    task: str
    #: the effective input length and which limit set it (:func:`kasp.data.glue.input_length`); None in old caches
    input_length: dict[str, Any] | None = None

    @property
    def mean_similarity(self) -> float:
        return float(np.mean(self.similarity))

    @property
    def mean_cka(self) -> float:
        """Mean CKA over the layers (index 0, the embedding output, left out) whose CKA is defined;
        NaN when none is (never 0)."""
        layers = [c for c in self.cka[1:] if c == c]
        return float(np.mean(layers)) if layers else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """The measures as JSON-ready values: an undefined CKA (a constant representation) is None,
        with the layers named under ``undefined``."""
        d = asdict(self)
        d["mean_similarity"] = self.mean_similarity
        d["mean_cka"] = None if self.mean_cka != self.mean_cka else self.mean_cka
        d["cka"] = [None if c != c else c for c in self.cka]
        bad = [i for i, c in enumerate(self.cka) if c != c]
        if bad:
            d["undefined"] = {"cka": f"constant representation (teacher or student) at output(s) {bad}"}
        d["mean_score_mse"] = float(np.mean(self.score_mse))
        return d


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same N items: x [N, D1], y [N, D2] -> [0, 1].

    CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y (Kornblith et al. 2019).
    NaN where undefined (0/0: a representation that is the same for every item), never 0.
    """
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    num = (y.T @ x).pow(2).sum()
    den = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(num / den) if den > 0 else float("nan")


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence in bits along the last axis, in [0, 1]; zeros allowed."""
    m = 0.5 * (p + q)
    kl_pm = torch.special.xlogy(p, p).sum(-1) - torch.special.xlogy(p, m).sum(-1)
    kl_qm = torch.special.xlogy(q, q).sum(-1) - torch.special.xlogy(q, m).sum(-1)
    return (0.5 * (kl_pm + kl_qm) / np.log(2)).clamp(0.0, 1.0)


def _check_pair(teacher, student, tok_t, tok_s) -> None:
    if teacher.config.num_attention_heads != student.config.num_attention_heads:
        raise KaspError(f"head counts differ (teacher {teacher.config.num_attention_heads}, student "
                        f"{student.config.num_attention_heads}): attention maps cannot be compared head by head")
    if tok_t.get_vocab() != tok_s.get_vocab():
        raise KaspError("teacher and student use different tokenizers (vocabularies differ): their attention maps "
                        "are over different tokens and cannot be compared")
    if teacher.config.num_labels != student.config.num_labels:
        raise KaspError(f"teacher has {teacher.config.num_labels} outputs and student {student.config.num_labels}")


@torch.no_grad()
def compare(teacher_path: str, student_path: str, task_name: str, samples: int = 256, batch_size: int = 32,
            max_seq_length: int = 128, split: str = "dev") -> Retention:
    """Retention of ``student`` with respect to ``teacher`` on the first ``samples`` examples of ``split``.

    Raises:
        KaspError: unloadable checkpoints, different head counts or tokenizers, depth not a multiple.
    """
    task = get_task(task_name)
    for what, v in (("samples", samples), ("batch size", batch_size), ("max sequence length", max_seq_length)):
        if not isinstance(v, int) or v < 1:
            raise KaspError(f"the {what} must be a positive whole number, got {v!r}")
    tp, sp = resolve_model(teacher_path), resolve_model(student_path)
    teacher, tok_t, _ = load_for_task(tp, task)  # fit for the task, outputs in KASP's class order
    student, tok_s, _ = load_for_task(sp, task)
    _check_pair(teacher, student, tok_t, tok_s)
    cap_length(tok_t, student.config)  # inputs are cut at the shorter of the two position (and type) tables
    amap, hmap = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers)
    df = load_split(task, split).head(samples)
    data = encode(df, tok_t, max_seq_length)
    length = input_length(tok_t, max_seq_length)  # said with the measures (a short tokenizer cuts silently otherwise)
    H = student.config.num_attention_heads
    L = len(amap)
    mse_sum = torch.zeros(L, H, dtype=torch.float64)
    pair_count = torch.zeros(L, H, dtype=torch.float64)
    js_sum = torch.zeros(L, H, dtype=torch.float64)
    row_count = 0.0
    hid_t: list[list[torch.Tensor]] = [[] for _ in hmap]
    hid_s: list[list[torch.Tensor]] = [[] for _ in hmap]
    logits_t, logits_s = [], []
    cap_t, cap_s = ScoreCapture(teacher), ScoreCapture(student)
    try:
        for start in range(0, len(data), batch_size):
            idx = list(range(start, min(start + batch_size, len(data))))
            batch = collate(data, idx, tok_t.pad_token_id or 0)
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            out_t = teacher(**inputs, output_hidden_states=True)
            out_s = student(**inputs, output_hidden_states=True)
            real = batch["attention_mask"].bool()  # (B, T)
            pairs = (real[:, None, :, None] & real[:, None, None, :]).double()  # (B, 1, T, T)
            st_, tt_ = cap_s.scores(batch["attention_mask"]), cap_t.scores(batch["attention_mask"])
            for i, j in enumerate(amap):
                s, t = st_[i].double(), tt_[j].double()  # (B, nh, T, T)
                mse_sum[i] += ((s - t) ** 2 * pairs).sum((0, 2, 3))
                pair_count[i] += pairs.sum((0, 2, 3)).expand(H)
                neg = ~real[:, None, None, :]
                ps = torch.softmax(s.masked_fill(neg, float("-inf")), -1)
                pt = torch.softmax(t.masked_fill(neg, float("-inf")), -1)
                js = js_divergence(pt, ps) * real[:, None, :].double()  # (B, nh, T), padded queries zeroed
                js_sum[i] += js.sum((0, 2))
            row_count += float(real.sum())
            for k, j in enumerate(hmap):
                hid_s[k].append(out_s.hidden_states[k][real])
                hid_t[k].append(out_t.hidden_states[j][real])
            logits_t.append(out_t.logits.float())
            logits_s.append(out_s.logits.float())
    finally:
        cap_t.remove()
        cap_s.remove()
    zt, zs = torch.cat(logits_t), torch.cat(logits_s)
    if task.is_regression:
        agreement, kl, pmse = None, None, float(F.mse_loss(zs, zt))
    else:
        agreement = float((zt.argmax(-1) == zs.argmax(-1)).double().mean())
        kl = float(F.kl_div(F.log_softmax(zs, -1), F.log_softmax(zt, -1), log_target=True, reduction="batchmean"))
        pmse = None
    return Retention(
        score_mse=(mse_sum / pair_count).tolist(), similarity=(1.0 - js_sum / row_count).tolist(),
        cka=[linear_cka(torch.cat(a), torch.cat(b)) for a, b in zip(hid_t, hid_s)],
        agreement=agreement, kl=kl, prediction_mse=pmse, samples=len(data), teacher=tp, student=sp, task=task.name,
        input_length=length)


def run_retention(run_dir: str | Path, samples: int = 256, refresh: bool = False) -> dict[str, Any]:
    """Retention of a finished KASP prune run against its own teacher, cached in ``retention.json``.

    Raises:
        KaspError: the run is not a finished prune run, or its teacher is gone.
    """
    from kasp.ground.runs import RunDir, json_problem

    run = RunDir(Path(run_dir))
    rep = run.report()
    if run.state() != "done" or rep.get("kind") != "prune":
        raise KaspError(f"{run.id} is not a finished prune run")
    cache = run.path / "retention.json"
    if not refresh:
        cached, _ = json_problem(cache)  # a damaged cache (any kind) is measured again and replaced below
        if isinstance(cached, dict) and cached.get("samples_requested") == samples:
            return cached
    teacher = (rep.get("teacher") or {}).get("path")
    if not teacher or not Path(teacher).is_dir():
        raise KaspError(f"the teacher of {run.id} ({teacher}) is no longer on disk")
    res = compare(teacher, str(run.checkpoint), rep["task"], samples=samples).to_dict()
    res["samples_requested"] = samples
    write_cache(cache, res)
    return res


def write_cache(path: Path, obj: Any) -> bool:
    """Write a cache file (JSON, atomically) on a best-effort basis: False, with one line on stderr,
    when the store cannot take it (read-only, disk full, a directory in its place); the measurement is
    still returned to the caller, only not kept."""
    import shutil
    import sys

    from kasp.ground.runs import atomic_write_json

    try:
        if path.is_dir():
            shutil.rmtree(path)  # a damaged cache: a directory where the file belongs
        atomic_write_json(path, obj)
        return True
    except OSError as e:
        print(f"kasp: warning: the cache {path} was not written ({e.strerror or type(e).__name__}); "
              "the result is shown but will be measured again next time", file=sys.stderr, flush=True)
        return False


def load_for_attention(model_path: str):
    """(model in eval mode, tokenizer) of a checkpoint, for :func:`sentence_attention`."""
    path = resolve_model(model_path)
    return load_classifier(path).eval(), load_tokenizer(path)


@torch.no_grad()
def sentence_attention(model, tokenizer, text: str, text_b: str | None = None,
                       max_seq_length: int = 64) -> tuple[list[str], list[torch.Tensor]]:
    """Tokens and post-softmax attention maps (one [1, heads, T, T] tensor per layer) for one input.

    The maps are softmax(QK^T / sqrt(d_h)) recomputed from the query/key projections, so they do
    not depend on the model's attention implementation.
    """
    limit = getattr(tokenizer, "model_max_length", None)  # capped to the position table by load_tokenizer
    max_len = min(max_seq_length, limit) if isinstance(limit, int) and limit > 0 else max_seq_length
    enc = tokenizer(text, text_b, truncation=True, max_length=max_len, return_tensors="pt")
    n_types = getattr(tokenizer, "kasp_type_vocab_size", None)  # see kasp.models.modeling.cap_length
    if "token_type_ids" in enc and isinstance(n_types, int) and n_types > 0:
        enc["token_type_ids"] = enc["token_type_ids"].clamp(max=n_types - 1)
    cap = ScoreCapture(model)
    try:
        model(**enc)
        maps = [torch.softmax(s, -1) for s in cap.scores(enc["attention_mask"])]
    finally:
        cap.remove()
    return tokenizer.convert_ids_to_tokens(enc["input_ids"][0]), maps
