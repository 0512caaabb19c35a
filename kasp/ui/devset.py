"""What the app shows of a task and its shipped data: the sidebar's task label and task list, the dev
set's first examples and gold answers, the training set's size, the majority-class baseline.

No Streamlit; torch-free at import: the GLUE files are read through :mod:`kasp.data.glue` (which imports
torch for its batches), imported only when a function reads them.
"""

from __future__ import annotations

import functools
import math

import pandas as pd

from kasp.ground.errors import KaspError
from kasp.spec.metrics import glue_metrics
from kasp.spec.tasks import get_task, task_name


#: what each task asks, shown beside its GLUE name in the sidebar
TASK_BLURBS = {"sst2": "sentiment", "cola": "grammaticality", "mrpc": "paraphrase", "stsb": "similarity",
               "rte": "entailment", "wnli": "coreference", "qnli": "question answering"}

def task_option(task: str) -> str:
    """Sidebar label: GLUE name and what the task asks, e.g. "SST-2 (sentiment)"."""
    from kasp.data.glue import shipped_splits

    extra = TASK_BLURBS.get(get_task(task).name)
    if get_task(task).name == "qnli" and "train" not in shipped_splits().get("qnli", []):
        extra = f"{extra}, dev only offline"
    return f"{task_name(task)} ({extra})" if extra else task_name(task)


def sidebar_tasks() -> list[str]:
    """The tasks the sidebar offers: those of :data:`TASK_BLURBS` whose GLUE files ship (in that order)."""
    from kasp.data.glue import shipped_splits

    shipped = shipped_splits()
    return [t for t in TASK_BLURBS if t in shipped]


def dev_tasks() -> list[str]:
    """The tasks whose dev set ships: those a checkpoint can be evaluated on offline (the Inspect page)."""
    from kasp.data.glue import shipped_splits

    return [t for t, s in shipped_splits().items() if "dev" in s]


@functools.lru_cache(maxsize=16)
def train_size(task: str) -> int | None:
    """Number of training examples of a task on this machine (None when its train split is not shipped)."""
    from kasp.data.glue import load_split, shipped_splits

    if "train" not in shipped_splits().get(get_task(task).name, []):
        return None
    return len(load_split(task, "train"))


@functools.lru_cache(maxsize=16)
def majority_baseline(task: str) -> dict[str, float] | None:
    """GLUE metrics of always answering the dev set's most frequent label (None for STS-B, a regression).

    Computed on the shipped dev set with :func:`kasp.spec.metrics.glue_metrics`; a teacher at or below
    this has learnt nothing a constant answer would not. Cached per task: the pages draw it on every rerun.
    """
    from kasp.data.glue import load_split

    t = get_task(task)
    if t.is_regression:
        return None
    try:
        labels = load_split(t, "dev")["label"].to_numpy()
    except KaspError:
        return None
    majority = pd.Series(labels).mode().iloc[0]
    return glue_metrics(t.metric, [majority] * len(labels), labels)


def majority_metric(task: str) -> float | None:
    """The task's main GLUE metric (fraction) of always answering the majority class on the dev set,
    or None (STS-B, or no dev labels). The curves draw it as a floor: a student at it learnt nothing."""
    base = majority_baseline(task)
    return None if base is None else base.get(get_task(task).main_metric)


def default_example(task: str) -> tuple[str, str | None]:
    """The first dev example of a task: (sentence, second sentence or None), the Attention page's default input."""
    from kasp.data.glue import load_split

    try:
        row = load_split(task, "dev").iloc[0]
    except KaspError:
        return "a gripping , funny and deeply moving film .", None
    b = row["text_b"]
    return str(row["text_a"]), (str(b) if b is not None and not (isinstance(b, float) and math.isnan(b)) else None)


def dev_examples_frame(task: str, n: int = 8) -> pd.DataFrame:
    """The first ``n`` examples of the task's shipped dev set with their gold answers (class name, or the
    STS-B similarity score 0-5): the examples every dev metric of the app is computed on."""
    from kasp.data.glue import load_split

    t = get_task(task)
    try:
        dev = load_split(t, "dev").head(n)
    except KaspError:
        return pd.DataFrame(columns=["sentence", "gold"])
    names = t.class_names
    gold = [f"{float(v):.2f}" if t.is_regression else (names[int(v)] if names else str(v)) for v in dev["label"]]
    cols = {"sentence" if t.text_b is None else "first sentence": dev["text_a"].astype(str).tolist()}
    if t.text_b is not None:
        cols["second sentence"] = dev["text_b"].astype(str).tolist()
    cols["gold"] = gold
    return pd.DataFrame(cols)
