"""Print the recipe study (scripts/run_study.sh, bench/study/*.json) as a Markdown table: per change, the
held-out selection slice (what recipes are chosen on) and dev (what is reported), per seed and mean, and the
difference from the task's base line of the same seeds.

    .venv/bin/python scripts/study_table.py                          # bench/study/*.json, printed
    .venv/bin/python scripts/study_table.py --write docs/results.md  # replaces the table between its markers
    .venv/bin/python scripts/study_table.py --ship assets/precomputed/ingredients.json  # the 2 x 2 for the app
    .venv/bin/python scripts/study_table.py --ship-budgets assets/precomputed/longer_budgets.json  # small tasks' longer runs
    .venv/bin/python scripts/study_table.py --combination sst2       # kasp sweep flags of the winners combined
    .venv/bin/python scripts/study_table.py --combination sst2 --max-steps 2500   # the same at another budget
    .venv/bin/python scripts/study_table.py --adoption sst2         # the line whose recipe becomes the default
    .venv/bin/python scripts/study_table.py --complete bench/study/sst2-base.json   # exit 0: every planned run is in

tests/repo/test_study_docs.py checks that the table in docs/results.md is what this prints for bench/study/.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from doc_blocks import replace_block  # noqa: E402
from kasp.ground.errors import KaspError  # noqa: E402
from kasp.experiments.results import load_results  # noqa: E402
from kasp.spec.methods import METHODS  # noqa: E402

#: issue 24's time target for the default: minutes of one KASP run on 2 idle cores (its step budget times the
#: measured seconds a step, METHODS["kasp"].step_seconds); a longer budget is not a candidate for the default
TIME_LIMIT_MINUTES = 20.0


def _scores(runs: list[dict], key: str) -> dict[int, float]:
    """seed -> main metric x100 on the selection slice ("selection") or dev ("dev"); seeds without it left out."""
    out = {}
    for e in runs:
        m = (e.get("selection_metrics") or {}) if key == "selection" else (e.get("metrics") or {})
        v = m.get(e.get("main_metric") or "")
        if isinstance(v, (int, float)):
            out[e["seed"]] = 100 * v
    return out


def _mean(d: dict[int, float]) -> float | None:
    return sum(d.values()) / len(d) if d else None


def complete(res: dict) -> bool:
    """Whether a study line has recorded every run it planned: a line still running (its results file is
    rewritten after each run, and is not committed until the line ends) is left out of every table, so that
    a table written while another line runs never quotes a file that is not in the repository."""
    planned = (res.get("plan") or {}).get("runs")
    return isinstance(planned, int) and len(res.get("runs") or []) >= planned > 0


def lines(folder: Path, pattern: str = "*.json") -> dict[str, dict | KaspError]:
    """Study line name -> its results (or the error that makes the file unreadable), for the finished lines
    in ``folder`` (:func:`complete`), in name order."""
    data: dict[str, dict | KaspError] = {}
    for f in sorted(folder.glob(pattern)):
        try:
            res = load_results(f)
        except KaspError as e:
            data[f.stem] = e
            continue
        if complete(res):
            data[f.stem] = res
    return data


def rows(folder: Path) -> list[str]:
    """The table's lines, header first; one row per finished line (:func:`complete`) and method."""
    data = lines(folder)
    adopted = {task: _adopt(data, task)[0] for task in {r["task"] for r in data.values() if isinstance(r, dict)}}
    out = ["| study line | task | method | change | seeds | selection slice per seed | mean | Δ vs base | dev per seed | mean | Δ vs base | wins on the slice, every seed | min a run |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, res in data.items():
        if isinstance(res, Exception):
            out.append(f"| {name} | unreadable: {res} |" + " |" * 10)
            continue
        base = data.get(f"{res['task']}-base")
        plan = res.get("plan") or {}
        change = ", ".join(f"{k}={v}" for k, v in _overrides(res).items())
        steps = (plan.get("budget") or {}).get("max_steps")
        change = change or "none (base)"
        if steps:
            change += f"; {steps} steps"
        for method in sorted({e["method"] for e in res["runs"]}):
            runs = [e for e in res["runs"] if e["method"] == method]
            cells = []
            for key in ("selection", "dev"):
                sc = _scores(runs, key)
                delta = _delta(res, base, key, method) if isinstance(base, dict) else None
                cells += [", ".join(f"{s}: {v:.2f}" for s, v in sorted(sc.items())) or "",
                          f"{_mean(sc):.2f}" if sc else "", f"{delta:+.2f}" if delta is not None and name != f"{res['task']}-base" else ""]
            wall = sum(e["wall_seconds"] for e in runs) / len(runs) / 60
            # the verdict is for changes to KASP's recipe: not the base line itself, nor the 2 x 2's other cells
            judged = method == "kasp" and name != f"{res['task']}-base" and name not in TWO_BY_TWO
            won = wins(res, base, method) if judged else None
            verdict = "" if won is None else ("yes" if won else "no")
            if won is not None and isinstance(base, dict) and not _fits(res, base):
                verdict += f" ({_budget(res)} steps: not a candidate)"  # the time limit is part of the target
            elif won and name == adopted.get(res["task"]):
                verdict += ", adopted"
            out.append(f"| {name} | {res['task']} | {method} | {change} | {len(runs)} | " + " | ".join(cells)
                       + f" | {verdict} | {wall:.1f} |")
    return out


def wins(res: dict, base: dict | KaspError | None, method: str = "kasp") -> bool | None:
    """Issue 24 item 6's rule, on one study line's ``method`` runs against the base line's KASP runs: True when
    the line scores higher on the selection slice than the base line on every seed the two share (at least
    two), False when it does not, None when it cannot be judged (no readable base line, or fewer than two
    shared seeds with a slice score). Dev plays no part: it is the reported number, never the chosen one."""
    if not isinstance(base, dict):
        return None
    sc = _scores([e for e in res["runs"] if e["method"] == method], "selection")
    b = _scores([e for e in base["runs"] if e["method"] == "kasp"], "selection")
    common = sorted(set(sc) & set(b))
    if len(common) < 2:
        return None
    return all(sc[s] > b[s] for s in common)


def delta(folder: Path, name: str, key: str, method: str = "kasp") -> float:
    """Mean score x100 of study line ``name`` minus its task's base line, on the seeds both share; ``key`` is
    "selection" (the held-out slice) or "dev". As the table's "Δ vs base" columns, for prose that quotes them.

    Raises:
        KeyError: the line or its base line is not a finished line of ``folder``."""
    data = lines(folder)
    res = data[name]
    return _delta(res, data[f"{res['task']}-base"], key, method)


def _delta(res: dict, base: dict, key: str, method: str = "kasp") -> float | None:
    """:func:`delta` of loaded results; None when the line and its base line share no seed with a score."""
    sc = _scores([e for e in res["runs"] if e["method"] == method], key)
    b = _scores([e for e in base["runs"] if e["method"] == "kasp"], key)
    common = sorted(set(sc) & set(b))
    return (_mean({s: sc[s] for s in common}) - _mean({s: b[s] for s in common})) if common else None


def _budget(res: dict):
    return (res.get("plan") or {}).get("budget", {}).get("max_steps")


def _fits(res: dict, base: dict) -> bool:
    """Whether a line's step budget may become the default: the base line's own, or a step count whose
    estimated minutes (steps x METHODS["kasp"].step_seconds) stay within :data:`TIME_LIMIT_MINUTES`. A budget in
    epochs that differs from the base line's is never a candidate (the small tasks' longer runs: --ship-budgets)."""
    steps = _budget(res)
    if steps == _budget(base):
        return True
    return steps is not None and steps * METHODS["kasp"].step_seconds / 60 <= TIME_LIMIT_MINUTES


def _gain(res: dict, base: dict) -> tuple[float, float]:
    """(mean gain, worst seed's gain) on the selection slice against the base line, x100, rounded past float
    noise (two lines can tie exactly: SST-2's lr 2e-4 and 4e-4 both gained 1.32), for ranking winners."""
    sc, b = _scores(res["runs"], "selection"), _scores(base["runs"], "selection")
    worst = min(sc[s] - b[s] for s in set(sc) & set(b))
    return round(_delta(res, base, "selection"), 6), round(worst, 6)


def _recipe_lines(data: dict[str, dict | KaspError], task: str):
    """(name, results) of ``task``'s lines that change KASP's recipe and win (:func:`wins`): KASP runs only, not
    the base line, not the 2 x 2's lines, within the time limit (:func:`_fits`)."""
    base = data.get(f"{task}-base")
    if not isinstance(base, dict):
        return
    for name, res in data.items():
        if (isinstance(res, dict) and res["task"] == task and name != f"{task}-base" and name not in TWO_BY_TWO
                and {e["method"] for e in res["runs"]} == {"kasp"} and _fits(res, base) and wins(res, base)):
            yield name, res


def adoption(folder: Path, task: str) -> tuple[str | None, dict, int | None]:
    """Issue 24 item 6: the study line whose recipe becomes ``task``'s default for KASP. Of the lines that win on
    the slice on every seed (:func:`wins`) within the time limit (:func:`_fits`), single changes and
    combinations alike, the one with the larger mean gain on the slice, on a tie the one whose worst seed gained
    more. Returns (its name, its recipe overrides, its step budget); (None, {}, None) when no line won."""
    return _adopt(lines(folder), task)


def _adopt(data: dict[str, dict | KaspError], task: str) -> tuple[str | None, dict, int | None]:
    """:func:`adoption` of loaded study lines (:func:`lines`)."""
    base = data.get(f"{task}-base")
    ranked = sorted(_recipe_lines(data, task), key=lambda t: _gain(t[1], base), reverse=True)
    if not ranked:
        return None, {}, None
    name, res = ranked[0]
    return name, _overrides(res), _budget(res)


def adopted_entry(folder: Path, task: str) -> dict | None:
    """What kasp.spec.config.ADOPTED holds for ``task``'s KASP default when :func:`adoption` picks a line: its recipe
    overrides, plus its step budget (max_steps) unless that budget is the task's default one, the default epochs
    (kasp.spec.config.default_recipe) counted with the study's held-out slice (MRPC's 5 epochs are 510 steps with
    408 examples held out), which the default keeps in epochs. None when no line is picked."""
    from kasp.experiments.sweep import steps_for_epochs
    from kasp.spec.config import STEP_BUDGETS

    data = lines(folder)
    name, over, steps = _adopt(data, task)
    if name is None:
        return None
    holdout = int(((data[name].get("plan") or {}).get("overrides") or {}).get("holdout") or 0)
    default_steps = STEP_BUDGETS.get(("prune", task)) or steps_for_epochs(
        task, METHODS["kasp"].recipe["epochs"], None, holdout)
    return dict(over) if steps == default_steps else {**over, "max_steps": steps}


def _overrides(res: dict) -> dict:
    """The recipe changes of a study line: its plan's overrides, the held-out slice (common to all) left out."""
    return {k: v for k, v in ((res.get("plan") or {}).get("overrides") or {}).items() if k != "holdout"}


def combination(folder: Path, task: str) -> tuple[dict, list[str]]:
    """The best combination of issue 24 item 4 for ``task``: the recipe overrides (``--set`` keys, the held-out
    slice left out) of every finished single-change line that :func:`wins`, merged; where two winners set the
    same key, the one with the larger mean gain on the slice, and on a tie the one whose worst seed gained more. Lines that change something other than the recipe
    (the 2 x 2's lines, another method, another step budget: the time limit is part of the target) are not
    candidates. Returns (overrides, the winning lines' names, best first); ({}, []) when nothing won or the task
    has no finished base line."""
    return _combine(lines(folder), task)


def _combine(data: dict[str, dict | KaspError], task: str) -> tuple[dict, list[str]]:
    """:func:`combination` of loaded study lines (:func:`lines`)."""
    base = data.get(f"{task}-base")
    # single changes at the base line's budget (a combination, or a budget line, is not an ingredient)
    scored = [(_gain(res, base), name, _overrides(res)) for name, res in _recipe_lines(data, task)
              if len(_overrides(res)) == 1 and _budget(res) == _budget(base)]
    merged: dict = {}
    for _, _, over in sorted(scored, key=lambda t: t[0]):  # the larger gain is applied last and so kept
        merged.update(over)
    return merged, [name for _, name, _ in sorted(scored, key=lambda t: t[0], reverse=True)]


def combination_flags(folder: Path, task: str, max_steps: int | None = None) -> str:
    """``kasp sweep`` flags for :func:`combination`'s line (``max_steps``, else its base line's step budget, then
    one ``--set`` per override), or "" when fewer than two changes won: one winner is its own line already, and
    none leaves nothing to combine."""
    data = lines(folder)
    over, names = _combine(data, task)
    if len(names) < 2:
        return ""
    return " ".join([f"--max-steps {max_steps or _budget(data[f'{task}-base'])}"]
                    + [f"--set {k}={v}" for k, v in sorted(over.items())])


START, END = "<!-- study-table:start (scripts/study_table.py --write) -->", "<!-- study-table:end -->"


def _base_lines(folder: Path):
    """The readable base lines (``<task>-base.json``) of ``folder``, one results dict per task, in name order."""
    for res in lines(folder, "*-base.json").values():
        if isinstance(res, dict):
            yield res


def teacher_lines(folder: Path) -> list[str]:
    """One line per task: the teacher every study line of that task distils from, with its dev metric."""
    out = []
    for res in _base_lines(folder):
        t = res.get("teacher") or {}
        if isinstance(t.get("metric"), (int, float)):
            steps = (t.get("recipe") or {}).get("max_steps")
            out.append(f"Teacher of every {res['task']} line: `{t.get('run_id')}` (fine-tuned"
                       + (f" {steps} steps" if steps else "") + f", the same slice held out), dev {res['main_metric']} "
                       f"{100 * t['metric']:.2f}.")
    return out


def slice_lines(folder: Path) -> list[str]:
    """One line per task whose selection slice is much shorter than dev (median words under two thirds of dev's):
    the slice is drawn from the training set, and SST-2's training set holds the phrases of its sentences, so the
    slice and dev can rank close recipes differently."""
    from kasp.data.files import load_split
    from kasp.data.glue import train_frames
    from kasp.spec.config import make_config

    out = []
    for res in _base_lines(folder):
        holdout = ((res.get("plan") or {}).get("overrides") or {}).get("holdout")
        if not holdout:
            continue
        task = res["task"]
        _, held = train_frames(make_config("prune", "kasp", task, sparsity=0.9, holdout=holdout))
        dev = load_split(task, "dev")

        def words(d):
            n = d["text_a"].str.split().str.len()
            return n + d["text_b"].str.split().str.len() if "text_b" in d and d["text_b"].notna().all() else n

        h, d = words(held), words(dev)
        if h.median() < 2 / 3 * d.median():
            out.append(f"The {task} selection slice ({len(held)} training examples) has a median of {h.median():g} words "
                       f"({100 * (h <= 5).mean():.0f} % have 5 or fewer); dev's examples have a median of {d.median():g} "
                       f"({100 * (d <= 5).mean():.0f} % have 5 or fewer). The training set holds short phrases that dev "
                       "does not, so the slice and dev can rank close recipes differently; a change is adopted only "
                       "when it wins on the slice, and dev is reported beside it.")
    return out


#: the 2 x 2 of issue 24 item 5 on SST-2 at 90 %: (student start, loss) -> (study line, method). The base line is
#: the pre-trained + distillation cell (KASP); the fine-tuned start is the magnitude method (prune the teacher).
CELLS = {("pre-trained", "task labels"): ("sst2-2x2-pretrained-task", "kasp"),
         ("pre-trained", "distillation"): ("sst2-base", "kasp"),
         ("fine-tuned", "task labels"): ("sst2-2x2-finetuned-task", "magnitude"),
         ("fine-tuned", "distillation"): ("sst2-2x2-finetuned-distil", "magnitude")}
#: the same 2 x 2 at the recipe SST-2 adopted (item 5's "at the chosen recipe"; queued in run_study.sh, 2,500 steps):
#: the adopted line is its pre-trained + distillation cell. Drawn once its lines have run (not yet: two_by_two)
CELLS_ADOPTED = {("pre-trained", "task labels"): ("sst2-2x2a-pretrained-task", "kasp"),
                 ("pre-trained", "distillation"): ("sst2-combined-steps2500", "kasp"),
                 ("fine-tuned", "task labels"): ("sst2-2x2a-finetuned-task", "magnitude"),
                 ("fine-tuned", "distillation"): ("sst2-2x2a-finetuned-distil", "magnitude")}
#: the 2 x 2s' own study lines: they change the student's start or loss, not KASP's recipe (never candidates)
TWO_BY_TWO = frozenset(line for cells in (CELLS, CELLS_ADOPTED) for line, _ in cells.values() if "-2x2" in line)


def _cell(folder: Path, line: str, method: str) -> str:
    """'dev mean ± half the range (selection mean), n seeds' of one study line and method, or why there is none."""
    f = folder / f"{line}.json"
    if not f.is_file():
        return "not run yet"
    try:
        res = load_results(f)
    except KaspError as e:
        return f"unreadable: {e}"
    if not complete(res):
        return "not run yet"  # still running: its file is not committed yet
    runs = [e for e in res["runs"] if e["method"] == method]
    dev, sel = _scores(runs, "dev"), _scores(runs, "selection")
    if not dev:
        return "no finished run"
    half = (max(dev.values()) - min(dev.values())) / 2
    return (f"{_mean(dev):.2f} ± {half:.2f}" + (f" ({_mean(sel):.2f})" if sel else "")
            + f", {len(dev)} seed{'s' if len(dev) > 1 else ''}")


def two_by_two(folder: Path) -> list[str]:
    """The 2 x 2 of student start x loss on SST-2 at 90 % (issue 24 item 5): dev accuracy mean ± half the range
    over the seeds, the selection slice's mean in brackets."""
    out = ["Which ingredient matters: SST-2 at 90 %, the student's start against its loss; dev accuracy ×100, mean "
           "± half the range over the seeds, the selection slice's mean in brackets (lines of this table: "
           + ", ".join(f"`{line}`" for line, _ in CELLS.values()) + ").", "",
           "| student starts from | task labels only | distillation from the teacher |", "|---|---|---|"]
    for start in ("pre-trained", "fine-tuned"):
        out.append(f"| {start} | " + " | ".join(_cell(folder, *CELLS[(start, loss)])
                                               for loss in ("task labels", "distillation")) + " |")
    return out


def ship(folder: Path, out: Path) -> dict:
    """Write the 2 x 2's measured cells for the app (``assets/precomputed/ingredients.json``, read by
    :func:`kasp.ui.tables.ingredient_cells`): per cell its study line, method, and dev and selection-slice scores per
    seed (fractions, as the results files hold them), with the base line's recipe and teacher. Cells not run yet are
    left out. Returns what was written."""
    import json

    base = load_results(folder / "sst2-base.json")
    rec = base["runs"][0]["recipe"]
    cells = []
    for (start, loss), (line, method) in CELLS.items():
        f = folder / f"{line}.json"
        if not f.is_file():
            continue
        res = load_results(f)
        if not complete(res):
            continue
        runs = [e for e in res["runs"] if e["method"] == method]
        if not runs:
            continue
        cells.append({"start": start, "loss": loss, "line": line, "method": method,
                      "overrides": {k: v for k, v in ((res.get("plan") or {}).get("overrides") or {}).items()},
                      "dev": {str(e["seed"]): e["metrics"][e["main_metric"]] for e in runs},
                      "selection": {str(e["seed"]): (e.get("selection_metrics") or {}).get(e["main_metric"]) for e in runs}})
    data = {"task": "sst2", "sparsity": 0.9, "main_metric": base["main_metric"],
            "source": "precomputed study runs (scripts/run_study.sh, bench/study/)",
            "recipe": {"max_steps": rec["max_steps"], "max_seq_length": rec["max_seq_length"], "holdout": rec.get("holdout"),
                       "lr": rec["lr"], "teacher_steps": (base["teacher"].get("recipe") or {}).get("max_steps")},
            "teacher": {"run_id": base["teacher"]["run_id"], "metric": base["teacher"]["metric"]},
            "cells": cells}
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


def at_default_recipe(res: dict) -> bool:
    """Whether a study line's KASP runs ran their task's KASP default as it is today (the recipe fields,
    kasp.spec.config.RECIPE_KEYS, of kasp.spec.config.default_recipe; budget and held-out slice aside): MRPC's base
    line did until MRPC adopted mrpc-sst2-recipe, which does since."""
    from kasp.spec.config import RECIPE_KEYS, default_recipe, field_defaults

    want = {**field_defaults(), **default_recipe("prune", "kasp", res["task"])}
    runs = [e for e in res["runs"] if e["method"] == "kasp"]
    return bool(runs) and all(e["recipe"].get(k, field_defaults().get(k)) == want.get(k)
                              for e in runs for k in RECIPE_KEYS)


def _budget_lines(folder: Path) -> dict[str, dict]:
    """Per small task (not SST-2), its finished study line with the longest step budget among those that ran the
    task's default recipe of today (:func:`at_default_recipe`; KASP only, not the 2 x 2's): the base line, the adopted
    line, or a longer line such as ``mrpc-epochs10``. Name -> results, in task order."""
    best: dict[str, tuple[int, str, dict]] = {}
    for name, res in lines(folder).items():
        if not isinstance(res, dict) or res["task"] == "sst2" or {e["method"] for e in res["runs"]} != {"kasp"}:
            continue
        if name in TWO_BY_TWO or not at_default_recipe(res):
            continue
        steps = _budget(res) or 0
        if res["task"] not in best or steps > best[res["task"]][0]:
            best[res["task"]] = (steps, name, res)
    return {name: res for _, (_, name, res) in sorted(best.items())}


def longer_budgets(folder: Path) -> dict:
    """For each small task with a finished line that changes only the budget (:func:`_budget_lines`, the longest
    such line; not SST-2): what KASP at 90 % reached
    with the study's budget and teacher, per seed, at the end and at each evaluation point on the way (step,
    sparsity, dev metric), for the app's sentence on the budget a task would need
    (:func:`kasp.ui.tables.longer_budget`). Metrics are fractions, as the results files hold them."""
    tasks = {}
    for name, res in _budget_lines(folder).items():
        runs = [e for e in res["runs"] if e["method"] == "kasp" and e["sparsity"] == 0.9]
        if not runs:
            continue
        main, rec = res["main_metric"], runs[0]["recipe"]
        steps = runs[0]["steps"]
        evals: dict[int, dict] = {}
        for e in runs:
            for p in (e.get("progress") or {}).get("eval") or []:
                if main in (p.get("metrics") or {}):
                    row = evals.setdefault(p["step"], {"step": p["step"], "sparsity": p.get("sparsity"), "dev": {}})
                    row["dev"][str(e["seed"])] = p["metrics"][main]
        tasks[res["task"]] = {
            "line": name, "main_metric": main, "steps": steps,
            "epochs": _epochs(res, runs[0]),
            "teacher": {"run_id": res["teacher"]["run_id"], "metric": res["teacher"]["metric"],
                        "epochs": (res["teacher"].get("recipe") or {}).get("epochs")},
            "holdout": rec.get("holdout"),
            "dev": {str(e["seed"]): e["metrics"][main] for e in runs},
            "evals": [evals[k] for k in sorted(evals)]}
    return {"source": "precomputed recipe-study runs (scripts/run_study.sh, bench/study/)", "sparsity": 0.9,
            "tasks": tasks}


def _epochs(res: dict, run: dict) -> float:
    """Passes over the run's training examples: its steps over the steps of one epoch of its recipe
    (:func:`kasp.experiments.sweep.steps_for_epochs`)."""
    from kasp.experiments.sweep import steps_for_epochs

    rec = run["recipe"]
    per_epoch = steps_for_epochs(res["task"], 1, rec.get("batch_size"), int(rec.get("holdout") or 0),
                                 rec.get("max_train_samples"))
    return round(run["steps"] / per_epoch, 2)


def ship_budgets(folder: Path, out: Path) -> dict:
    """Write :func:`longer_budgets` to ``out`` (``assets/precomputed/longer_budgets.json``); returns it."""
    import json

    data = longer_budgets(folder)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


def block(folder: Path) -> str:
    """The Markdown between the markers: the teachers' lines, the table, then the 2 x 2."""
    notes = slice_lines(folder)
    return "\n".join([START, *teacher_lines(folder), *(["", *notes] if notes else []), "", *rows(folder), "",
                       *two_by_two(folder), END])


def write(doc: Path, folder: Path) -> None:
    """Replace the block between the markers of ``doc`` (which must hold both markers)."""
    replace_block(doc, START, END, block(folder))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--write"]:
        write(Path(args[1]), Path(args[2]) if len(args) > 2 else ROOT / "bench" / "study")
    elif args[:1] == ["--ship"]:
        ship(Path(args[2]) if len(args) > 2 else ROOT / "bench" / "study", Path(args[1]))
    elif args[:1] == ["--combination"]:  # --combination TASK [FOLDER] [--max-steps N]
        rest, steps = args[2:], None
        if "--max-steps" in rest:
            i = rest.index("--max-steps")
            steps, rest = int(rest[i + 1]), rest[:i] + rest[i + 2:]
        print(combination_flags(Path(rest[0]) if rest else ROOT / "bench" / "study", args[1], steps))
    elif args[:1] == ["--complete"]:  # --complete FILE: exit 0 when the line has every run it planned
        try:
            sys.exit(0 if complete(load_results(Path(args[1]))) else 1)
        except KaspError as e:
            sys.exit(f"{args[1]}: {e}")
    elif args[:1] == ["--adoption"]:  # --adoption TASK [FOLDER]
        name, over, steps = adoption(Path(args[2]) if len(args) > 2 else ROOT / "bench" / "study", args[1])
        print(f"{name}: {steps} steps, {over}" if name else f"no {args[1]} line wins: the default stays")
    elif args[:1] == ["--ship-budgets"]:
        ship_budgets(Path(args[2]) if len(args) > 2 else ROOT / "bench" / "study", Path(args[1]))
    else:
        print("\n".join(rows(Path(args[0]) if args else ROOT / "bench" / "study")))
