"""GLUE tasks: the task table, TSV loading (:mod:`kasp.data.files`, re-exported), tokenisation and length-bucketed
batches.

The project ships its own copy of the GLUE files it needs in ``data/glue/`` (provenance and
checksums in ``data/README.md``). Nothing downloads by default; tasks that are not shipped (MNLI,
QQP, QNLI train) load through ``datasets`` from the Hub when a network is available.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import pandas as pd
import torch

from kasp.ground.errors import KaspError
from kasp.ground.resources import glue_dir
from kasp.spec.tasks import TASKS, GlueTask, get_task  # noqa: F401  (the task table, re-exported)

if TYPE_CHECKING:
    from kasp.spec.config import RunConfig



def __getattr__(name: str) -> Any:
    """``DATA_DIR``: the GLUE folder read now (:func:`kasp.ground.resources.glue_dir`: the shipped one, repository
    data/glue or package kasp.glue, unless ``$KASP_DATA_DIR`` names another); never frozen at import."""
    if name == "DATA_DIR":
        return glue_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from kasp.data.files import (  # noqa: E402,F401  (torch-free reading, re-exported for the engine's callers)
    decode_text, load_split, read_task_tsv, read_user_tsv, shipped_splits)


@dataclass
class Encoded:
    """A tokenised split: ``input_ids`` / ``token_type_ids`` are unpadded lists, one per example."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]]
    labels: torch.Tensor  # [N] int64 or float32

    def __len__(self) -> int:
        return len(self.input_ids)

    @functools.cached_property
    def lengths(self) -> list[int]:
        """Tokens per example, computed once (a split is never changed after encoding): read per
        example, a list rebuilt on every access made budget calibration quadratic in the split size."""
        return [len(x) for x in self.input_ids]


def encode(df: pd.DataFrame, tokenizer, max_seq_length: int) -> Encoded:
    """Tokenise a split (no padding; batches are padded by :func:`collate`).

    Inputs are cut at ``max_seq_length`` tokens or at the tokenizer's ``model_max_length``, which
    :func:`kasp.models.modeling.load_tokenizer` caps to the model's position table, whichever is smaller;
    segment ids are kept within the model's token-type table (:func:`kasp.models.modeling.cap_length`).
    """
    a = df["text_a"].tolist()
    b = df["text_b"].tolist() if df["text_b"].notna().any() else None
    limit = getattr(tokenizer, "model_max_length", None)
    max_len = min(max_seq_length, limit) if isinstance(limit, int) and limit > 0 else max_seq_length
    enc = tokenizer(a, b, truncation=True, max_length=max_len, padding=False,
                    return_token_type_ids=True, return_attention_mask=False)
    labels = torch.tensor(df["label"].to_numpy())
    types = enc["token_type_ids"]
    n_types = getattr(tokenizer, "kasp_type_vocab_size", None)  # set by kasp.models.modeling.cap_length
    if isinstance(n_types, int) and n_types > 0:
        types = [[min(t, n_types - 1) for t in row] for row in types]
    return Encoded(enc["input_ids"], types, labels)


