"""Attention: how much of the teacher's attention and representations a pruned student kept."""

import pandas as pd
import streamlit as st

from kasp.ui import urlstate
from kasp.ui.attention_view import head_view_html
from kasp.ui.tables import precomputed_retention, retention_rows, retention_samples, shipped_run
from kasp.ui.devset import default_example
from kasp.ui.engine import get_task, measured_sparsity, shrinks_student, task_name
from kasp.ui.models import is_shipped, model_runs, shipped_line
from kasp.ui.lesson import active, budget_line, explain, lesson_bar
from kasp.ui.measure import load_for_attention, run_retention, sentence_attention
from kasp.ground.errors import KaspError
from kasp.ui.figures import (attention_heatmap, cka_figure, head_heatmap, layer_similarity_figure, mark_x,
                             retention_scatter)
from kasp.ui.style import method_label

task = st.session_state.get("task", "sst2")
T = get_task(task)
st.title(f"Attention knowledge: {task_name(task)}")
st.caption("The paper's argument: pruning loses knowledge, distilling while pruning keeps it. These measures show "
           "where. :material/info: Attention maps are not explanations: they show where a model looks, not why it decides.")
url_slot = urlstate.page("run", "sentence", "sentence2", "samples")

runs = model_runs(kind="prune", task=task)  # the store's runs, then the models shipped with KASP
pre = precomputed_retention(task)
if not runs and pre.empty:
    st.info(f"No finished prune run for {task_name(task)} in the store, and no shipped run of {task_name(task)} carries "
            "retention measures. Launch one on the Prune page.")
    urlstate.show_problems(url_slot)
    st.stop()

SAMPLES = [32, 64, 128, 256, 512]
urlstate.seed("samples", "att_samples", int, SAMPLES, "samples")
st.session_state.setdefault("att_samples", 128)
samples = st.session_state["att_samples"]
if runs:  # the number of examples of a live measurement (the shipped runs were measured once, at the end)
    samples = st.select_slider("Dev examples used", SAMPLES, key="att_samples",
                               help="More examples: steadier numbers, slower (about 2 s per 100 examples on CPU). "
                                    "Results are cached in each run's retention.json.")
urlstate.write("samples", None if samples == 128 else samples)

# --- retention against sparsity ---------------------------------------------------------------
lesson_bar("pages/attention.py", budget_line(task), here="retention-against-sparsity")
st.header("Retention against sparsity", anchor="retention-against-sparsity", help=explain("JS", "CKA"))
live, missing = retention_rows(runs, samples)
if missing and st.button(f"Measure {len(missing)} run(s) not measured on {samples} examples yet", key="measure",
                         help="Compare each run with its teacher on the dev examples (live measurement) and cache "
                              "the result in the run directory."):
    bar = st.progress(0.0)
    for k, r in enumerate(missing):
        try:
            run_retention(r.path, samples=samples)
        except KaspError as e:
            st.warning(f"{r.id}: {e}")
        bar.progress((k + 1) / len(missing), text=r.id)
    st.rerun()  # redraw without the button, with the new measurements
if len(live) or not pre.empty:
    df = pd.concat([live, pre], ignore_index=True) if len(live) else pre
    c1, c2 = st.columns(2)
    figs = [retention_scatter(df, "attention similarity"), retention_scatter(df, "CKA")]
    if active("pages/attention.py", "kept"):
        for f in figs:
            mark_x(f, 90.0, "90 %")
    c1.plotly_chart(figs[0], width="stretch")
    c2.plotly_chart(figs[1], width="stretch")
    sources = set(pre["source"]) if not pre.empty else set()
    n_shipped = retention_samples(task)
    live_sources = set(live["source"]) if len(live) else set()
    said = (["**live run**: measured here on this machine's runs"] if "live run" in live_sources else []) + (
        ["**shipped model**: measured on the weights shipped with KASP (their recipes below)"]
        if "shipped model" in live_sources else []) + (
        ["**precomputed run**: measured on the shipped SST-2 runs of the default model"] if "precomputed run" in sources
        else []) + ([f"**precomputed sweep**: measured at the end of each run of the shipped `kasp sweep --task {task}` "
                     "(a small dense student sits at the sparsity its size equals)"] if "precomputed sweep" in sources else [])
    st.caption("Colour: the method; marker: where the number came from. " + "; ".join(said)
               + (f". The shipped sweeps and precomputed runs were measured on {n_shipped} dev examples" if n_shipped else "")
               + ("; the shipped models on 128" if "shipped model" in live_sources else "")
               + ". Recipes on the Results page.")
