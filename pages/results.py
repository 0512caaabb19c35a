"""Results: every run in the store (plus the shipped precomputed runs), compared and inspected."""

import json

import pandas as pd
import streamlit as st

from kasp.ui.tables import results_table, shipped_run, state_icon, STATE_ICONS, undefined_runs_note
from kasp.ui.curves import curve_data, eval_gaps_note, progress_frames
from kasp.ui.devset import majority_metric
from kasp.ui.lesson import teacher_at_chance
from kasp.ui.downloads import checkpoint_zip
from kasp.ui.engine import get_task, jobs, metric_axis, metric_label, RunDir, runs_dir, shipped_status, task_name
from kasp.ui import urlstate
from kasp.ground.errors import KaspError
from kasp.ui.figures import accuracy_sparsity_figure, curve_caption, curve_notes, sparsity_heatmap, training_curves
from kasp.ui.style import method_label

task = st.session_state.get("task", "sst2")
owner = st.session_state.get("owner")
operator = bool(st.session_state.get("operator"))
T = get_task(task)
st.title("Results")
url_slot = urlstate.page("runs", "run", "all")

urlstate.seed("all", "results_only", lambda v: {"1": False, "0": True}[v], what="all")
st.session_state.setdefault("results_only", True)
only_task = st.toggle(f"Only {task_name(task)}", key="results_only", help="Show only runs of the task chosen in the sidebar.")
urlstate.write("all", None if only_task else "1")
shown = results_table(task if only_task else None)
if shown.empty:
    st.info(f"No {task_name(task) + ' ' if only_task else ''}run in the store, and no precomputed run or sweep ships for it. "
            "Launch a run on the Prune page" + (", or switch off the toggle above to see every task's runs." if only_task else "."))
    urlstate.show_problems(url_slot)
    st.stop()

st.caption("Select rows to compare them. **live run**: this machine's run store; **precomputed run**: a real run "
           "shipped with KASP (its exact command is shown below when selected); **precomputed sweep**: a run of the "
           "shipped `kasp sweep` of the task (assets/sweeps; the chart draws the sweep's mean over seeds). " +
           (f"**{metric_axis(task)}**" if only_task else "**dev metric**: the run's task's own GLUE metric, named in the "
                                                         "metric column, in % (accuracy, F1) or x 100 (correlations)") +
           ", on the dev set. States: " +
           ", ".join(f"{icon} {s}" for s, icon in STATE_ICONS.items()) + ".")
# columns that say nothing here are left out, so that the table fits the page
hidden = (["task", "metric"] if only_task else []) + ([] if shown["error"].notna().any() else ["error"])
sel = st.dataframe(
    shown.drop(columns=hidden).assign(method=shown["method"].map(method_label),
                                      **{"metric note": shown["metric note"].fillna("")}),  # no "None" shown
    hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="runs_table",
    # what a reader compares first, visible at 1024 px without scrolling sideways; the id and the rest after it
    column_order=[c for c in ("method", "target sparsity (%)", "dev metric", "source", "state", "id",
                              "measured sparsity (%)", "task", "metric", "metric note", "wall time (min)", "error")
                  if c in shown.columns and c not in hidden],
    column_config={
        "id": st.column_config.TextColumn(width="medium"), "source": st.column_config.TextColumn(width="small"),
        "state": st.column_config.TextColumn(width="small"), "task": st.column_config.TextColumn(width="small"),
        "method": st.column_config.TextColumn(width="small"),
        "target sparsity (%)": st.column_config.NumberColumn("target (%)", format="%.0f", width="small",
                                                             help="Target sparsity of the encoder linear weights"),
        "measured sparsity (%)": st.column_config.NumberColumn("sparsity (%)", format="%.2f", width="small",
                                                               help="Measured sparsity of the saved model's encoder linear weights"),
        "dev metric": st.column_config.NumberColumn(metric_axis(task) if only_task else "dev metric",
                                                    format="%.2f", width="medium",  # its header whole at 1024 px
                                                    help="The task's own GLUE metric on its dev set: accuracy and F1 in %, "
                                                         "correlations x 100"),
        "metric": st.column_config.TextColumn(width="small"),
        "wall time (min)": st.column_config.NumberColumn("minutes", format="%.1f", width="small",
                                                         help="Wall time of the run, start to saved checkpoint"),
        "error": st.column_config.TextColumn(width="medium")})
rows = sel.selection.rows if sel and sel.selection else []
# a link's selection (?runs=id,id) holds until rows are selected in the table
urlstate.seed("runs", "results_link_runs", urlstate.split, lambda v: bool(set(v) & set(shown["id"])), "runs")
link_runs = [r for r in st.session_state.get("results_link_runs") or [] if r in set(shown["id"])]
if rows:
    st.session_state.pop("results_link_runs", None)
    chosen = shown.iloc[rows]
elif link_runs:
    chosen = shown[shown["id"].isin(link_runs)]
    c1, c2 = st.columns([4, 1])
    c1.caption(f":material/link: Selected by the link: {', '.join(link_runs)}. Select rows in the table to change it.")
    if c2.button("Show all runs", key="results_clear_link"):
        st.session_state.pop("results_link_runs", None)
        urlstate.write("runs", None)
        st.rerun()
else:
    chosen = shown
urlstate.write("runs", list(chosen["id"]) if (rows or link_runs) else None, urlstate.join)

