"""What the app shows of a task and its shipped data: the sidebar's task label and task list, the dev
set's first examples and gold answers, the training set's size, the majority-class baseline.

No Streamlit, no torch: the GLUE files are read through :mod:`kasp.data.files`, imported only when a function
reads them.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import pandas as pd

from kasp.ground.errors import KaspError
from kasp.spec.metrics import glue_metrics
from kasp.spec.tasks import get_task, task_name


#: what each task asks, shown beside its GLUE name in the sidebar
TASK_BLURBS = {"sst2": "sentiment", "cola": "grammaticality", "mrpc": "paraphrase", "stsb": "similarity",
               "rte": "entailment", "wnli": "coreference", "qnli": "question answering"}

def task_option(task: str) -> str:
    """Sidebar label: GLUE name and what the task asks, e.g. "SST-2 (sentiment)"."""
    from kasp.data.files import shipped_splits

    extra = TASK_BLURBS.get(get_task(task).name)
    if get_task(task).name == "qnli" and "train" not in shipped_splits().get("qnli", []):
        extra = f"{extra}, dev only offline"
    return f"{task_name(task)} ({extra})" if extra else task_name(task)


def sidebar_tasks() -> list[str]:
    """The tasks the sidebar offers: those of :data:`TASK_BLURBS` whose GLUE files ship (in that order)."""
    from kasp.data.files import shipped_splits

    shipped = shipped_splits()
    return [t for t in TASK_BLURBS if t in shipped]


def dev_tasks() -> list[str]:
    """The tasks whose dev set ships: those a checkpoint can be evaluated on offline (the Inspect page)."""
    from kasp.data.files import shipped_splits

    return [t for t, s in shipped_splits().items() if "dev" in s]


@functools.lru_cache(maxsize=16)
def train_size(task: str) -> int | None:
    """Number of training examples of a task on this machine (None when its train split is not shipped)."""
    from kasp.data.files import load_split, shipped_splits

    if "train" not in shipped_splits().get(get_task(task).name, []):
        return None
    return len(load_split(task, "train"))


#: the majority-class baselines of the shipped dev sets, computed once (:func:`write_majority_file`), so that the
#: app's first page does not import scikit-learn (about 2 s) to draw the floor line
MAJORITY_FILE = "majority.json"


def _dev_labels(task: str):
    from kasp.data.files import load_split

    return load_split(get_task(task), "dev")["label"].to_numpy()


def compute_majority_baseline(task: str) -> dict[str, float] | None:
    """GLUE metrics of always answering the dev set's most frequent label, computed now with
    :func:`kasp.spec.metrics.glue_metrics` (None for STS-B, a regression, or without dev labels)."""
    t = get_task(task)
    if t.is_regression:
        return None
    try:
        labels = _dev_labels(task)
    except KaspError:
        return None
    majority = pd.Series(labels).mode().iloc[0]
    return glue_metrics(t.metric, [majority] * len(labels), labels)


def _dev_sha256(task: str) -> str | None:
    import hashlib

    from kasp.ground.resources import glue_dir

    t = get_task(task)
    f = glue_dir() / t.folder / t.dev_file
    return hashlib.sha256(f.read_bytes()).hexdigest() if f.is_file() else None


def write_majority_file() -> dict[str, Any]:
    """Compute the majority baseline of every shipped task with dev labels and write them, each with the sha256 of
    its dev file, to ``assets/precomputed/majority.json``. ``tests/ui/test_majority.py`` fails when a dev file
    changes; then run ``.venv/bin/python -c "from kasp.ui.devset import write_majority_file as w; w()"``."""
    from kasp.ground.resources import precomputed_path

    out = {t: {"dev_sha256": _dev_sha256(t), "metrics": compute_majority_baseline(t)} for t in dev_tasks()
           if not get_task(t).is_regression and _dev_sha256(t)}
    precomputed_path(MAJORITY_FILE).write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


@functools.lru_cache(maxsize=16)
def majority_baseline(task: str) -> dict[str, float] | None:
    """GLUE metrics of always answering the dev set's most frequent label (None for STS-B, a regression).

    Read from ``assets/precomputed/majority.json`` when it holds the task for the dev file as it is now (its
    sha256), else computed (:func:`compute_majority_baseline`); a teacher at or below this has learnt nothing a
    constant answer would not. Cached per task: the pages draw it on every rerun.
    """
    from kasp.ground.resources import precomputed_path

    if get_task(task).is_regression:
        return None
    try:
        entry = json.loads(precomputed_path(MAJORITY_FILE).read_text(encoding="utf-8")).get(get_task(task).name)
        if isinstance(entry, dict) and entry.get("dev_sha256") == _dev_sha256(task):
            return entry["metrics"]
    except (OSError, ValueError, KeyError):
        pass
    return compute_majority_baseline(task)


def majority_metric(task: str) -> float | None:
    """The task's main GLUE metric (fraction) of always answering the majority class on the dev set,
    or None (STS-B, or no dev labels). The curves draw it as a floor: a student at it learnt nothing."""
    base = majority_baseline(task)
    return None if base is None else base.get(get_task(task).main_metric)


def default_example(task: str) -> tuple[str, str | None]:
    """The first dev example of a task: (sentence, second sentence or None), the Attention page's default input."""
    from kasp.data.files import load_split

    try:
        row = load_split(task, "dev").iloc[0]
    except KaspError:
        return "a gripping , funny and deeply moving film .", None
    b = row["text_b"]
    return str(row["text_a"]), (str(b) if b is not None and not (isinstance(b, float) and math.isnan(b)) else None)


def dev_examples_frame(task: str, n: int = 8) -> pd.DataFrame:
    """The first ``n`` examples of the task's shipped dev set with their gold answers (class name, or the
    STS-B similarity score 0-5): the examples every dev metric of the app is computed on."""
    from kasp.data.files import load_split

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
