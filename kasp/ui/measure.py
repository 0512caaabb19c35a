"""What the Inspect, Attention and Predict pages run on a checkpoint: the engine's calls that load a model.

These import torch (and transformers), so only the pages that run a model import this module; everything
else a page takes from the engine is torch-free and listed in :mod:`kasp.ui.engine`. Like that module, this
one only names what the app may use from the layers below ``kasp.ui`` (``tests/ui/test_app_layout.py``).
"""

from __future__ import annotations

from kasp.analysis.inspection import analyse, inspect_warnings
from kasp.analysis.predict import cut_warnings, dev_example, disagreements, prediction_runs, predict_texts
from kasp.analysis.retention import load_for_attention, run_retention, sentence_attention
from kasp.models.checkpoint import fingerprint
from kasp.models.modeling import default_model_path
from kasp.models.onnx_export import quick_latency
from kasp.training.evaluate import evaluate_checkpoint, evaluation_notes

__all__ = [
    # the Inspect page: a checkpoint's analysis, its evaluation, its latency; the default model's folder
    "analyse", "inspect_warnings", "fingerprint", "evaluate_checkpoint", "evaluation_notes", "quick_latency",
    "default_model_path",
    # the Attention page: retention measures and one sentence's attention
    "load_for_attention", "run_retention", "sentence_attention",
    # the Predict page: predictions of checkpoints on sentences
    "cut_warnings", "dev_example", "disagreements", "prediction_runs", "predict_texts",
]
