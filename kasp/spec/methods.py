"""One record per pruning method: what every part of KASP needs to know about a method, in one place.

A method is how a prune run turns a pre-trained or fine-tuned BERT into a smaller student. Every site
that used to test a method's name (the recipe defaults, the CLI's choices, the sweep, the training
loop, the run store's sparsity axis, the app's labels, colours and captions, the model card) reads
the :class:`Method` record here instead. Adding a fourth method means adding one record to
:data:`METHODS` and, where it trains differently, one function in the training code.

The methods (docs/method.md):

- ``kasp``: the SparseBERT method (Xu et al., NAACL 2021): the *pre-trained* model is pruned with
  unstructured magnitude masks on a cubic schedule (Zhu & Gupta 2017, eq. 1) while the fine-tuned
  teacher is distilled into it (attention scores, hidden states, logits; TinyBERT's losses, Jiao et
  al. 2020, eqs. 7-10).
- ``magnitude``: the baseline the paper compares with: the *fine-tuned* model pruned on the same
  schedule and retrained with the task loss alone.
- ``magnitude-distil``: the well-tuned baseline (GMP*, Kurtic & Alistarh 2022): the *fine-tuned* model pruned on
  the same schedule with the teacher distilled into it as KASP distils it; only the student's start differs
  from KASP. Not in a default sweep.
- ``small-dense``: a dense pre-trained student made smaller (fewer layers, narrower FFN) to the
  number of weights that ``sparsity`` leaves non-zero, distilled like KASP, never masked
  (:mod:`kasp.core.small_dense`).

Torch-free, so the app, the CLI's parser and the sweep's results reader can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from kasp.ground.errors import KaspError


@dataclass(frozen=True)
class Method:
    """Everything KASP knows about one pruning method.

    Attributes:
        name: the key recipes, results files and the CLI write ("kasp").
        label: how the app names it ("KASP").
        colour: its colour in every figure (Okabe-Ito palette, hex).
        student: where the student starts: "pretrained" or "finetuned" (the teacher's weights).
        masked: True when the student's encoder linear weights are masked to ``sparsity`` zeros;
            False when the student is a smaller dense model whose size ``sparsity`` stands for.
        recipe: the method's default recipe fields (loss weights, learning rate and schedule,
            epochs); :func:`kasp.spec.config.default_recipe` adds the task's budget.
        description: one sentence for the model card ("what this checkpoint is").
        choice: the Prune page's text for the method's radio button.
        caption_name: how a chart caption names it beside KASP ("magnitude baseline").
        claim: the paper's claim that comparing KASP with this method tests, or None (KASP itself).
        step_seconds: measured seconds per optimizer step of MiniLM-L6 at batch 32 on 2 cores
            (docs/cpu.md), for estimates before a run has been timed.
        swept: True when ``kasp sweep`` runs the method by default (``--methods`` chooses otherwise).
    """

    name: str
    label: str
    colour: str
    student: Literal["pretrained", "finetuned"]
    masked: bool
    recipe: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    choice: str = ""
    caption_name: str = ""
    claim: str | None = None
    step_seconds: float = 0.44
    swept: bool = True

    def axis_sparsity(self, measured: float | None, equivalent: float | None) -> float | None:
        """Where a finished run of this method sits on a sparsity axis (fraction of the encoder linear
        weights): the measured fraction of zeros of a masked student; for an unmasked (smaller dense)
        student, the sparsity its number of weights equals (``equivalent``), falling back to ``measured``."""
        if not self.masked and equivalent is not None:
            return equivalent
        return measured


_DISTIL = {"attention_weight": 1.0, "hidden_weight": 1.0, "prediction_weight": 1.0, "task_loss_weight": 0.0}
_TASK_LOSS = {"attention_weight": 0.0, "hidden_weight": 0.0, "prediction_weight": 0.0, "task_loss_weight": 1.0}
_SCHEDULE = {"lr": 1e-4, "lr_schedule": "constant", "warmup_ratio": 0.0, "epochs": 5.0}

#: the pruning methods, in the order the app and the sweep list them
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("kasp", "KASP", "#0072B2", student="pretrained", masked=True, recipe={**_SCHEDULE, **_DISTIL},
           description="KASP / SparseBERT: the pre-trained model pruned with per-matrix magnitude masks on a cubic "
                       "schedule while the fine-tuned teacher is distilled into it (attention scores, hidden states, "
                       "logits)",
           choice="KASP: distil the fine-tuned teacher into the pruned pre-trained model",
           caption_name="KASP", step_seconds=0.44),
    Method("magnitude", "magnitude baseline", "#D55E00", student="finetuned", masked=True,
           recipe={**_SCHEDULE, **_TASK_LOSS},
           description="magnitude pruning of the fine-tuned model on a cubic schedule with the task loss (baseline)",
           choice="Magnitude baseline: prune the fine-tuned model, retrain with the task loss",
           caption_name="magnitude baseline",
           claim="distilling while pruning beats pruning the fine-tuned model", step_seconds=0.33),
    Method("small-dense", "small dense", "#009E73", student="pretrained", masked=False, recipe={**_SCHEDULE, **_DISTIL},
           description="a dense pre-trained student with fewer layers / a narrower FFN, distilled from the teacher "
                       "(baseline; as many encoder linear weights as the pruned models keep non-zero)",
           choice="Small-dense baseline: distil into fewer, dense layers with as many weights as the sparsity "
                  "leaves",
           caption_name="small dense model",
           claim="a sparse model beats a small dense one with as many non-zero weights", step_seconds=0.44),
    # the well-tuned baseline (issue 24): GMP* (Kurtic & Alistarh 2022) showed that magnitude pruning of the
    # fine-tuned model with the dense teacher distilled into it matches most BERT-pruning methods. It separates
    # KASP's two ingredients (start and loss): against it, only the start differs. Not in a default sweep.
    Method("magnitude-distil", "magnitude + distillation", "#882255", student="finetuned", masked=True,
           recipe={**_SCHEDULE, **_DISTIL},
           description="magnitude pruning of the fine-tuned model on a cubic schedule with the fine-tuned teacher "
                       "distilled into it (attention scores, hidden states, logits): the well-tuned baseline",
           choice="Magnitude + distillation: prune the fine-tuned model, distil the teacher into it (a well-tuned "
                  "baseline)",
           caption_name="magnitude baseline with distillation",
           claim="starting from the pre-trained model beats starting from the fine-tuned one, with the same "
                 "distillation", step_seconds=0.44, swept=False),
)}

#: the methods ``kasp sweep`` runs when ``--methods`` is not given
SWEPT_METHODS: tuple[str, ...] = tuple(m.name for m in METHODS.values() if m.swept)

#: the dense teacher's fine-tuning, where a method name is expected (recipes write method "finetune")
FINETUNE = "finetune"
#: the seconds per step of fine-tuning (docs/cpu.md), beside each method's ``step_seconds``
FINETUNE_STEP_SECONDS = 0.33
#: what the fine-tuning of the teacher is, for the model card
FINETUNE_DESCRIPTION = "dense fine-tuning with the task loss"
#: the method every comparison is made against (the paper's; every other method's ``claim`` is about it)
REFERENCE = "kasp"


def method_names() -> tuple[str, ...]:
    """The pruning methods' names, in order: ("kasp", "magnitude", "small-dense", "magnitude-distil")."""
    return tuple(METHODS)


