"""Training-data augmentation for task distillation (``--augment N``), offline.

Two sources, both seeded and cached on disk so that a task's augmented set is built once:

``words`` (the default): TinyBERT's word replacement (Jiao et al., "TinyBERT", Findings of EMNLP
2020, section 3.1 and Algorithm 1; its data_augmentation.py). Every word of a sentence that is one
whole word-piece, alphabetic and not a stop word gets K candidate replacements; each of N tries
replaces each such word, with probability p_t, by a candidate drawn at random, and keeps the
sentence if it is new. TinyBERT draws candidates for single-piece words from BERT's masked-language
model and for the others from GloVe neighbours. No masked-language model or GloVe ships here, so
the candidates are the K nearest whole-word vocabulary entries to the word in the pre-trained
model's own input word-embedding space (cosine similarity), the stand-in for TinyBERT's GloVe step;
words of several pieces stay as they are. TinyBERT's published settings: p_t = 0.4, K = 15, and
N = 20 copies for SST-2 and QNLI, 30 for CoLA, MRPC, STS-B and RTE, 10 for MNLI and QQP
(:data:`TINYBERT_N`). Pair tasks augment each sentence of a pair separately, as TinyBERT does.
An augmented copy keeps its example's gold label; KASP's distillation terms read the teacher.

``glue``: sentences (single-sentence tasks) or sentence pairs (pair tasks) of the other shipped
GLUE tasks' training sets, N per training example, sampled without replacement as far as they go.
They carry no gold label (class -1, score NaN) and so are for distillation only: the teacher's
soft predictions are the targets (``KaspLoss`` takes the teacher's prediction for an STS-B row
without a gold score).

Cache: ``$KASP_CACHE_DIR/augment`` (default ``~/.cache/kasp/augment``), one JSON-lines file per
(model, task, source, N, seed, train selection), written atomically; never pickled.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from kasp.spec.config import RunConfig
from kasp.data.glue import TASKS, Encoded, encode, get_task, load_split, shipped_splits
from kasp.ground.errors import KaspError

#: TinyBERT's replacement probability p_t and candidate count K (data_augmentation.py: --p 0.4, --M 15)
TINYBERT_P = 0.4
TINYBERT_K = 15
#: TinyBERT's copies per example N by task (data_augmentation.py, default_params)
TINYBERT_N = {"cola": 30, "sst2": 20, "mrpc": 30, "stsb": 30, "qnli": 20, "rte": 30, "mnli": 10, "qqp": 10}
_VERSION = 1  # bump when the algorithm changes, so old caches are not reused


def cache_dir() -> Path:
    """``$KASP_CACHE_DIR/augment``, default ``~/.cache/kasp/augment``."""
    from kasp.ground import settings

    return settings.get().cache_dir / "augment"


def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def _is_whole_word(token: str) -> bool:
    return token.isascii() and token.isalpha()


def neighbours(embeddings: torch.Tensor, vocab: dict[str, int], words: Sequence[str], k: int = TINYBERT_K,
               chunk: int = 2048) -> dict[str, list[str]]:
    """The ``k`` nearest whole-word vocabulary entries to each word, by cosine similarity of input embeddings.

    Args:
        embeddings: [V, H] the model's input word-embedding matrix.
        vocab: token -> row of ``embeddings``.
        words: the words to look up (each must be in ``vocab``).
        k: candidates per word.
    Returns:
        word -> up to ``k`` candidate words, most similar first, never the word itself.
    """
    cands = [t for t in vocab if _is_whole_word(t)]
    if not words or not cands:
        return {}
    e = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1)  # (V, H)
    c = e[torch.tensor([vocab[t] for t in cands])]  # (C, H)
    out: dict[str, list[str]] = {}
    words = list(words)
    for s in range(0, len(words), chunk):
        part = words[s:s + chunk]
        sims = e[torch.tensor([vocab[w] for w in part])] @ c.T  # (W, C)
        top = torch.topk(sims, min(k + 1, len(cands)), dim=-1).indices.tolist()
        for w, row in zip(part, top):
            out[w] = [cands[j] for j in row if cands[j] != w][:k]
    return out


class WordReplacer:
    """TinyBERT-style word replacement with embedding-space candidates (see the module docstring).

    Args:
        tokenizer: the model's (fast) tokenizer; its pre-tokenizer splits words and punctuation.
        embeddings: [V, H] the model's input word embeddings.
        p: replacement probability p_t per eligible word and try.
        k: candidates per word.
    """

    def __init__(self, tokenizer, embeddings: torch.Tensor, p: float = TINYBERT_P, k: int = TINYBERT_K):
        self.pre = tokenizer.backend_tokenizer.pre_tokenizer
        self.vocab = tokenizer.get_vocab()
        self.lower = bool(getattr(tokenizer, "do_lower_case", False))
        self.embeddings = embeddings
        self.p, self.k = p, k
        self.stop = _stop_words()
        self.candidates: dict[str, list[str]] = {}

    def _key(self, word: str) -> str:
        return word.lower() if self.lower else word

    def words(self, text: str) -> list[tuple[str, tuple[int, int]]]:
        """The pre-tokenizer's words of ``text`` with their character offsets."""
        return self.pre.pre_tokenize_str(text)

    def eligible(self, word: str) -> bool:
        """Alphabetic, not a stop word, and one whole word-piece of the vocabulary."""
        key = self._key(word)
        return _is_whole_word(word) and word.lower() not in self.stop and key in self.vocab

    def prepare(self, texts: Sequence[str]) -> None:
        """Look up the candidates of every eligible word of ``texts`` (one batched similarity search)."""
        todo = sorted({self._key(w) for t in texts for w, _ in self.words(t) if self.eligible(w)} - set(self.candidates))
        self.candidates.update(neighbours(self.embeddings, self.vocab, todo, self.k))

    def augment(self, text: str, n: int, rng: random.Random) -> list[str]:
        """Up to ``n`` distinct new versions of ``text`` (fewer when tries repeat; none without eligible words).

        Each try replaces each eligible word, with probability ``p``, by one of its candidates drawn
        uniformly (TinyBERT draws the candidate, then the coin); the text between words is kept.
        """
        spans = [(w, off) for w, off in self.words(text)
                 if self.eligible(w) and self.candidates.get(self._key(w))]
        if not spans:
            return []
        seen, out = {text}, []
        for _ in range(n):
            pieces, last = [], 0
            for w, (a, b) in spans:
                cand = rng.choice(self.candidates[self._key(w)])
                if rng.random() < self.p:
                    cand = cand.capitalize() if w[:1].isupper() else cand
                    pieces += [text[last:a], cand]
                    last = b
            new = "".join(pieces) + text[last:]
            if new not in seen:
                seen.add(new)
                out.append(new)
        return out


