"""The GLUE task table and how each task's name and metric are written (no torch, no pandas).

``GlueTask`` says where a task's files are, which columns hold text and label, how many classes it
has and which metric GLUE reports for it (Wang et al. 2019, "GLUE: A Multi-Task Benchmark and
Analysis Platform for Natural Language Understanding", ICLR, table 1). The app's headings, axes and
figures name tasks and metrics through the functions here, so that :mod:`kasp.ui.figures` needs no
torch. Reading the files is :mod:`kasp.data.glue`'s job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kasp.ground.errors import KaspError
from kasp.spec.metrics import METRIC_NAMES


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files are, which columns hold text and label, and its metric.

    ``columns`` is None when the file has a header row; otherwise it names the header-less columns.
    ``label_names`` lists string labels in class-id order (None: labels are integers already);
    ``num_labels`` is 1 for regression (STS-B).
    """

    name: str
    folder: str
    text_a: str
    text_b: str | None
    label: str
    num_labels: int
    metric: str  # kind passed to kasp.spec.metrics.glue_metrics
    main_metric: str
    columns: tuple[str, ...] | None = None
    label_names: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    dev_file: str = "dev.tsv"
    hub_text: tuple[str, str | None] = ("sentence", None)
    hub_dev: str = "validation"

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """Names of the classes in KASP's id order (None for regression), as Hugging Face's ``glue``
        dataset names them (e.g. SST-2: negative = 0, positive = 1; RTE: entailment = 0). A checkpoint
        whose ``config.id2label`` uses these names in another order is re-mapped to this order by
        :func:`kasp.models.modeling.align_labels`."""
        return None if self.is_regression else (self.label_names or _CLASS_NAMES[self.name])

    @property
    def shown_class_names(self) -> tuple[str, ...] | None:
        """:attr:`class_names` as the app's tables write them, "_" as a space ("not equivalent",
        "not entailment"); None for regression."""
        names = self.class_names
        return None if names is None else tuple(n.replace("_", " ") for n in names)


_NLI = ("entailment", "not_entailment")
TASKS: dict[str, GlueTask] = {
    "cola": GlueTask("cola", "CoLA", "sentence", None, "label", 2, "mcc", "mcc",
                     columns=("source", "label", "original_label_mark", "sentence")),
    "sst2": GlueTask("sst2", "SST-2", "sentence", None, "label", 2, "accuracy", "accuracy"),
    "mrpc": GlueTask("mrpc", "MRPC", "#1 String", "#2 String", "Quality", 2, "f1_accuracy", "f1",
                     encoding="utf-8-sig", hub_text=("sentence1", "sentence2")),
    "stsb": GlueTask("stsb", "STS-B", "sentence1", "sentence2", "score", 1, "correlation", "pearson",
                     hub_text=("sentence1", "sentence2")),
    "qnli": GlueTask("qnli", "QNLI", "question", "sentence", "label", 2, "accuracy", "accuracy",
                     label_names=_NLI, hub_text=("question", "sentence")),
    "rte": GlueTask("rte", "RTE", "sentence1", "sentence2", "label", 2, "accuracy", "accuracy",
                    label_names=_NLI, hub_text=("sentence1", "sentence2")),
    "wnli": GlueTask("wnli", "WNLI", "sentence1", "sentence2", "label", 2, "accuracy", "accuracy",
                     hub_text=("sentence1", "sentence2")),
    "mnli": GlueTask("mnli", "MNLI", "sentence1", "sentence2", "gold_label", 3, "accuracy", "accuracy",
                     label_names=("entailment", "neutral", "contradiction"), dev_file="dev_matched.tsv",
                     hub_text=("premise", "hypothesis"), hub_dev="validation_matched"),
    "qqp": GlueTask("qqp", "QQP", "question1", "question2", "is_duplicate", 2, "f1_accuracy", "f1",
                    hub_text=("question1", "question2")),
}
_ALIASES = {"sst-2": "sst2", "sts-b": "stsb"}
# class names of the tasks whose files hold integer labels (HF datasets' nyu-mll/glue ClassLabel names)
_CLASS_NAMES = {"cola": ("unacceptable", "acceptable"), "sst2": ("negative", "positive"),
                "mrpc": ("not_equivalent", "equivalent"), "wnli": ("not_entailment", "entailment"),
                "qqp": ("not_duplicate", "duplicate")}


def get_task(name: str) -> GlueTask:
    """Look up a task by GLUE name (case-insensitive; "SST-2" and "sst2" both work).

    Raises:
        KaspError: for an unknown name, listing the known ones.
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise KaspError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[key]


#: the metrics GLUE reports per task (Wang et al. 2019, table 1), by their kasp.spec.metrics keys
_TASK_METRICS = {"accuracy": ("accuracy",), "f1_accuracy": ("f1", "accuracy"), "mcc": ("mcc",),
                 "correlation": ("pearson", "spearman")}
_SHORT = {"accuracy": "accuracy", "f1": "F1", "mcc": "Matthews correlation", "pearson": "Pearson",
          "spearman": "Spearman"}


def task_name(task: str) -> str:
    """The task's name as the GLUE paper writes it: "SST-2", "CoLA", "STS-B", ...

    Raises:
        KaspError: for an unknown task.
    """
    return get_task(task).folder


def metric_label(task: str) -> str:
    """Full name of the task's main metric (the number plotted), e.g. "Matthews correlation" for CoLA."""
    return METRIC_NAMES[get_task(task).main_metric]


def metric_heading(task: str) -> str:
    """All metrics GLUE reports for the task, for headings: "accuracy", "Matthews correlation",
    "F1/accuracy" (MRPC), "Pearson/Spearman correlation" (STS-B)."""
    keys = _TASK_METRICS[get_task(task).metric]
    if keys == ("pearson", "spearman"):
        return "Pearson/Spearman correlation"
    return "/".join(_SHORT[k] for k in keys)


def metric_unit(task: str) -> str:
    """How the main metric is shown: "%" for accuracy and F1, "×100" for correlations (range −100…100)."""
    return "×100" if get_task(task).main_metric in ("mcc", "pearson", "spearman") else "%"


def metric_axis(task: str) -> str:
    """Axis title of the main dev metric, e.g. "dev accuracy (%)" or "dev Matthews correlation (×100)"."""
    return f"dev {metric_label(task)} ({metric_unit(task)})"


def format_metric(task: str, value: float | None, note: str | None = None) -> str:
    """A main-metric value (fraction) as shown in the app: "86.47 %" or "52.10 (×100)"; "n/a" when missing.

    ``note`` (:func:`kasp.spec.metrics.metric_note`) is said beside it: "undefined (constant predictions)"
    for a missing value with a reason, "0.00 (×100; constant predictions: GLUE's convention)"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"undefined ({note})" if note and note != "undefined" else ("undefined" if note else "n/a")
    unit = metric_unit(task)
    text = f"{value * 100:.2f} %" if unit == "%" else f"{value * 100:.2f} (×100)"
    return f"{text} ({note})" if note else text
