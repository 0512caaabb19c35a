"""The Overview's one-click views (issue 15): each opens the page and address (:mod:`kasp.ui.urlstate`)
that answer one question for a task, disabled and saying why when nothing ships to answer it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kasp.ground.errors import KaspError
from kasp.spec.tasks import get_task, task_name
from kasp.spec.methods import REFERENCE
from kasp.experiments.results import load_shipped
from kasp.ui.tables import ingredient_cells, load_precomputed, precomputed_retention


def _curve_preset(label: str, icon: str, task: str, methods: tuple[str, str], shipped: set, help: str) -> dict[str, Any]:
    """An Overview preset that shows two methods' curves; disabled (saying why) when the shipped
    results of ``task`` lack one of them."""
    missing = [m for m in methods if m not in shipped]
    return {"label": label, "icon": icon, "page": "pages/overview.py",
            "params": {"task": task, "methods": ",".join(methods), "at": "dev-metric-against-sparsity"},
            "disabled": bool(missing),
            "help": help if not missing else f"No shipped {task_name(task)} results for {' and '.join(missing)} "
                                             "yet (its sweep has not shipped)."}


def attention_available(task: str, store: str | Path | None = None) -> bool:
    """Whether the Attention page has something to draw for ``task``: a shipped run with retention measures
    (precomputed or in the shipped sweep) or a finished prune run in the store."""
    from kasp.ground.runs import iter_done

    if not precomputed_retention(task).empty:
        return True
    return next(iter_done(store, kind="prune", task=get_task(task).name), None) is not None


def view_presets(task: str) -> list[dict[str, Any]]:
    """The Overview's one-click views (issue 15): each a page of the app and the address parameters
    (:mod:`kasp.ui.urlstate`) that open the view answering one question, for ``task``.

    Returns:
        A list of dicts: ``label`` (the question), ``icon``, ``page`` (page script path, relative to
        ``app.py``), ``params`` (query parameters, strings; ``at``: the heading of the answer, which ``app.py``
        scrolls to), ``help`` (what the view shows).
    """
    try:
        sweep = load_shipped(task) or {}
    except KaspError:
        sweep = {}
    with_story = {r.get("key") for r in sweep.get("runs", []) if r.get("weights_story")}
    story_run = next((f"sweep/{k}" for k in ("kasp@0.9/seed42", "kasp@0.95/seed42") if k in with_story), None)
    shipped = {r.get("method") for r in sweep.get("runs", [])} | {r["method"] for r in load_precomputed()
                                                                  if r["task"] == task}
    if story_run is None:
        story_run = next((r["id"] for r in load_precomputed() if r["task"] == task and r["method"] == REFERENCE
                          and r.get("weights_story")), None)
    cells, _ = ingredient_cells(task)
    weights = ({"task": task, "matrix": "FFN-in", "layer": "0"} | ({"run": story_run} if story_run else {})
               | {"at": "the-weights-story"})
    name = task_name(task)
    return [
        {"label": "What does 90 % sparsity remove?", "icon": ":material/grid_on:", "page": "pages/weights.py",
         "params": weights, "disabled": story_run is None,
         "help": (f"The Weights page on a shipped KASP run of {name}: which blocks of a feed-forward matrix lose "
                  "their weights, step by step along the cubic schedule, beside the magnitude baseline.")
         if story_run else (f"No shipped {name} run carries weight pictures yet (the {name} sweep has not shipped): "
                            "prune one on the Prune page and open the Weights page.")},
        _curve_preset("Distil or not?", ":material/school:", task, ("kasp", "magnitude"), shipped,
                      f"{name}: KASP (distil the teacher while pruning) against the magnitude baseline (prune the "
                      "fine-tuned model, retrain on the labels), across sparsities."),
        _curve_preset("Sparse or small?", ":material/compress:", task, ("kasp", "small-dense"), shipped,
                      f"{name}: a sparse model against a small dense one with the same number of non-zero weights."),
        {"label": "What did the student keep?", "icon": ":material/visibility:",
         "page": "pages/attention.py", "params": {"task": task, "at": "retention-against-sparsity"},
         "disabled": not attention_available(task),
         "help": "The Attention page: how much of the teacher's attention and representations each student kept."
         if attention_available(task) else (f"No shipped {name} run carries retention measures and no {name} prune run "
                                            "has finished here: prune one on the Prune page first.")},
        {"label": "Which ingredient matters?", "icon": ":material/science:", "page": "pages/overview.py",
         "params": {"task": task, "at": "which-ingredient-matters"}, "disabled": len(cells) < 2,
         "help": f"{name}: the pre-trained or the fine-tuned start, distillation or the labels: the 2 x 2 of the recipe "
                 "study, which tells what carries KASP's gain." if len(cells) >= 2 else
                 (f"The 2 x 2 study (start x loss) runs on SST-2 only: {len(cells)} of its 4 cells are measured "
                  "so far." if task == "sst2" else "The 2 x 2 study (start x loss) runs on SST-2 only.")},
    ]
