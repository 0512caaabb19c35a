"""Overview: what KASP does, the cubic schedule, and dev metric against sparsity for the chosen task."""

import streamlit as st

from kasp.ui import urlstate
from kasp.ui.figures import METHOD_LABELS, accuracy_sparsity_figure, caption_facts, curve_caption, curve_notes, schedule_figure
from kasp.ui.tables import PAPER, ingredient_cells
from kasp.ui.figures import ingredients_caption, ingredients_figure
from kasp.ui.curves import curve_data, schedule_frame
from kasp.ui.devset import majority_metric
from kasp.ui.presets import view_presets
from kasp.ui.engine import asset, make_config, metric_label, shipped_status, task_name
from kasp.ui.figures import mark_point, mark_x, xpos
from kasp.ui.launch import recipe_origin
from kasp.ui.lesson import (active, budget_line, budget_need, explain, glossary_box, lesson_bar, start_link,
                             teacher_at_chance)

task = st.session_state.get("task", "sst2")

st.title("Knowledge-aware sparse pruning")
url_slot = urlstate.page("sparsity", "steps", "methods")
PAGE = "pages/overview.py"
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

glossary_box()

st.subheader("Start with a question")
start_link(st, task)
presets = view_presets(task)
for i in range(0, len(presets), 2):
    for col, p in zip(st.columns(2), presets[i:i + 2]):
        urlstate.preset_link(col, p)

lesson_bar(PAGE, budget_line(task), here="the-cubic-sparsity-schedule")
st.header("The cubic sparsity schedule", anchor="the-cubic-sparsity-schedule",
          help=explain("cubic schedule", "s_f", "sparsity", "encoder linear weights"))
c1, c2, c3 = st.columns(3)
urlstate.seed("sparsity", "ov_target", float, lambda v: 0.0 <= v <= 0.99, "sparsity")
urlstate.seed("steps", "ov_steps", int, lambda v: 10 <= v <= 100_000, "steps")
st.session_state.setdefault("ov_target", 0.9)
st.session_state.setdefault("ov_steps", 2000)
target = c1.slider("Target sparsity", 0.0, 0.99, step=0.01, key="ov_target",
                   help="Fraction of encoder linear weights set to zero at the end.")
steps = c2.number_input("Training steps T", 10, 100_000, step=10, key="ov_steps",
                        help="Optimizer steps of the run; the schedule spans all of them.")
urlstate.write("sparsity", target, lambda v: f"{v:g}")
urlstate.write("steps", int(steps))
events = c3.number_input("Mask updates", 1, 1000, 100, 1, help="Masks are recomputed every round(T / N) steps.")
# the two options GMP* takes (Kurtic & Alistarh 2022); off, as in the paper, until the user moves them
default = make_config("prune", "kasp", task, sparsity=target)
c4, c5 = st.columns(2)
initial = c4.slider("First pruning step s_i", 0.0, 0.99, 0.0, 0.05, key="ov_initial",
                    help="Sparsity imposed at step 0, before training (a large first pruning step, as GMP★ takes); "
                         "the schedule climbs from it to the target. Capped at the target. 0: the paper's schedule.")
recovery = c5.slider("Recovery phase (fraction of T)", 0.0, 0.9, 0.0, 0.05, key="ov_recovery",
                     help="The last part of the run, after the schedule has reached the target: masks fixed, the "
                          "learning rate decays to 0. 0: the schedule spans the whole run, as in the paper.")
