"""What a checkpoint says about itself: a model card (``README.md``) and a ``kasp`` block in ``config.json``.

Every checkpoint that :func:`kasp.training.train.train` writes carries both, built from the run's final report
(the same dict as ``report.json``) and its recipe, so a checkpoint copied out of the run store still
tells what it is: the task, the dev metric and on how many examples, the method, the sparsity of the
pruned set (the six encoder linear weights of every layer, :mod:`kasp.spec.pruned_set`) and over all
parameters, the recipe, the teacher, the seed, the wall time and the paper. ``kasp inspect`` and the
Inspect page read the block back (:func:`read_card_facts`).

The ``kasp`` block (``config.json["kasp"]``, format 1)::

    {"format": 1, "kind": "prune", "task": "sst2", "method": "kasp",
     "metric": {"name": "accuracy", "value": 0.8658, "split": "dev", "dev_examples": 872, "all": {...}},
     "sparsity": {"target": 0.9, "encoder_linear": 0.9, "all_parameters": 0.4207, "encoder_linear_zeros": ...,
                  "encoder_linear_params": ..., "total_zeros": ..., "total_params": ...},
     "teacher": {"path": ..., "metrics": {...}} | null, "seed": 42, "steps": 2000,
     "wall_seconds": 912.3, "train_seconds": 850.1, "recipe": {...}, "base_model": "default",
     "kasp_version": "0.1.0", "paper": "...", "written": "2026-12-02T07:00:00Z"}

Fractions are in [0, 1]; times in seconds. No torch here: the app's pages may import it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from kasp.ground.errors import KaspError
from kasp.spec.methods import FINETUNE, FINETUNE_DESCRIPTION, METHODS, label

CARD_FILE = "README.md"
FORMAT = 1
PAPER = ("Dongkuan Xu, Ian E.H. Yen, Jinxi Zhao, Zhibin Xiao. Rethinking Network Pruning - under the Pre-train "
         "and Fine-tune Paradigm. NAACL-HLT 2021. doi:10.18653/v1/2021.naacl-main.188")
_BIBTEX = """@inproceedings{xu-etal-2021-rethinking,
  title = {Rethinking Network Pruning -- under the Pre-train and Fine-tune Paradigm},
  author = {Xu, Dongkuan and Yen, Ian E.H. and Zhao, Jinxi and Xiao, Zhibin},
  booktitle = {Proceedings of the 2021 Conference of the North American Chapter of the Association for Computational Linguistics: Human Language Technologies},
  year = {2021},
  doi = {10.18653/v1/2021.naacl-main.188}
}"""
_METHODS = {FINETUNE: FINETUNE_DESCRIPTION, **{m.name: m.description for m in METHODS.values()}}


def card_facts(report: dict[str, Any], recipe: dict[str, Any], provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``kasp`` block of a checkpoint's ``config.json``, from a run's report and recipe.

    Args:
        report: the run's final report (``report.json``; needs ``task``, ``kind``, ``method``,
            ``metrics``, ``main_metric``, ``sparsity``; the rest is taken when present).
        recipe: the run's recipe (:meth:`kasp.spec.config.RunConfig.to_dict`).
        provenance: the run's provenance (``config.json["provenance"]`` of the run), for the versions.

    Returns:
        the block described in the module docstring (JSON-serialisable).

    Raises:
        KaspError: when the report lacks one of the required keys.
    """
    missing = [k for k in ("task", "kind", "method", "metrics", "main_metric", "sparsity") if k not in report]
    if missing:
        raise KaspError(f"cannot write a model card: the run report lacks {', '.join(missing)}")
    m, s = report["metrics"], report["sparsity"]
    provenance = provenance or {}
    teacher = report.get("teacher")
    return {
        "format": FORMAT, "kind": report["kind"], "task": report["task"], "method": report["method"],
        "metric": {"name": report["main_metric"], "value": m.get(report["main_metric"]), "split": "dev",
                   "dev_examples": m.get("n", report.get("dev_examples")),
                   "all": {k: v for k, v in m.items() if k != "n"}},
        "sparsity": {"target": report.get("target_sparsity"), "encoder_linear": s.get("pruned_sparsity"),
                     "all_parameters": s.get("overall_sparsity"), "encoder_linear_zeros": s.get("pruned_zeros"),
                     "encoder_linear_params": s.get("pruned_params"), "total_zeros": s.get("total_zeros"),
                     "total_params": s.get("total_params")},
        "teacher": {"path": teacher.get("path"), "metrics": teacher.get("metrics")} if teacher else None,
        "seed": recipe.get("seed"), "steps": report.get("steps"), "wall_seconds": report.get("wall_seconds"),
        "train_seconds": report.get("train_seconds"), "keep_sparsity": bool(recipe.get("keep_sparsity")),
        "recipe": dict(recipe), "base_model": recipe.get("model"),
        "kasp_version": provenance.get("kasp") or _version(),
        "paper": PAPER,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _version() -> str:
    import kasp

    return kasp.__version__


def _pct(x: Any) -> str:
    from kasp.spec.metrics import metric_value

    v = metric_value({"x": x}, "x")  # a finite number, else "?" (never a NaN or a string formatted as one)
    return "?" if v is None else f"{v * 100:.2f} %"


def metric_text(metric: dict[str, Any], unit: str = "") -> str:
    """The dev metric of a ``kasp`` block as text, x100 with ``unit``, and its note: "86.47 %",
    "undefined (constant predictions)", "0.00 ×100 (constant predictions: GLUE's convention)"; never a number
    for an undefined value (issue 26: undefined is not zero)."""
    from kasp.spec.metrics import metric_note, metric_value

    name = metric.get("name")
    allm = metric.get("all") if isinstance(metric.get("all"), dict) else {}
    src = {**allm, name: metric.get("value")} if name not in allm else allm
    v, note = metric_value(src, name), metric_note(src, name)
    if v is None:
        return f"undefined ({note})" if note and note != "undefined" else "undefined"
    return f"{v * 100:.2f}{' ' + unit if unit else ''}" + (f" ({note})" if note else "")


def _y(v: Any) -> str:
    """A YAML scalar (JSON is valid YAML)."""
    return json.dumps(v)


def render_card(facts: dict[str, Any], name: str = "this model") -> str:
    """The model card (Markdown with YAML front matter, Hugging Face style) for a ``kasp`` block.

    Args:
        facts: what :func:`card_facts` returned.
        name: how the card names the model (the run id).
    """
    return "\n".join(_front_matter(facts, name) + _card_body(facts, name))


def _front_matter(facts: dict[str, Any], name: str) -> list[str]:
    """The card's YAML front matter: tags, the Hub's model-index (the dev metric) and the ``kasp`` facts."""
    from kasp.spec.tasks import get_task, metric_label, task_name

    task = get_task(facts["task"])
    metric = facts["metric"]
    sp = facts["sparsity"]
    value = metric.get("value")
    tags = ["kasp", "text-classification", "glue", task.name]
    if (sp.get("encoder_linear") or 0) > 0:
        tags += ["pruning", "sparse", "unstructured-sparsity"]
    return [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [" + ", ".join(_y(t) for t in tags) + "]",
        "datasets: [\"nyu-mll/glue\"]",
        "model-index:",
        f"- name: {_y(name)}",
        "  results:",
        "  - task: {type: text-classification, name: Text Classification}",
        f"    dataset: {{name: {_y('GLUE ' + task_name(task.name))}, type: nyu-mll/glue, config: {task.name}, "
        f"split: validation}}",
        "    metrics:",
        f"    - {{type: {metric['name']}, value: {_y(value)}, name: {_y('dev ' + metric_label(task.name))}}}",
        "kasp:",
        f"  kind: {_y(facts['kind'])}",
        f"  method: {_y(facts['method'])}",
        f"  task: {_y(task.name)}",
        f"  dev_examples: {_y(metric.get('dev_examples'))}",
        f"  encoder_linear_sparsity: {_y(sp.get('encoder_linear'))}",
        f"  all_parameters_sparsity: {_y(sp.get('all_parameters'))}",
        f"  target_sparsity: {_y(sp.get('target'))}",
        f"  seed: {_y(facts.get('seed'))}",
        f"  steps: {_y(facts.get('steps'))}",
        f"  wall_seconds: {_y(facts.get('wall_seconds'))}",
        "---",
        "",
    ]


def _card_body(facts: dict[str, Any], name: str) -> list[str]:
    """The card's Markdown: the facts table, how to load it, the recipe, the method and its citation."""
    from kasp.spec.tasks import get_task, metric_label, task_name

    task = get_task(facts["task"])
    metric = facts["metric"]
    sp = facts["sparsity"]
    recipe = facts.get("recipe") or {}
    unit = "×100" if metric["name"] in ("mcc", "pearson", "spearman") else "%"
    teacher = facts.get("teacher")
    teacher_line = "none (no distillation)"
    if teacher:
        tm = (teacher.get("metrics") or {}).get(metric["name"])
        teacher_line = f"`{teacher.get('path')}`" + (f" (dev {metric_label(task.name)} {tm * 100:.2f} {unit})"
                                                      if isinstance(tm, (int, float)) else "")
    wall = facts.get("wall_seconds")
    body = [
        f"# {name}",
        "",
        f"A classifier for GLUE {task_name(task.name)} made by KASP (knowledge-aware sparse pruning): "
        f"{_METHODS.get(facts['method'], facts['method'])}.",
        "",
        "| fact | value |",
        "|---|---|",
        f"| task | GLUE {task_name(task.name)} ({'regression' if task.is_regression else f'{task.num_labels} classes'}) |",
        f"| dev {metric_label(task.name)} | {metric_text(metric, unit)} on {metric.get('dev_examples')} dev examples |",
        f"| method | {label(facts['method'])} (`{facts['method']}`, {facts['kind']}) |",
        f"| sparsity of the encoder linear weights (Q, K, V, attention-output, FFN-in, FFN-out) | "
        f"{_pct(sp.get('encoder_linear'))} ({sp.get('encoder_linear_zeros')} of {sp.get('encoder_linear_params')} zero; "
        f"target {_pct(sp.get('target'))}) |",
        f"| sparsity over all parameters | {_pct(sp.get('all_parameters'))} ({sp.get('total_zeros')} of "
        f"{sp.get('total_params')}) |",
        f"| teacher | {teacher_line} |",
        f"| pre-trained model | `{facts.get('base_model')}` |",
        f"| seed | {facts.get('seed')} |",
        f"| steps | {facts.get('steps')} |",
        f"| wall time | {'?' if wall is None else f'{wall / 60:.1f} min'} |",
        f"| zeros kept through fine-tuning (`--keep-sparsity`) | {'yes' if facts.get('keep_sparsity') else 'no'} |",
        f"| KASP version | {facts.get('kasp_version')} |",
        "",
        "The zeros are stored in the dense weights: this checkpoint is as large as a dense one and runs at "
        "dense speed in PyTorch. `kasp export CHECKPOINT OUT --format sparse` writes a bitmask + values "
        "file; `--format onnx` a dense ONNX model for ONNX Runtime.",
        "",
        "## How to load it",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        "model = AutoModelForSequenceClassification.from_pretrained(\"path/to/this/folder\")",
        "tokenizer = AutoTokenizer.from_pretrained(\"path/to/this/folder\")",
        "```",
        "",
        "`kasp inspect path/to/this/folder` prints these facts and the per-matrix sparsity; `config.json` holds "
        "them in machine form under the key `kasp`.",
        "",
        "## Recipe",
        "",
        "```json",
        json.dumps(recipe, indent=2, sort_keys=True),
        "```",
        "",
        "## Method and citation",
        "",
        f"{PAPER}.",
        "",
        "```bibtex",
        _BIBTEX,
        "```",
        "",
    ]
    return body



def write_model_card(checkpoint: str | Path, report: dict[str, Any], recipe: dict[str, Any],
                     provenance: dict[str, Any] | None = None, name: str | None = None) -> dict[str, Any]:
    """Write ``README.md`` and the ``kasp`` block of ``config.json`` into a checkpoint directory.

    Both files are replaced atomically (temporary file, then ``os.replace``); the rest of
    ``config.json`` is kept as it is, so ``from_pretrained`` loads the checkpoint as before.

    Args:
        checkpoint: the checkpoint directory (holding ``config.json``).
        report, recipe, provenance: as for :func:`card_facts`.
        name: the model's name in the card (default: the run directory's name).

    Returns:
        the ``kasp`` block written.

    Raises:
        KaspError: no ``config.json`` in ``checkpoint``, or a report without the facts a card needs.
    """
    from kasp.ground.runs import atomic_write_text

    ck = Path(checkpoint)
    cfg_path = ck / "config.json"
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise KaspError(f"cannot write a model card into {ck}: config.json unreadable ({e})") from None
    facts = card_facts(report, recipe, provenance)
    config["kasp"] = facts
    atomic_write_text(cfg_path, json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    atomic_write_text(ck / CARD_FILE, render_card(facts, name or (ck.parent.name if ck.name == "checkpoint" else ck.name)))
    return facts


def read_card_facts(config: dict[str, Any]) -> dict[str, Any] | None:
    """The ``kasp`` block of a checkpoint's ``config.json`` (already parsed), or None when it has none
    (a checkpoint from elsewhere, or one written before KASP wrote cards)."""
    facts = config.get("kasp") if isinstance(config, dict) else None
    if not isinstance(facts, dict) or not facts.get("format"):
        return None
    return None if card_problem(facts) else facts


def card_problem(facts: Any) -> str | None:
    """Why a ``kasp`` block is not one KASP writes (so its facts are not shown), or None: a field of the
    wrong kind (metric, sparsity, recipe not objects; teacher not an object or null; an unknown task)."""
    from kasp.spec.tasks import TASKS

    if not isinstance(facts, dict):
        return f"it is a JSON {type(facts).__name__}, not an object"
    for key, kinds in (("metric", dict), ("sparsity", dict), ("recipe", (dict, type(None))), ("teacher", (dict, type(None)))):
        if not isinstance(facts.get(key), kinds):
            return f"its {key!r} is {type(facts.get(key)).__name__}, not an object"
    if not isinstance(facts.get("task"), str) or facts["task"] not in TASKS:
        return f"its task {str(facts.get('task'))[:40]!r} is not a GLUE task KASP knows"
    return None


def teacher_text(path: Any) -> str:
    """The teacher a ``kasp`` block records, as text: its path, said to be missing here when no such file or
    folder exists on this machine (a checkpoint copied from the machine that trained it records that machine's
    path); "?" when none is recorded."""
    if not isinstance(path, str) or not path:
        return "?"
    try:
        here = Path(path).exists()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a path of this machine
        here = False
    return path if here else (f"{path} (recorded on the machine that trained this checkpoint; no such path on this "
                              "machine)")


def card_summary(facts: dict[str, Any]) -> list[str]:
    """The lines ``kasp inspect`` prints (and the Inspect page shows) for a ``kasp`` block: what made it (the method
    by its display name, :func:`kasp.spec.methods.label`: "KASP", "magnitude baseline"), the dev metric, the
    sparsity, the teacher (:func:`teacher_text`)."""
    from kasp.spec.tasks import metric_label, task_name

    from kasp.spec.metrics import metric_value

    m, s = facts.get("metric") or {}, facts.get("sparsity") or {}
    unit = "×100" if m.get("name") in ("mcc", "pearson", "spearman") else "%"
    wall = metric_value(facts, "wall_seconds")
    out = [f"made by KASP {facts.get('kasp_version')}: {facts.get('kind')} {task_name(facts['task'])}, method "
           f"{label(facts.get('method'))}, seed {facts.get('seed')}, {facts.get('steps')} steps"
           + (f" in {wall / 60:.1f} min" if wall is not None else ""),
           f"dev {metric_label(facts['task'])}: {metric_text(m, unit)} on "
           f"{m.get('dev_examples')} dev examples (recorded at the end of the run)",
           f"sparsity recorded: encoder linear {_pct(s.get('encoder_linear'))} (target {_pct(s.get('target'))}), "
           f"all parameters {_pct(s.get('all_parameters'))}"]
    t = facts.get("teacher")
    if t:
        out.append(f"teacher: {teacher_text(t.get('path'))}")
    if facts.get("keep_sparsity"):
        out.append("fine-tuned with --keep-sparsity (the starting checkpoint's zeros kept)")
    return out
