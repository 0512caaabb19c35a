"""What the app's pages may use from the layers below the app-support layer, torch-free.

The pages only lay out (docs/architecture.md, "The layers"): every ``kasp`` name a page or ``app.py``
uses comes from ``kasp.ui`` (or :mod:`kasp.ground.errors` for ``KaspError`` and ``os_error_message``),
and ``tests/ui/test_app_layout.py`` holds them to that. The app computes its tables and curves in the other
modules of ``kasp.ui``; what a page takes from the engine as it is (the run store, the job queue, a recipe,
the method records, how GLUE writes task names and metrics, the weights' story reader, the model card's
summary, the shipped results' status, a step-time estimate) is listed here, so that this one file shows
everything the app reaches below ``kasp.ui``. Every module imported here is torch-free (the sidebar and
the light pages import this module); the pages that run a model take their calls from
:mod:`kasp.ui.measure` instead.
"""

from __future__ import annotations

from kasp.experiments import jobs
from kasp.experiments.results import shipped_status, shipped_sweep_path
from kasp.ground.resources import asset
from kasp.ground.runs import RunDir, iter_done, measured_sparsity, runs_dir
from kasp.spec.config import ADOPTED, ADOPTED_FROM, load_recipe, make_config
from kasp.spec.methods import REFERENCE, get_method, method_names, shrinks_student
from kasp.spec.metrics import format_metrics, metric_note
from kasp.spec.tasks import format_metric, get_task, metric_axis, metric_heading, metric_label, task_name
from kasp.training.card import CARD_FILE, card_summary
from kasp.training.estimate import estimate_seconds
from kasp.training.weights_story import KINDS, pair_index, read_story, what_to_notice

__all__ = [
    # the job queue (launch, cancel, dismiss, owner, the teacher being fine-tuned) and the run store
    "jobs", "RunDir", "iter_done", "measured_sparsity", "runs_dir",
    # shipped files and shipped results
    "asset", "shipped_status", "shipped_sweep_path",
    # recipes (the defaults, and the ones the recipe study adopted) and the method records
    "load_recipe", "make_config", "ADOPTED", "ADOPTED_FROM", "REFERENCE", "get_method", "method_names", "shrinks_student",
    # GLUE tasks, and how task names and metrics are written
    "get_task", "task_name", "metric_label", "metric_axis", "metric_heading", "format_metric", "format_metrics",
    "metric_note",
    # a step-time estimate before a run (torch-free)
    "estimate_seconds",
    # the model card's summary; the weights' story reader (torch-free)
    "CARD_FILE", "card_summary", "KINDS", "pair_index", "read_story", "what_to_notice",
]
