"""Attention: how much of the teacher's attention and representations a pruned student kept."""

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from kasp.attention_view import head_view_html
from kasp.errors import KaspError
from kasp.retention import load_for_attention, run_retention, sentence_attention
from kasp.runs import iter_done
from kasp.views import precomputed_retention

task = st.session_state.get("task", "sst2")
st.title(f"Attention knowledge: {task.upper()}")
st.caption("The paper's argument: pruning loses knowledge, distilling while pruning keeps it. These measures show "
           "where. :material/info: Attention maps are not explanations: they show where a model looks, not why it decides.")

runs = [r for r in iter_done(kind="prune", task=task)]
pre = precomputed_retention(task)
if not runs and pre.empty:
    st.info(f"No finished prune run for {task} in the store. Launch one on the Prune page.")
    st.stop()

samples = st.select_slider("Dev examples used", [32, 64, 128, 256, 512], value=128,
                           help="More examples: steadier numbers, slower (about 2 s per 100 examples on CPU). "
                                "Results are cached in each run's retention.json.")


@st.cache_data(show_spinner="Comparing student and teacher…", max_entries=64)
def retention(run_path: str, n: int, mtime: float) -> dict:
    return run_retention(run_path, samples=n)


def _mtime(run) -> float:
    f = run.checkpoint / "model.safetensors"
    return f.stat().st_mtime if f.exists() else 0.0


# --- retention against sparsity ---------------------------------------------------------------
st.header("Retention against sparsity")
rows = []
missing = []
for r in runs:
    cache = r.path / "retention.json"
    if cache.exists():
        try:
            res = retention(str(r.path), samples, _mtime(r))
        except KaspError:
            continue
        rows.append({"run": r.id, "method": r.recipe().get("method"),
                     "sparsity (%)": r.report()["sparsity"]["pruned_sparsity"] * 100,
                     "attention similarity": res["mean_similarity"], "CKA": res["mean_cka"],
                     "agreement (%)": (res["agreement"] or 0) * 100, "source": "live run"})
    else:
        missing.append(r)
if missing and st.button(f"Measure {len(missing)} run(s) not measured yet", help="Compare each run with its teacher "
                         f"on {samples} dev examples (live measurement) and cache the result."):
    bar = st.progress(0.0)
    for k, r in enumerate(missing):
        try:
            retention(str(r.path), samples, _mtime(r))
        except KaspError as e:
            st.warning(f"{r.id}: {e}")
        bar.progress((k + 1) / len(missing), text=r.id)
    st.rerun()
if rows or not pre.empty:
    df = pd.concat([pd.DataFrame(rows), pre], ignore_index=True) if rows else pre
    c1, c2 = st.columns(2)
    for col, y in ((c1, "attention similarity"), (c2, "CKA")):
        fig = px.scatter(df, x="sparsity (%)", y=y, color="method", symbol="source", hover_data=["run", "agreement (%)"],
                         title=f"Mean {y} with the teacher",
                         labels={"sparsity (%)": "sparsity (% of encoder linear weights)",
                                 y: f"{y} (1 = identical to the teacher)"})
        fig.update_traces(marker={"size": 12})
        col.plotly_chart(fig, width="stretch")
    st.caption("**live run**: measured here on this machine's runs; **precomputed run**: measured on the shipped "
               "SST-2 runs of the default model (256 dev sentences; recipes on the Results page).")
else:
    st.caption("No run measured yet.")
if not runs:
    st.info(f"No finished prune run for {task} in the store: the detailed views need one. Launch one on the Prune page.")
    st.stop()

# --- one run in detail ------------------------------------------------------------------------
st.header("One student in detail")
rid = st.selectbox("Student run", [r.id for r in runs], help="A pruned student; it is compared with its own teacher.")
run = next(r for r in runs if r.id == rid)
try:
    res = retention(str(run.path), samples, _mtime(run))
except KaspError as e:
    st.error(str(e))
    st.stop()
c = st.columns(4)
c[0].metric("Mean attention similarity", f"{res['mean_similarity']:.3f}", help="1 − Jensen–Shannon divergence (bits) of "
            "each real query's attention distribution, averaged over heads, layers and queries. Live measurement.")
