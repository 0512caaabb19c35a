"""The app's list of runs that may carry a weights' story (live, shipped precomputed, shipped sweep), and
the run to pair with one (:mod:`kasp.training.weights_story` reads and describes each story).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kasp.ground.errors import KaspError
from kasp.spec.methods import is_masked, shrinks_student
from kasp.ground.runs import jsonl_problem, list_runs
from kasp.experiments.results import load_shipped
from kasp.training.weights_story import STORY_FILE


def story_entries(task: str, store: str | Path | None = None,
                  precomputed: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Prune runs of ``task`` that could carry a story: live runs of the store, then the shipped
    precomputed runs and the shipped sweep's runs (``precomputed`` replaces both: entries shaped like
    ``assets/precomputed/runs.json``'s, with the story under ``"weights_story"``).

    Each entry: ``id``, ``source`` ("live run" / "precomputed run" / "precomputed sweep"), ``method``, ``sparsity`` (target,
    fraction), ``state``, ``total_steps``, ``has_story`` (bool), ``story`` (a run directory path or a
    list of records, for :func:`read_story`), ``progress`` (list of progress records), ``recipe``,
    ``command`` (the command line of a precomputed run, else None) and, for a live run, ``damage``
    (what is wrong with its weights.jsonl, :func:`kasp.ground.runs.jsonl_problem`, or None).
    """
    from kasp.ui.tables import load_precomputed

    out = []
    for r in list_runs(store):
        rec = r.recipe()
        if rec.get("task") != task or rec.get("kind") != "prune" or shrinks_student(rec.get("method")):
            continue  # a small dense model is never masked: no story
        st = r.status()
        _, damage = jsonl_problem(r.path / STORY_FILE)
        out.append({"id": r.id, "source": "live run", "method": rec.get("method"), "sparsity": rec.get("sparsity"),
                    "state": r.state(), "total_steps": st.get("total_steps") or r.report().get("steps"),
                    "has_story": (r.path / STORY_FILE).is_file(), "story": r.path, "progress": r.progress(),
                    "recipe": rec, "command": None,
                    "damage": f"{STORY_FILE} {damage}" if damage else None})
    if precomputed is None:  # the shipped precomputed runs, then the shipped sweep's runs
        pre = list(load_precomputed())
        try:
            sweep = load_shipped(task)
        except KaspError:
            sweep = None
        for r in (sweep or {}).get("runs", []):
            prog = r.get("progress") or {}
            pre.append({"id": f"sweep/{r.get('key')}", "source": "precomputed sweep", "task": task, "method": r.get("method"),
                        "target_sparsity": r.get("sparsity"), "steps": r.get("steps"),
                        "weights_story": r.get("weights_story"), "recipe": r.get("recipe", {}),
                        "progress": [{"type": "eval", **e} for e in prog.get("eval", [])] if isinstance(prog, dict) else prog,
                        "command": "kasp sweep (shipped results, assets/sweeps/" + task + ".json)"})
    else:
        pre = precomputed
    for p in pre:
        if p.get("task") != task or not is_masked(p.get("method")):
            continue
        out.append({"id": p["id"], "source": p.get("source", "precomputed run"), "method": p.get("method"),
                    "sparsity": p.get("target_sparsity"), "state": "done", "total_steps": p.get("steps"),
                    "has_story": bool(p.get("weights_story")), "story": p.get("weights_story"),
                    "progress": p.get("progress", []), "recipe": p.get("recipe", {}), "command": p.get("command")})
    return out


def partner(entry: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run to show beside ``entry``: the other method (KASP vs magnitude) at the same target
    sparsity, with a story; the same source preferred, then the newest."""
    other = [e for e in entries if e["has_story"] and e["id"] != entry["id"] and e["method"] != entry["method"]
             and is_masked(e["method"]) and e["sparsity"] == entry["sparsity"]]
    other.sort(key=lambda e: e["source"] != entry["source"])
    return other[0] if other else None