# --- dev metric against sparsity --------------------------------------------------------------
done = chosen[(chosen["state"] == "done") & (chosen["task"] == task_name(task))].dropna(subset=["dev metric"])
st.header(f"{task_name(task)}: dev {metric_label(task)} against sparsity")
if done.empty:
    st.info(f"No finished {task_name(task)} run among the selected ones.")
else:
    done = done[done["source"] != "precomputed sweep"]  # the sweep is drawn whole, as mean and seed spread
    sel_runs = pd.DataFrame({"method": done["method"].replace({"finetune": "dense teacher"}),
                             "sparsity": done["measured sparsity (%)"] / 100, "metric": done["dev metric"] / 100,
                             "source": done["source"], "label": done["id"]})
    points, teacher, published, error = curve_data(task, runs=sel_runs)
    base = majority_metric(task)
    if error:
        st.error(error)
    partial = shipped_status(task)
    if partial:
        st.caption(":material/hourglass_top: " + partial)
    compression = st.toggle("Compression axis (×, log scale)", key="x_compression",
                            help="Show the x axis as compression, 1 / (1 − sparsity): ×10 is 90 % sparse, ×20 (the "
                                 "paper's figure) 95 %. A log scale spreads out the high sparsities, where the methods differ.")
    st.plotly_chart(accuracy_sparsity_figure(points, teacher, published, metric_label(task), task, baseline=base,
                                             compression=compression), width="stretch")
    st.caption(curve_caption(points, metric_label(task), baseline=base, teacher=teacher[0] if teacher else None,
                             teacher_at_chance=teacher_at_chance(task, teacher[0] if teacher else None)) +
               " Drawn: the selected live and precomputed runs, the shipped sweep (`kasp sweep`, mean over seeds, bars "
               "span the seeds; its runs are the table's precomputed sweep rows) and the paper's BERT-base figures.")
    for note in curve_notes(points):
        st.caption(":material/info: " + note)
# the sweep's points say their own notes above (curve_notes); the single runs here
gap_note = undefined_runs_note(chosen[(chosen["task"] == task_name(task)) & (chosen["source"] != "precomputed sweep")])
if gap_note:
    st.caption(":material/info: " + gap_note)

# --- one run in detail ------------------------------------------------------------------------
st.header("One run")
urlstate.seed("run", "results_run", valid=chosen["id"].tolist(), what="run")
if st.session_state.get("results_run") not in chosen["id"].tolist():
    st.session_state.pop("results_run", None)
if "results_run" not in st.session_state and not (chosen["source"] == "live run").any():
    # a fresh clone: open on the lead result of the shipped sweep (KASP at 90 %), not on its teacher
    lead = [i for i in ("sweep/kasp@0.9/seed42", "precomputed/kasp-sst2-s90") if i in chosen["id"].tolist()]
    if lead:
        st.session_state["results_run"] = lead[0]
rid = st.selectbox("Run", chosen["id"].tolist(), key="results_run",
                   help="The run shown below: its per-matrix sparsity, its curves, its files.")
urlstate.write("run", rid)
row = shown[shown["id"] == rid].iloc[0]
st.markdown(f"{state_icon(row['state'])} **{rid}** ({row['source']}): state **{row['state']}**, "
            f"{method_label(row['method'])} on {row['task']}")
run_task = get_task(row["task"]).name if row["task"] != "?" else task
if row["source"] in ("precomputed run", "precomputed sweep"):
    pre_run = shipped_run(rid, run_task)
    report, progress, recipe = {"per_matrix_sparsity": pre_run["per_matrix_sparsity"]}, pre_run["progress"], pre_run["recipe"]
    st.markdown(f"{row['source'].capitalize()}, recipe: `{pre_run['command']}` on {pre_run['machine']}.")
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
    st.plotly_chart(training_curves(train, evals, run_task), width="stretch", key="curves")
    gaps = eval_gaps_note(progress, run_task)
    if gaps:
        st.caption(":material/info: " + gaps + ".")

if recipe:
    with st.expander("Recipe"):
        st.json(recipe)

if run is not None:
    c1, c2, c3 = st.columns(3)
    if report:
        c1.download_button("Download report (JSON)", json.dumps(report, indent=2), file_name=f"{rid}-report.json",
                           mime="application/json", help="The run's report.json: metrics, sparsity, timings.")
    if run.checkpoint.is_dir():
        if c2.button("Prepare checkpoint download", help="Zip the checkpoint directory (safetensors, config, tokenizer, model card README.md) with the run's report.json."):
            try:
                st.session_state["zip"] = (rid, checkpoint_zip(run))
            except KaspError as e:
                c2.error(str(e))
        if st.session_state.get("zip", (None,))[0] == rid:
            c2.download_button("Download checkpoint (.zip)", st.session_state["zip"][1], file_name=f"{rid}.zip",
                               mime="application/zip")
    if jobs.can_control(run, owner, operator):
        with c3.popover("Delete run", help="Delete this run's directory from the store."):
            st.write(f"Delete `{rid}` and its checkpoint? This cannot be undone.")
            if st.button("Yes, delete", type="primary", key="confirm-delete"):
                try:
                    jobs.delete(run)
                    st.success(f"Deleted {rid}.")
                    st.rerun()
                except KaspError as e:
                    st.error(str(e))
    else:
        c3.caption(":material/lock: Only the browser session that launched this run (or an operator) can delete it.")

urlstate.show_problems(url_slot)
urlstate.share_box()