c[1].metric("Mean CKA (layers)", f"{res['mean_cka']:.3f}", help="Linear CKA of layer outputs on real tokens. Live measurement.")
if res["agreement"] is not None:
    c[2].metric("Prediction agreement", f"{res['agreement'] * 100:.1f} %", help="Top-1 agreement with the teacher.")
    c[3].metric("KL(teacher ‖ student)", f"{res['kl']:.3f} nats", help="Mean over the examples.")
sim = np.array(res["similarity"])
mse = np.array(res["score_mse"])
heads = [f"h{h}" for h in range(sim.shape[1])]
layers = [f"layer {i}" for i in range(sim.shape[0])]
c1, c2 = st.columns(2)
fig = go.Figure(go.Heatmap(z=sim, x=heads, y=layers, zmin=0, zmax=1, colorscale="Viridis",
                           colorbar={"title": "1 − JS"}))
fig.update_layout(title="Attention similarity per head (1 = same distribution)", xaxis_title="head",
                  yaxis_title="layer", yaxis_autorange="reversed", height=380)
c1.plotly_chart(fig, width="stretch", key="sim")
fig = go.Figure(go.Heatmap(z=mse, x=heads, y=layers, colorscale="Reds", colorbar={"title": "MSE"}))
fig.update_layout(title="Pre-softmax score MSE per head (the training term)", xaxis_title="head", yaxis_title="layer",
                  yaxis_autorange="reversed", height=380)
c2.plotly_chart(fig, width="stretch", key="mse")
fig = go.Figure(go.Bar(x=["embeddings"] + layers, y=res["cka"]))
fig.update_layout(title="Linear CKA with the teacher per hidden state", xaxis_title="hidden state",
                  yaxis_title="CKA (1 = same up to rotation and scale)", yaxis_range=[0, 1], height=320)
st.plotly_chart(fig, width="stretch", key="cka")
st.caption(f"Measured live on {res['samples']} {task} dev examples; padding never counts.")

# --- a sentence ----------------------------------------------------------------------------------
st.header("A sentence, teacher and student side by side")
text = st.text_input("Sentence", "a gripping , funny and deeply moving film .",
                     help="Any sentence; both models see the same word pieces.")


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(path: str):
    return load_for_attention(path)  # eval only; never trained in place


teacher_path = (run.report().get("teacher") or {}).get("path")
if text and teacher_path:
    try:
        tok_t, att_t = sentence_attention(*_model(teacher_path), text)
        tok_s, att_s = sentence_attention(*_model(str(run.checkpoint)), text)
    except KaspError as e:
        st.error(str(e))
        st.stop()
    c1, c2 = st.columns(2)
    height = 120 + 26 * len(tok_t)
    with c1:
        st.iframe(head_view_html(att_t, tok_t, title="Teacher (fine-tuned, dense)"), height=height)
    with c2:
        st.iframe(head_view_html(att_s, tok_s, title=f"Student ({run.recipe().get('method')}, "
                                                     f"{run.report()['sparsity']['pruned_sparsity'] * 100:.0f} % sparse)"),
                  height=height)
    st.caption("bertviz head view, rendered offline. Pick a layer; hover a token to see where it attends.")
    c1, c2 = st.columns(2)
    layer = c1.number_input("Layer", 0, len(att_t) - 1, 0, help="Encoder layer of the heat maps below.")
    head = c2.number_input("Head", 0, att_t[0].shape[1] - 1, 0, help="Attention head of the heat maps below.")
    c1, c2 = st.columns(2)
    for col, name, att in ((c1, "teacher", att_t), (c2, "student", att_s)):
        fig = go.Figure(go.Heatmap(z=att[int(layer)][0, int(head)].numpy(), x=tok_t, y=tok_t, zmin=0, zmax=1,
                                   colorscale="Blues", colorbar={"title": "weight"}))
        fig.update_layout(title=f"{name}: layer {int(layer)}, head {int(head)}", xaxis_title="attended token (key)",
                          yaxis_title="token (query)", yaxis_autorange="reversed", height=420)
        col.plotly_chart(fig, width="stretch", key=f"hm-{name}")