def train_frames(cfg: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The training examples of a run and its held-out selection slice (None without ``cfg.holdout``).

    The slice is the first ``cfg.holdout`` rows of the training split in a permutation seeded by
    ``cfg.holdout_seed`` (not by ``cfg.seed``: runs of every seed hold out the same examples); it is
    removed from training. ``cfg.max_train_samples`` then takes a seeded random subset
    (``random_state=cfg.seed``) of what is left.

    Raises:
        KaspError: unknown task, a split that is neither shipped nor loadable, or a slice that would
            leave no training example.
    """
    task = get_task(cfg.task)
    df = load_split(task, "train")
    held = None
    if cfg.holdout:
        if cfg.holdout >= len(df):
            raise KaspError(f"--holdout {cfg.holdout} would leave no training example: {task.name} has {len(df)}; "
                            "hold out fewer (about the size of the dev set)")
        order = df.sample(frac=1.0, random_state=cfg.holdout_seed).index
        held = df.loc[order[:cfg.holdout]].reset_index(drop=True)
        df = df.drop(index=order[:cfg.holdout])
    if cfg.max_train_samples:
        df = df.sample(frac=1.0, random_state=cfg.seed).head(cfg.max_train_samples)
    return df.reset_index(drop=True), held


_NO_LIMIT = 1_000_000  # transformers writes int(1e30) for "no model_max_length"
LIMIT_NAMES = {"max_seq_length": "--max-seq-length", "tokenizer": "the tokenizer's model_max_length",
               "position_table": "the model's position table (max_position_embeddings)"}


def input_length(tokenizer, max_seq_length: int) -> dict[str, Any]:
    """The effective input length of :func:`encode` (tokens, special tokens included) and which limit set it.

    The length is the smallest of ``max_seq_length`` (the task's or the run's ``--max-seq-length``),
    the tokenizer's own ``model_max_length`` and the model's position table (both recorded by
    :func:`kasp.models.modeling.cap_length`; a limit that is unset or unknown is None).

    Returns:
        {"tokens": int, "limited_by": list of the limits equal to it, by key ("max_seq_length",
        "tokenizer", "position_table"), "max_seq_length": int, "tokenizer": int | None,
        "position_table": int | None, "cut": bool (True when below ``max_seq_length``)}.
    """
    own = getattr(tokenizer, "kasp_tokenizer_max_length", getattr(tokenizer, "model_max_length", None))
    limits = {"max_seq_length": int(max_seq_length),
              "tokenizer": int(own) if isinstance(own, int) and 0 < own < _NO_LIMIT else None,
              "position_table": getattr(tokenizer, "kasp_position_limit", None)}
    capped = getattr(tokenizer, "model_max_length", None)  # already min(tokenizer, position table)
    if limits["position_table"] is None and isinstance(capped, int) and 0 < capped < _NO_LIMIT and capped != limits["tokenizer"]:
        limits["position_table"] = capped
    tokens = min(v for v in limits.values() if v is not None)
    return {"tokens": tokens, "limited_by": [k for k, v in limits.items() if v == tokens], **limits,
            "cut": tokens < int(max_seq_length)}


def input_length_text(info: dict[str, Any]) -> str:
    """One line for :func:`input_length`'s result: "inputs cut at 128 tokens (--max-seq-length)" or
    "inputs cut at 8 tokens: the tokenizer's model_max_length (8) is below --max-seq-length 128"."""
    won = " and ".join(LIMIT_NAMES[k] for k in info["limited_by"] if k != "max_seq_length") or LIMIT_NAMES["max_seq_length"]
    if not info.get("cut"):
        return f"inputs cut at {info['tokens']} tokens ({LIMIT_NAMES['max_seq_length']})"
    return (f"inputs cut at {info['tokens']} tokens: {won} ({info['tokens']}) is below "
            f"--max-seq-length {info['max_seq_length']}")


def length_warning(info: dict[str, Any]) -> str | None:
    """A warning when the effective input length is below the configured ``--max-seq-length`` (a
    smaller tokenizer or position-table limit won), naming the limit and the fix; else None."""
    if not info.get("cut"):
        return None
    return (f"warning: {input_length_text(info)}; every longer input is truncated there. If that is not meant, "
            "fix the tokenizer's model_max_length (tokenizer_config.json) or lower --max-seq-length to make it explicit.")


def load_task_data(cfg: RunConfig, tokenizer) -> tuple[Encoded, Encoded]:
    """Tokenised train and dev splits of ``cfg.task`` for a run.

    Training examples as :func:`train_frames` selects them (the held-out slice removed,
    ``cfg.max_train_samples``); ``cfg.max_eval_samples`` (the first N dev examples) and
    ``cfg.max_seq_length`` (truncation).

    Raises:
        KaspError: unknown task, or a split that is neither shipped nor loadable from the Hub.
    """
    task = get_task(cfg.task)
    train_df, _ = train_frames(cfg)
    dev_df = load_split(task, "dev")
    if cfg.max_eval_samples:
        dev_df = dev_df.head(cfg.max_eval_samples)
    return encode(train_df, tokenizer, cfg.max_seq_length), encode(dev_df, tokenizer, cfg.max_seq_length)


def load_holdout(cfg: RunConfig, tokenizer) -> Encoded | None:
    """The tokenised held-out selection slice of a run (:func:`train_frames`), or None without one."""
    _, held = train_frames(cfg)
    return None if held is None else encode(held, tokenizer, cfg.max_seq_length)


class IndexDataset(torch.utils.data.Dataset):
    """The indices 0 .. n-1 of an encoded split as a map-style dataset: a batch sampler picks indices and
    :func:`collate` builds the padded batch from the split (the training loop and the Trainer route)."""

    def __init__(self, n: int):
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def collate(data: Encoded, indices: Sequence[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest row.

    Returns:
        input_ids, token_type_ids, attention_mask: [B, T] int64 (mask 1 = real token); labels: [B].
    """
    T = max(len(data.input_ids[i]) for i in indices)
    B = len(indices)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    tt = torch.zeros((B, T), dtype=torch.long)
    am = torch.zeros((B, T), dtype=torch.long)
    for r, i in enumerate(indices):
        n = len(data.input_ids[i])
        ids[r, :n] = torch.tensor(data.input_ids[i])
        tt[r, :n] = torch.tensor(data.token_type_ids[i])
        am[r, :n] = 1
    return {"input_ids": ids, "token_type_ids": tt, "attention_mask": am, "labels": data.labels[list(indices)]}


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of similar length, for dynamic padding on CPU (about 3x fewer padded tokens on SST-2).

    Each epoch: shuffle all indices (seeded by ``seed + epoch``), sort by length inside chunks of
    ``chunk_batches`` batches, cut into batches, shuffle the batch order. With ``bucket=False`` it
    yields plain shuffled batches. The last partial batch is kept.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 42, chunk_batches: int = 50,
                 bucket: bool = True):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.chunk = chunk_batches * batch_size
        self.bucket = bucket
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        if self.bucket:
            idx = [i for s in range(0, len(idx), self.chunk)
                   for i in sorted(idx[s:s + self.chunk], key=self.lengths.__getitem__)]
        batches = [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        if self.bucket:
            rng.shuffle(batches)
        return iter(batches)


def eval_batches(data: Encoded, batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length (deterministic; order is restored by the caller)."""
    order = sorted(range(len(data)), key=lambda i: len(data.input_ids[i]))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
