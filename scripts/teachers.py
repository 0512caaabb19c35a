"""Teachers trained until they stop improving (issue 29 item 1): record a `kasp finetune --select-best` run, and
print or write the docs table of the recorded teachers beside the published figures.

    .venv/bin/python scripts/teachers.py record runs/teachers/mrpc-e10 bench/teachers/mrpc.json
    .venv/bin/python scripts/teachers.py table                        # bench/teachers/*.json, printed
    (one row per file: <task>.json, then its variants <task>-<what>.json, e.g. another learning rate)
    .venv/bin/python scripts/teachers.py table --write docs/results.md  # replaces the table between its markers

``record`` keeps what the choice rests on: the recipe, the dev and held-out-slice metric at every evaluation point
(one a epoch in scripts/run_teachers.sh), the step kept (chosen on the slice, never on dev), wall time and machine.
tests/repo/test_teachers_docs.py checks that docs/results.md's table is what ``table`` prints for bench/teachers/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from doc_blocks import replace_block  # noqa: E402
from kasp.spec.tasks import get_task  # noqa: E402

#: GLUE dev figures of MiniLM with 6 layers and hidden size 384, from its authors' repository (microsoft/unilm,
#: minilm/README.md, "Fine-tuning on NLU tasks"; Wang et al., NeurIPS 2020); STS-B is not in it (None).
PUBLISHED = {"sst2": 91.5, "mrpc": 88.9, "rte": 68.8, "stsb": None, "cola": 47.5}
START, END = "<!-- teachers-table:start (scripts/teachers.py table --write) -->", "<!-- teachers-table:end -->"
ORDER = ("sst2", "mrpc", "rte", "stsb", "cola")


def inputs_cut(task: str, model: str, max_seq_length: int) -> dict:
    """The share (0-1) of the task's training and dev examples longer than ``max_seq_length`` tokens (special
    tokens included) under the model's tokenizer: the examples a run at that length limit sees truncated."""
    from kasp.data.files import load_split
    from kasp.models.modeling import load_tokenizer, resolve_model

    tok = load_tokenizer(resolve_model(model))
    out = {"max_seq_length": max_seq_length}
    for split in ("train", "dev"):
        df = load_split(task, split)
        b = df["text_b"].tolist() if df["text_b"].notna().any() else None
        ids = tok(df["text_a"].tolist(), b, truncation=False, return_attention_mask=False)["input_ids"]
        out[split] = sum(len(x) > max_seq_length for x in ids) / len(ids)
    return out


def record(run_dir: Path, out: Path) -> dict:
    """Write ``out`` from a finished fine-tuning run directory; returns what was written.

    Raises:
        SystemExit: the run has no report (not finished) or was not run with --holdout.
    """
    from kasp.experiments.sweep import machine
    from kasp.ground.runs import RunDir

    run = RunDir(run_dir)
    rep, recipe = run.report(), run.recipe()
    if not rep or "selection_metrics" not in rep:
        raise SystemExit(f"{run_dir}: no finished run with a held-out slice (report.json with selection_metrics)")
    main = rep["main_metric"]
    spe = rep["steps"] / rep["epochs"]
    history = [{"step": e["step"], "epoch": round(e["step"] / spe, 3), "dev": e["metrics"].get(main),
                "selection": (e.get("selection_metrics") or {}).get(main)}
               for e in run.progress() if e.get("type") == "eval"]
    data = {"format": "kasp-teacher", "task": rep["task"], "main_metric": main, "metrics": rep["metrics"],
            "selection_metrics": rep["selection_metrics"], "selected": rep.get("selected"),
            "steps": rep["steps"], "epochs": rep["epochs"], "train_examples": rep["train_examples"],
            "holdout_examples": rep.get("holdout_examples"), "wall_seconds": rep.get("wall_seconds"),
            "recipe": recipe, "history": history, "run": run_dir.name, "machine": machine(),
            "inputs_cut": inputs_cut(rep["task"], recipe.get("model") or "default", int(recipe["max_seq_length"]))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return data


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def _cut(c: dict | None) -> str:
    if not c:
        return "—"
    return f"{100 * c['train']:.1f} % / {100 * c['dev']:.1f} % (over {c['max_seq_length']} tokens)"


def rows(folder: Path) -> list[str]:
    """The table's lines, header first: one row per recorded teacher, in GLUE order."""
    out = ["| task (metric) | lr | epochs run | kept: epoch (step) | held-out slice at the kept point | dev at the kept point "
           "| dev at the last epoch | best dev of any epoch | MiniLM-L6-H384, its authors | gap "
           "| inputs over the length limit: train / dev | minutes |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    files = [f for task in ORDER for f in ([folder / f"{task}.json"] + sorted(folder.glob(f"{task}-*.json")))]
    for f in files:
        if not f.is_file():
            continue
        d = json.loads(f.read_text(encoding="utf-8"))
        task = d["task"]
        sel, h = d.get("selected") or {}, d["history"]
        dev = d["metrics"][d["main_metric"]]
        pub = PUBLISHED.get(task)
        gap = "—" if pub is None else f"{pub - 100 * dev:.1f}"
        name = f"{get_task(task).folder} ({d['main_metric']})"
        lr = (d.get("recipe") or {}).get("lr")
        out.append(f"| {name} | {'—' if lr is None else f'{lr:g}'} | {d['epochs']:g} | {sel.get('epoch', d['epochs']):g} ({sel.get('step', d['steps'])}) "
                   f"| {_pct(d['selection_metrics'][d['main_metric']])} | {_pct(dev)} | {_pct(h[-1]['dev'] if h else None)} "
                   f"| {_pct(max((e['dev'] for e in h if e['dev'] is not None), default=None))} "
                   f"| {'not published' if pub is None else pub} | {gap} | {_cut(d.get('inputs_cut'))} "
                   f"| {(d.get('wall_seconds') or 0) / 60:.1f} |")
    return out


def block(folder: Path) -> str:
    """The Markdown from the start marker to the end marker: the table, or a line saying none is recorded."""
    table = rows(folder)
    body = table if len(table) > 2 else ["No teacher recorded yet: `scripts/run_teachers.sh` writes `bench/teachers/<task>.json`."]
    return "\n".join([START, *body, END])


def write(doc: Path, folder: Path) -> None:
    """Replace the block between the markers of ``doc`` with :func:`block`."""
    replace_block(doc, START, END, block(folder))


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["record"] and len(args) == 3:
        record(Path(args[1]), Path(args[2]))
    elif args[:1] == ["table"]:
        folder = ROOT / "bench" / "teachers"
        if args[1:2] == ["--write"]:
            write(Path(args[2]), folder)
        else:
            print("\n".join(rows(folder)))
    else:
        raise SystemExit(__doc__)
