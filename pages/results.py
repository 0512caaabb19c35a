"""Results: every run in the store (plus the shipped precomputed runs), compared and inspected."""

import io
import json
import zipfile

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from kasp import jobs
from kasp.data import get_task
from kasp.errors import KaspError
from kasp.runs import RunDir, runs_dir
from kasp.figures import accuracy_sparsity_figure, curve_caption, sparsity_heatmap
from kasp.metrics import METRIC_NAMES
from kasp.sweep import curve_data
from kasp.views import load_precomputed, precomputed_frame, progress_frames, runs_frame

task = st.session_state.get("task", "sst2")
T = get_task(task)
st.title("Results")

live = runs_frame()
pre = precomputed_frame()
table = pd.concat([live, pre], ignore_index=True) if len(pre) else live
if table.empty:
    st.info("The run store is empty. Launch a run on the Prune page.")
    st.stop()

only_task = st.toggle(f"Only {task}", value=True, help="Show only runs of the task chosen in the sidebar.")
if only_task:
    table = table[table["task"] == task]
shown = table.assign(**{
    "target sparsity (%)": table["target_sparsity"].astype(float) * 100,
    "measured sparsity (%)": table["measured_sparsity"].astype(float) * 100,
    "dev metric (%)": table["metric"].astype(float) * 100,
    "wall time (min)": table["wall_min"].astype(float),
})[["id", "source", "state", "task", "method", "target sparsity (%)", "measured sparsity (%)", "dev metric (%)",
    "metric_name", "wall time (min)", "error"]]
st.caption("Select rows to compare them. **live run**: this machine's run store; **precomputed run**: a real run "
           "shipped with KASP (its exact command is shown below when selected).")
sel = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                   key="runs_table", column_config={"dev metric (%)": st.column_config.NumberColumn(format="%.2f"),
                                                    "measured sparsity (%)": st.column_config.NumberColumn(format="%.2f"),
                                                    "wall time (min)": st.column_config.NumberColumn(format="%.1f")})
rows = sel.selection.rows if sel and sel.selection else []
chosen = shown.iloc[rows] if rows else shown

# --- accuracy against sparsity ---------------------------------------------------------------
done = chosen[chosen["state"] == "done"].dropna(subset=["dev metric (%)"])
done = done[done["task"] == task]
st.header(f"Dev {T.main_metric} against sparsity ({task})")
if done.empty:
    st.info(f"No finished {task} run among the selected ones.")
else:
    sel_runs = pd.DataFrame({"method": done["method"].replace({"finetune": "dense teacher"}),
                             "sparsity": done["measured sparsity (%)"] / 100, "metric": done["dev metric (%)"] / 100,
                             "source": done["source"], "label": done["id"]})
    points, teacher, published, error = curve_data(task, runs=sel_runs)
    if error:
        st.error(error)
    st.plotly_chart(accuracy_sparsity_figure(points, teacher, published, METRIC_NAMES[T.main_metric], task),
                    width="stretch")
    st.caption(curve_caption(points, METRIC_NAMES[T.main_metric]) + " Selected runs, the shipped sweep (mean over "
               "seeds, bars span the seeds) and the paper's BERT-base figures.")

# --- one run in detail ------------------------------------------------------------------------
st.header("One run")
ids = chosen["id"].tolist()
rid = st.selectbox("Run", ids, help="The run shown below: its per-matrix sparsity, its curves, its files.")
row = table[table["id"] == rid].iloc[0]
state_icon = {"queued": ":material/hourglass_empty:", "running": ":material/directions_run:", "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:"}.get(row["state"], "•")
st.markdown(f"{state_icon} **{rid}** ({row['source']}): state **{row['state']}**, {row['method']} on {row['task']}")
if row["source"] == "precomputed run":
    pre_run = next(r for r in load_precomputed() if r["id"] == rid)
    report, progress, recipe = {"per_matrix_sparsity": pre_run["per_matrix_sparsity"]}, pre_run["progress"], pre_run["recipe"]
    st.markdown(f"Precomputed run, recipe: `{pre_run['command']}` on {pre_run['machine']}.")
    run = None
else:
    run = RunDir(runs_dir() / rid)
    report, progress, recipe = run.report(), run.progress(), run.recipe()
    if row["state"] in ("failed", "cancelled"):
        (st.error if row["state"] == "failed" else st.warning)(f"This run {row['state']}: {row['error'] or 'no message'}")
        if row["state"] == "failed":
            st.code(jobs.log_tail(run) or "(no output)")

if report.get("per_matrix_sparsity"):
    st.plotly_chart(sparsity_heatmap(report["per_matrix_sparsity"]), width="stretch", key="heatmap")
if report.get("sparsity"):
    s = report["sparsity"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Sparsity, encoder linear weights", f"{s['pruned_sparsity'] * 100:.2f} %", help="Measured on the saved model (live run).")
    c2.metric("Sparsity, all parameters", f"{s['overall_sparsity'] * 100:.2f} %",
              help="Embeddings, biases, LayerNorm, pooler and classifier stay dense.")
    c3.metric("Non-zero parameters", f"{(s['total_params'] - s['total_zeros']) / 1e6:.2f} M of {s['total_params'] / 1e6:.2f} M")
    st.caption(":material/warning: Unstructured zeros alone make dense PyTorch neither faster nor its safetensors file smaller: "
               "the zeros are stored and multiplied like any other number. Savings need a sparse format, "
               "structured removal or sparse hardware.")

train, evals = progress_frames(progress)
if not train.empty:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=train["step"], y=train["sparsity"] * 100, name="sparsity (%)", mode="lines"))
    if not evals.empty and T.main_metric in evals:
        fig.add_trace(go.Scatter(x=evals["step"], y=evals[T.main_metric] * 100, name=f"dev {T.main_metric} (%)",
                                 mode="lines+markers"))
    fig.update_layout(title="Sparsity and dev metric over training", xaxis_title="optimizer step", yaxis_title="%",
                      height=360)
    st.plotly_chart(fig, width="stretch", key="curves")

if recipe:
    with st.expander("Recipe"):
        st.json(recipe)

if run is not None:
    c1, c2, c3 = st.columns(3)
    if report:
        c1.download_button("Download report (JSON)", json.dumps(report, indent=2), file_name=f"{rid}-report.json",
                           mime="application/json", help="The run's report.json: metrics, sparsity, timings.")
    if run.checkpoint.is_dir():
        if c2.button("Prepare checkpoint download", help="Zip the checkpoint directory (safetensors, config, tokenizer)."):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
                for f in sorted(run.checkpoint.iterdir()):
                    zf.write(f, arcname=f"{rid}/{f.name}")
            st.session_state["zip"] = (rid, buf.getvalue())
        if st.session_state.get("zip", (None,))[0] == rid:
            c2.download_button("Download checkpoint (.zip)", st.session_state["zip"][1], file_name=f"{rid}.zip",
                               mime="application/zip")
    with c3.popover("Delete run", help="Delete this run's directory from the store."):
        st.write(f"Delete `{rid}` and its checkpoint? This cannot be undone.")
        if st.button("Yes, delete", type="primary", key="confirm-delete"):
            try:
                jobs.delete(run)
                st.success(f"Deleted {rid}.")
                st.rerun()
            except KaspError as e:
                st.error(str(e))