else:
    st.caption("No run measured yet.")


def _metrics(m: dict, when: str) -> None:
    """The summary of a retention measurement ``m`` (retention.json's keys), two metrics a row so that the numbers
    stay whole in a 1024 px window; ``when`` says where they came from (in each help)."""
    top = st.columns(2)
    top[0].metric("Attention similarity", f"{m['mean_similarity']:.3f}",
                  help="1 − Jensen–Shannon divergence (bits) of each real query's attention distribution, averaged "
                       f"over heads, layers and queries. {when}  \n" + explain("JS"))
    top[1].metric("CKA (mean)", "undefined" if m.get("mean_cka") is None else f"{m['mean_cka']:.3f}",
                  help=f"Linear CKA of layer outputs on real tokens, mean over the layers (embeddings left out). {when}"
                       "  \n" + explain("CKA") + " " + ((m.get("undefined") or {}).get("cka") or ""))
    if m.get("agreement") is not None:  # a classification task
        bottom = st.columns(2)
        bottom[0].metric("Agreement", f"{m['agreement'] * 100:.1f} %",
                         help="Prediction agreement: top-1 agreement with the teacher.")
        bottom[1].metric("KL(t ‖ s)", f"{m['kl']:.3f} nats",
                         help="KL(teacher ‖ student) of the class probabilities, mean over the examples.")


# --- one run in detail ------------------------------------------------------------------------
st.header("One student in detail")
ids = [r.id for r in runs]
shipped_ids = sorted(pre["run"].tolist(), key=lambda r: (r != "sweep/kasp@0.9/seed42", r)) if not pre.empty else []
urlstate.seed("run", "att_run", valid=ids + shipped_ids, what="student run")
if st.session_state.get("att_run") not in ids + shipped_ids:
    st.session_state.pop("att_run", None)
rid = st.selectbox("Student run", ids + shipped_ids, key="att_run",
                   format_func=lambda r: r if r in ids else f"{r} (shipped sweep or precomputed run: summary only, no weights)",
                   help="A pruned student; it is compared with its own teacher. Shipped runs carry the summary "
                        "measured at the end of their run (per layer); a live run is measured here per head.")
urlstate.write("run", rid)
if rid in shipped_ids:
    entry = shipped_run(rid, task)
    ret = entry["retention"]
    src = pre[pre["run"] == rid].iloc[0]
    st.markdown(f"**{rid}**: {method_label(entry['method'])}, {src['sparsity (%)']:.0f} % "
                f"{'(the size it equals)' if shrinks_student(entry['method']) else 'sparse'}, {src['source']}: "
                f"`{entry['command']}` on {entry['machine']}.")
    _metrics(ret, "Measured at the end of the shipped run.")
    c1, c2 = st.columns(2)
    if ret.get("similarity"):  # the precomputed runs kept the per-head map
        c1.plotly_chart(head_heatmap(ret["similarity"], "Similarity per head (1 = as teacher)", "1 − JS"),
                        width="stretch", key="sim-heads")
    elif ret.get("similarity_per_layer"):
        c1.plotly_chart(layer_similarity_figure(ret["similarity_per_layer"]), width="stretch", key="sim-layers")
    if ret.get("cka"):
        c2.plotly_chart(cka_figure(ret["cka"]), width="stretch", key="cka-shipped")
    st.caption(f"Measured on {ret.get('samples', '?')} {task_name(task)} dev examples at the end of the shipped run "
               "(precomputed, not measured now); padding never counts.")
    st.info("The shipped sweep's runs keep only their summary (no weights), so their per-head maps and the "
            "teacher-and-student views of a sentence cannot be drawn: pick a model with weights above "
            + ("(those shipped with KASP, `shipped-…`, or a run of yours from the Prune page)." if any(is_shipped(r) for r in runs)
               else f"(no {task_name(task)} model ships with KASP: prune one on the Prune page; SST-2's shipped models "
                    "show these views)."))
    urlstate.show_problems(url_slot)
    urlstate.share_box()
    st.stop()
run = next(r for r in runs if r.id == rid)
if is_shipped(run):
    st.markdown(shipped_line(run))
try:
    with st.spinner("Comparing student and teacher…"):
        res = run_retention(run.path, samples=samples)
except KaspError as e:
    st.error(str(e))
    st.stop()