def label(name: Any) -> str:
    """How KASP names a method in text ("KASP", "magnitude baseline"; "dense teacher" for the teacher's
    fine-tuning); other strings as they are, "?" for a non-string."""
    if not isinstance(name, str):
        return "?"
    if name == FINETUNE:
        return "dense teacher"
    m = METHODS.get(name)
    return m.label if m else name


def get_method(name: str) -> Method:
    """The record of a pruning method.

    Raises:
        KaspError: an unknown name, with the names to choose from.
    """
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise KaspError(f"unknown method {name!r}: choose from {', '.join(METHODS)}") from None


def is_masked(name: Any) -> bool:
    """True when runs of method ``name`` mask their student (False for a smaller dense student, the
    dense teacher's fine-tuning and unknown names)."""
    m = METHODS.get(name) if isinstance(name, str) else None
    return bool(m and m.masked)


def shrinks_student(name: Any) -> bool:
    """True when method ``name`` makes the student smaller instead of masking it (small-dense)."""
    m = METHODS.get(name) if isinstance(name, str) else None
    return bool(m and not m.masked)


def step_seconds(name: str) -> float:
    """Measured seconds per step of ``name`` ("finetune" or a method; docs/cpu.md); KASP's for an unknown name."""
    if name == FINETUNE:
        return FINETUNE_STEP_SECONDS
    m = METHODS.get(name)
    return m.step_seconds if m else METHODS["kasp"].step_seconds


def axis_sparsity(method: Any, measured: float | None, equivalent: float | None) -> float | None:
    """Where a run sits on a sparsity axis (see :meth:`Method.axis_sparsity`); for an unknown method
    or the teacher, ``equivalent`` when given, else ``measured``."""
    m = METHODS.get(method) if isinstance(method, str) else None
    if m is None:
        return equivalent if equivalent is not None else measured
    return m.axis_sparsity(measured, equivalent)
