"""Overview: what KASP does, the cubic schedule, and dev metric against sparsity for the chosen task."""

import streamlit as st

from kasp.figures import accuracy_sparsity_figure, curve_caption, schedule_figure
from kasp.resources import asset
from kasp.sweep import curve_data
from kasp.views import PAPER, metric_heading, metric_label, schedule_frame, task_name

task = st.session_state.get("task", "sst2")

st.title("Knowledge-aware sparse pruning")
st.markdown(
    """
**Pruning** sets most weights of a network to zero. Under the pre-train / fine-tune paradigm the usual
recipe prunes the **fine-tuned** model and retrains it on the (small) task data, which loses the general
knowledge that lived in the removed weights.

**KASP** (SparseBERT, Xu et al., *Rethinking Network Pruning under the Pre-train and Fine-tune Paradigm*,
NAACL 2021) changes who is pruned and what it learns from:
- the **teacher** is the fine-tuned model, frozen;
- the **student** is the **pre-trained** (not fine-tuned) model, pruned with unstructured per-matrix
  magnitude **masks** on a **cubic schedule** *while* the teacher is **distilled** into it: pre-softmax
  attention scores, hidden states and soft logits, in one stage.
"""
)
st.image(str(asset("kasp_diagram.svg")), caption="KASP in one picture: distil while pruning.")

st.header("The cubic sparsity schedule")
c1, c2, c3 = st.columns(3)
target = c1.slider("Target sparsity", 0.0, 0.99, 0.9, 0.01, help="Fraction of encoder linear weights set to zero at the end.")
steps = c2.number_input("Training steps T", 10, 100_000, 2000, 10, help="Optimizer steps of the run; the schedule spans all of them.")
events = c3.number_input("Mask updates", 1, 1000, 100, 1, help="Masks are recomputed every round(T / N) steps.")
curve, points = schedule_frame(target, int(steps), int(events))
st.plotly_chart(schedule_figure(curve, points), width="stretch")
half = curve.iloc[(curve["step"] - steps // 2).abs().argmin()]["sparsity"]
st.caption(f"Computed from the formula. Half-way through the run the schedule is already at {half * 100:.1f} % "
           f"({half / target * 100 if target else 0:.0f} % of the target): most weights go early, while the "
           "student still has many steps to recover.")

st.header(f"{task_name(task)}: dev {metric_heading(task)} against sparsity")
points, teacher, published, error = curve_data(task)
if error:
    st.error(error)
metric = metric_label(task)
if points.empty and published.empty and teacher is None:
    st.info(f"No results for {task_name(task)} yet: no sweep, precomputed or published figures ship for this task. "
            "Launch runs on the Prune page and they appear here.")
else:
    st.plotly_chart(accuracy_sparsity_figure(points, teacher, published, metric, task), width="stretch")
    st.caption(curve_caption(points, metric))
    st.caption("Sources: **precomputed sweep** = `kasp sweep` results shipped in assets/sweeps (mean over seeds, "
               "bars span the seeds; recipe in the hover text); **live run** = a run in this machine's store; "
               "**precomputed run** = a real run shipped in assets/precomputed (recipe on the Results page); "
               "**published** = " + PAPER + ". Published figures are for BERT-base, not the default MiniLM model.")