def word_augment(df: pd.DataFrame, replacer: WordReplacer, n: int, seed: int) -> pd.DataFrame:
    """TinyBERT word replacement of a split: up to ``n`` copies per example and per sentence of a pair.

    Args:
        df: columns text_a, text_b (None for single-sentence tasks), label.
    Returns:
        the new rows only (text_a, text_b, label, source_row: the index of the example they come from).
    """
    rng = random.Random(seed)
    pair = df["text_b"].notna().any()
    replacer.prepare(df["text_a"].tolist() + (df["text_b"].tolist() if pair else []))
    rows = []
    for i, (a, b, y) in enumerate(zip(df["text_a"], df["text_b"], df["label"])):
        for new in replacer.augment(a, n, rng):
            rows.append((new, b, y, i))
        if pair:
            for new in replacer.augment(b, n, rng):
                rows.append((a, new, y, i))
    return pd.DataFrame(rows, columns=["text_a", "text_b", "label", "source_row"])


def glue_sentences(task_name: str, n_rows: int, seed: int, data_dir: str | Path | None = None) -> pd.DataFrame:
    """``n_rows`` unlabelled inputs from the other shipped GLUE tasks' training sets (see module docstring).

    Returns:
        columns text_a, text_b, label (-1, or NaN for regression), source_task.
    Raises:
        KaspError: when no other shipped task has inputs of the needed shape.
    """
    task = get_task(task_name)
    pair = task.text_b is not None
    pool = []
    for name, splits in shipped_splits(data_dir).items():
        other = TASKS[name]
        if name == task.name or "train" not in splits:
            continue
        df = load_split(other, "train", data_dir)
        if pair and other.text_b:
            pool += [(a, b, name) for a, b in zip(df["text_a"], df["text_b"])]
        elif not pair:
            pool += [(a, None, name) for a in df["text_a"]]
            if other.text_b:
                pool += [(b, None, name) for b in df["text_b"]]
    if not pool:
        raise KaspError(f"--augment-source glue: no other shipped GLUE task has {'sentence pairs' if pair else 'sentences'}")
    rng = random.Random(seed)
    picked = rng.sample(pool, min(n_rows, len(pool)))
    label = float("nan") if task.is_regression else -1
    return pd.DataFrame([(a, b, label, src) for a, b, src in picked], columns=["text_a", "text_b", "label", "source_task"])