if any(r.id == run.id for r in missing):
    if retention_rows([run], samples)[1]:  # the cache could not be written (read-only store, disk full)
        st.caption(":material/info: This measurement could not be cached in the run directory (the store is not "
                   "writable); it is shown here and measured again next time.")
    else:
        st.rerun()  # just measured: redraw so that the charts above include it
_metrics(res, "Measured on the shipped weights when they were packed (retention.json)."
         if is_shipped(run) and samples == 128 else "Live measurement.")
c1, c2 = st.columns(2)
c1.plotly_chart(head_heatmap(res["similarity"], "Similarity per head (1 = as teacher)", "1 − JS"),
                width="stretch", key="sim")
c2.plotly_chart(head_heatmap(res["score_mse"], "Score MSE per head (training term)", "MSE",
                             colorscale="Reds", zrange=None), width="stretch", key="mse")
st.plotly_chart(cka_figure(res["cka"]), width="stretch", key="cka")
st.caption((f"Measured on {res['samples']} {task_name(task)} dev examples on the shipped weights, when they were "
            "packed (kept in the run's retention.json)" if is_shipped(run) and samples == 128 else
            f"Measured live on {res['samples']} {task_name(task)} dev examples") + "; padding never counts.")

# --- an example ----------------------------------------------------------------------------------
pair = T.text_b is not None
st.header(f"{'A sentence pair' if pair else 'A sentence'}, teacher and student side by side")
first, second = default_example(task)
urlstate.seed("sentence", f"text-a-{task}", valid=bool, what="sentence")
st.session_state.setdefault(f"text-a-{task}", first)
text = st.text_input("First sentence" if pair else "Sentence", key=f"text-a-{task}",
                     help="Any text; both models see the same word pieces. The default is the first "
                          f"{task_name(task)} dev example.")
urlstate.write("sentence", None if text in (first, "") else text)
text_b = None
if pair:
    urlstate.seed("sentence2", f"text-b-{task}", what="second sentence")
    st.session_state.setdefault(f"text-b-{task}", second or "")
    text_b = st.text_input("Second sentence", key=f"text-b-{task}",
                           help=f"{task_name(task)} is a sentence-pair task: the models read both, separated by [SEP].")
    urlstate.write("sentence2", None if text_b in (second or "", "") else text_b)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(path: str):
    return load_for_attention(path)  # eval only; never trained in place


teacher_path = (run.report().get("teacher") or {}).get("path")
if text and teacher_path:
    length = 128 if pair else 64
    try:
        tok_t, att_t = sentence_attention(*_model(teacher_path), text, text_b or None, max_seq_length=length)
        tok_s, att_s = sentence_attention(*_model(str(run.checkpoint)), text, text_b or None, max_seq_length=length)
    except KaspError as e:
        st.error(str(e))
        st.stop()
    c1, c2 = st.columns(2)
    height = 120 + 26 * len(tok_t)
    with c1:
        st.iframe(head_view_html(att_t, tok_t, title="Teacher (fine-tuned, dense)"), height=height)
    with c2:
        method, sp = run.recipe().get("method"), (measured_sparsity(run.report()) or 0) * 100
        size = f"the size of {sp:.0f} % sparsity" if shrinks_student(method) else f"{sp:.0f} % sparse"
        st.iframe(head_view_html(att_s, tok_s, title=f"Student ({method_label(method)}, {size})"),
                  height=height)
    st.caption("bertviz head view, rendered offline. Pick a layer; hover a token to see where it attends.")
    c1, c2 = st.columns(2)
    layer = c1.number_input("Layer", 0, len(att_t) - 1, 0, help="Encoder layer of the heat maps below.")
    head = c2.number_input("Head", 0, att_t[0].shape[1] - 1, 0, help="Attention head of the heat maps below.")
    c1, c2 = st.columns(2)
    for col, name, tokens, att in ((c1, "Teacher", tok_t, att_t), (c2, "Student", tok_s, att_s)):
        col.plotly_chart(attention_heatmap(att[int(layer)][0, int(head)].numpy(), tokens,
                                           f"{name}: layer {int(layer)}, head {int(head)}"),
                         width="stretch", key=f"hm-{name}")
    st.caption(f"{len(tok_t)} tokens, one row and one column each, labelled token·position so that a repeated token "
               "keeps its own row. Live measurement.")

urlstate.show_problems(url_slot)
urlstate.share_box()
