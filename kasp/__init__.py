"""KASP: knowledge-aware sparse pruning of BERT-family models.

Implements the SparseBERT method of Xu, Yen, Zhao and Xiao, "Rethinking Network Pruning - under the
Pre-train and Fine-tune Paradigm", NAACL-HLT 2021 (doi 10.18653/v1/2021.naacl-main.188): a
pre-trained student is pruned with unstructured per-matrix magnitude masks on a cubic schedule while
a fine-tuned teacher is distilled into it (pre-softmax attention scores, hidden states, logits).

The package is the engine only: plain functions and a small training loop, no Streamlit imports.

The public API (``__all__``) is importable from here; ``import kasp`` itself stays cheap: each name
is imported from its module when first used (module ``__getattr__``), so torch and transformers load
only then. :data:`_API` is the one table of where each name lives.

- ``kasp.RunConfig``, ``kasp.make_config``: a run's recipe (``make_config`` fills in the defaults
  ``kasp prune`` and ``kasp finetune`` use).
- ``kasp.train(cfg)``: one fine-tune or prune run end to end (what the CLI runs).
- ``kasp.KaspTrainer``, ``kasp.KaspPruningCallback``, ``kasp.KeepSparsityCallback``,
  ``kasp.EncodedDataset``: KASP inside the Hugging Face ``Trainer``.
- ``kasp.load_sparse(path, task)``: a pruned (or any fine-tuned) checkpoint, ready to score a task.
- ``kasp.load_classifier``, ``kasp.load_task_data``: a model and a task's tokenised splits.
- ``kasp.KaspLoss``, ``kasp.MagnitudePruner``, ``kasp.cubic_sparsity``: the method's parts.
- ``kasp.KaspError``: every error a user can fix; ``kasp.__version__``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kasp.ground.errors import KaspError

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use)
_API: dict[str, str] = {
    "RunConfig": "kasp.spec.config",
    "make_config": "kasp.spec.config",
    "train": "kasp.training.train",
    "KaspTrainer": "kasp.training.hf_trainer",
    "KaspPruningCallback": "kasp.training.hf_trainer",
    "KeepSparsityCallback": "kasp.training.hf_trainer",
    "EncodedDataset": "kasp.training.hf_trainer",
    "load_classifier": "kasp.models.modeling",
    "load_task_data": "kasp.data.glue",
    "KaspLoss": "kasp.core.distill",
    "MagnitudePruner": "kasp.core.masks",
    "cubic_sparsity": "kasp.spec.schedule",
}

__all__ = ["KaspError", "__version__", "load_sparse", *_API]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from kasp.spec.config import RunConfig, make_config
    from kasp.data.glue import load_task_data
    from kasp.core.distill import KaspLoss
    from kasp.training.hf_trainer import EncodedDataset, KaspPruningCallback, KaspTrainer, KeepSparsityCallback
    from kasp.core.masks import MagnitudePruner
    from kasp.models.modeling import load_classifier
    from kasp.spec.schedule import cubic_sparsity
    from kasp.training.train import train


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'kasp' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_sparse(path: str | Path, task: Any) -> tuple[Any, Any]:
    """Load a pruned (or any fine-tuned) checkpoint to score a GLUE task, through safetensors only.

    Args:
        path: a KASP run directory (``runs/<id>``: its ``checkpoint/``), a checkpoint directory
            (``save_pretrained`` output with ``*.safetensors``), or a sparse export
            (``kasp export --format sparse``: ``sparse.safetensors``, bitmask + values).
        task: a GLUE task name ("sst2", "mrpc", ...) or a :class:`kasp.spec.tasks.GlueTask`.

    Returns:
        (model, tokenizer): a transformers sequence-classification model in eval mode, float32,
        with its outputs in KASP's class order for ``task`` and its zeros as stored (dense
        tensors), and its tokenizer.

    Raises:
        KaspError: the checks of :func:`kasp.models.modeling.load_for_task` (a checkpoint or run) or of
            :func:`kasp.models.export.load_sparse` (a sparse export): missing or pickle-only weights,
            corrupt safetensors, a head unfit for the task, an unknown task, ...
    """
    from kasp.models.export import SPARSE_FILE, load_sparse_model
    from kasp.models.modeling import align_labels, load_for_task, load_tokenizer, resolve_model
    from kasp.spec.tasks import get_task

    glue = get_task(task) if isinstance(task, str) else task
    where = resolve_model(str(path))
    if (Path(where) / SPARSE_FILE).is_file():
        model = load_sparse_model(where)
        align_labels(model, glue, where)
        return model.eval(), load_tokenizer(where, model.config)
    model, tokenizer, _ = load_for_task(where, glue)
    return model, tokenizer