def _train_frame(cfg: RunConfig) -> pd.DataFrame:
    """The run's training examples, selected as :func:`kasp.data.glue.load_task_data` selects them."""
    from kasp.data.glue import train_frames

    return train_frames(cfg)[0]


def cache_key(cfg: RunConfig, model_path: str, n_train: int) -> str:
    """Name of the cache file for a recipe's augmented set: task, source, N, seed and a digest of the rest."""
    ident = {"model": str(Path(model_path).resolve()) if Path(model_path).exists() else model_path,
             "p": TINYBERT_P, "k": TINYBERT_K, "max_train_samples": cfg.max_train_samples,
             "n_train": n_train, "version": _VERSION}
    digest = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return f"{cfg.task}-{cfg.augment_source}-n{cfg.augment}-seed{cfg.seed}-{digest}"


def augmented_frame(cfg: RunConfig, tokenizer, model_path: str) -> tuple[pd.DataFrame, Path, bool]:
    """The augmented rows of a recipe, from the cache or built (and cached).

    Returns:
        (rows: text_a, text_b, label, ...; the cache file; whether it came from the cache).
    """
    train_df = _train_frame(cfg)
    path = cache_dir() / f"{cache_key(cfg, model_path, len(train_df))}.jsonl"
    if path.is_file():
        df = pd.read_json(path, lines=True, dtype=False)
        df["text_b"] = df["text_b"].where(df["text_b"].notna(), None)
        return df, path, True
    if cfg.augment_source == "words":
        from kasp.models.modeling import load_classifier

        emb = load_classifier(model_path, num_labels=2).get_input_embeddings().weight
        df = word_augment(train_df, WordReplacer(tokenizer, emb), cfg.augment, cfg.seed)
    else:
        df = glue_sentences(cfg.task, cfg.augment * len(train_df), cfg.seed)
    from kasp.ground.runs import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_json(orient="records", lines=True, force_ascii=False))
    return df, path, False


def augmented_examples(cfg: RunConfig, train: Encoded, tokenizer, model_path: str) -> Encoded:
    """``train`` followed by the recipe's augmented rows, tokenised the same way.

    Raises:
        KaspError: see :func:`glue_sentences`.
    """
    df, _, _ = augmented_frame(cfg, tokenizer, model_path)
    if df.empty:
        return train
    task = get_task(cfg.task)
    df = df.assign(label=df["label"].astype("float32" if task.is_regression else "int64"))
    extra = encode(df, tokenizer, cfg.max_seq_length)
    return Encoded(train.input_ids + extra.input_ids, train.token_type_ids + extra.token_type_ids,
                   torch.cat([train.labels, extra.labels.to(train.labels.dtype)]))