initial = min(initial, target)
curve, points = schedule_frame(target, int(steps), int(events), initial, recovery)
half = curve.iloc[(curve["step"] - steps // 2).abs().argmin()]["sparsity"]
fig = schedule_figure(curve, points, initial=initial, recovery=recovery)
if active(PAGE, "schedule"):
    mark_point(fig, int(steps) // 2, half * 100, f"half-way: {half * 100:.0f} % already pruned")
st.plotly_chart(fig, width="stretch")
st.caption(f"Computed from the formula. Half-way through the run the schedule is already at {half * 100:.1f} % "
           f"({half / target * 100 if target else 0:.0f} % of the target): most weights go early, while the "
           "student still has many steps to recover."
           + (f" {task_name(task)}'s default KASP recipe prunes to {default.initial_sparsity * 100:g} % at step 0 and "
              f"spends the last {default.recovery * 100:g} % of its steps at the target ({recipe_origin('kasp', task)}; "
              "docs/results.md): set the two sliders to those values to see its schedule."
              if default.initial_sparsity or default.recovery else ""))

lesson_bar(PAGE, budget_line(task), here="dev-metric-against-sparsity")
st.header(f"{task_name(task)}: dev {metric_label(task)} against sparsity", anchor="dev-metric-against-sparsity",
          help=explain("teacher", "student", "distillation", "magnitude baseline", "small dense", "majority class"))
points, teacher, published, error = curve_data(task)
if error:
    st.error(error)
partial = shipped_status(task)
if partial:
    st.caption(":material/hourglass_top: " + partial)
metric = metric_label(task)
base = majority_metric(task)
if points.empty and published.empty and teacher is None:
    st.info(f"No results for {task_name(task)} yet: no sweep, precomputed or published figures ship for this task. "
            "Launch runs on the Prune page and they appear here.")
else:
    present = [m for m in METHOD_LABELS if m in set(points["method"])] if len(points) else []
    if len(present) > 1:
        urlstate.seed("methods", "ov_methods", lambda v: [] if v == "none" else urlstate.split(v),
                      lambda v: set(v) <= set(present), "methods")
        if not set(st.session_state.get("ov_methods") or []) <= set(present):
            del st.session_state["ov_methods"]  # another task's choice
        st.session_state.setdefault("ov_methods", present)
        shown = st.pills("Methods shown", present, selection_mode="multi", key="ov_methods",
                         format_func=lambda m: METHOD_LABELS.get(m, m),
                         help="Compare two methods at a time; the dense teacher and the paper's figures always show.")
        urlstate.write("methods", None if set(shown) == set(present) else (shown or "none"),
                       lambda v: v if v == "none" else urlstate.join(v))
        points = points[points["method"].isin(shown)]
    compression = st.toggle("Compression axis (×, log scale)", key="x_compression",
                            help="Show the x axis as compression, 1 / (1 − sparsity): ×10 is 90 % sparse, ×20 (the "
                                 "paper's figure) 95 %. A log scale spreads out the high sparsities, where the methods differ.")
    fig = accuracy_sparsity_figure(points, teacher, published, metric, task, baseline=base, compression=compression)
    if active(PAGE, "distil") or active(PAGE, "small"):
        mark_x(fig, xpos(90.0, compression), "90 %: compare the methods here")
    st.plotly_chart(fig, width="stretch")
    chance = teacher_at_chance(task, teacher[0] if teacher else None)
    st.caption(curve_caption(points, metric, baseline=base, teacher=teacher[0] if teacher else None,
                             teacher_at_chance=chance))
    if not caption_facts(points, 0.9, base, teacher[0] if teacher else None, chance)["learnt"]:
        need = budget_need(task, base)  # the recipe study's longer run, where one ships for this task
        if need:
            st.caption(":material/schedule: " + need)
    for note in curve_notes(points):  # undefined metrics (gaps) and GLUE's constant-predictor convention
        st.caption(":material/info: " + note)
    st.caption("Sources: **precomputed sweep** = `kasp sweep` results shipped in assets/sweeps (mean over seeds, "
               "bars span the seeds; recipe in the hover text); **live run** = a run in this machine's store; "
               "**precomputed run** = a real run shipped in assets/precomputed (recipe on the Results page); "
               "**GPU sweep** (triangles, where shipped) = the same sweep at the paper's length on one GPU "
               "(`scripts/gpu_sweep.py`, assets/sweeps/gpu); "
               "**published** = " + PAPER + ". Published figures are for BERT-base, not the default MiniLM model.")
cells, study = ingredient_cells(task)
if len(cells):
    st.header(f"Which ingredient matters? ({task_name(task)}, {study['sparsity'] * 100:g} %)",
              anchor="which-ingredient-matters", help=explain("teacher", "student", "distillation"))
    st.markdown("KASP changes two things at once: the student **starts** from the pre-trained model (not the "
                "fine-tuned one), and it **learns** from the teacher (not only from the labels). Crossing the two "
                "tells which one carries the gain.")
    st.plotly_chart(ingredients_figure(cells, study["teacher"]["metric"], metric), width="stretch", key="ingredients")
    st.caption(ingredients_caption(cells))
    r = study["recipe"]
    st.caption(f"Source: {study['source']}, two seeds a cell where measured (bars span them); recipe: "
               f"{r['max_steps']:,} prune steps, inputs cut at {r['max_seq_length']} tokens, learning rate {r['lr']:g}, "
               f"{r['holdout']} training sentences held out for choosing recipes; teacher `{study['teacher']['run_id']}` "
               f"({r['teacher_steps']:,} steps, the same sentences held out; not the sweep's teacher above, which saw them all). The fine-tuned start is the teacher "
               "itself, pruned as the magnitude baseline prunes it; with distillation it is the well-tuned baseline of "
               "GMP★ (Kurtic & Alistarh, 2022), `kasp prune --method magnitude-distil`.")
urlstate.show_problems(url_slot)
urlstate.share_box()
