"""Prune: choose a recipe, see the time estimate, launch a run (a `kasp` subprocess), watch it, cancel it."""

import plotly.graph_objects as go
import streamlit as st

from kasp import jobs
from kasp.config import default_recipe, load_recipe
from kasp.data import get_task
from kasp.errors import KaspError
from kasp.runs import RunDir, iter_done
from kasp.views import estimate_seconds, progress_frames, schedule_frame

task = st.session_state.get("task", "sst2")
model = st.session_state.get("model", "default") or "default"
T = get_task(task)

st.title(f"Prune: {task.upper()}")
st.caption("Runs are real: each is a `kasp` command running in the background on this machine and writing into the "
           "run store. It keeps running if you reload the page or switch pages.")

teachers = list(iter_done(kind="finetune", task=task, model=model))
method = st.radio("Method", ["kasp", "magnitude", "small-dense"], horizontal=True, format_func={
    "kasp": "KASP: distil the fine-tuned teacher into the pruned pre-trained model",
    "magnitude": "Magnitude baseline: prune the fine-tuned model, retrain with the task loss",
    "small-dense": "Small-dense baseline: distil into fewer, dense layers with as many weights as the sparsity leaves"}.get,
    help="KASP is the paper's method; the baseline is what most pruning users do today.")
recipe = default_recipe("prune", method, task)
class_length = st.toggle("Class-length recipe", help="The `class` preset (kasp/recipes/class.json) for a lesson: 300 "
                         "teacher steps and 500 prune steps, about 2 and 4 minutes on 2 idle cores (estimated from the "
                         "default recipe's measured per-step speed); less accurate than the default recipe.")
if class_length:
    recipe.update(load_recipe("class", "prune"))

if not teachers:
    st.warning(f"Every method needs a fine-tuned teacher for {task} and model `{model}`, and the run store has none. "
               "Fine-tune one first (the same as `kasp finetune --task " + task + "`).")
    ft = default_recipe("finetune", "finetune", task) | (load_recipe("class", "finetune") if class_length else {})
    c1, c2 = st.columns(2)
    ft_steps = c1.number_input("Teacher fine-tuning steps", 10, 50_000, int(ft.get("max_steps") or 300), 10,
                               help="Optimizer steps of the dense fine-tuning run (batch 32).")
    est, src = estimate_seconds("finetune", int(ft_steps), evals=int(ft_steps) // 200 + 1, model=model)
    c2.metric("Estimated time", f"{est / 60:.1f} min", help=f"Estimate from {src}.")
    if st.button("Fine-tune the teacher", type="primary", help="Launch `kasp finetune` in the background."):
        try:
            run = jobs.launch("finetune", {"task": task, "model": model, "max_steps": int(ft_steps)})
            st.session_state["watch"] = run.id
            st.success(f"Launched {run.id}.")
        except KaspError as e:
            st.error(str(e))
else:
    st.caption(f"Teacher: `{teachers[0].id}` (newest finished fine-tuning run for {task}, "
               f"dev {T.main_metric} {teachers[0].report().get('metrics', {}).get(T.main_metric, float('nan')) * 100:.2f} %, live run).")

with st.container(border=True):
    c1, c2, c3 = st.columns(3)
    sparsity = c1.slider("Target sparsity", 0.1, 0.99, 0.9, 0.01,
                         help="Fraction of the encoder linear weights (Q, K, V, attention-output, FFN-in, FFN-out) "
                              "that are zero at the end of the run.")
    steps = c2.number_input("Budget: training steps", 2, 100_000, int(recipe.get("max_steps") or 300), 10,
                            help="Total optimizer steps T (batch 32). The cubic schedule spans all of them. "
                                 "Around 60-120 s per 200 steps on 2 cores.")
    seed = c3.number_input("Seed", 0, 2**31 - 1, 42, help="Seed for data order, dropout and the new classifier head.")
    c1, c2, c3 = st.columns(3)
    lr = c1.select_slider("Learning rate", [1e-5, 3e-5, 5e-5, 1e-4, 2e-4], value=recipe["lr"],
                          help="AdamW learning rate, constant (the paper's schedule). The paper uses 3e-5 for BERT-base.")
    max_train = c2.number_input("Training examples (0 = all)", 0, 1_000_000, 0, 100,
                                help="Use only the first N training examples after a seeded shuffle.")
    eval_every = c3.number_input("Evaluate every N steps", 0, 100_000, int(recipe.get("eval_every", 200)), 10,
                                 help="How often the dev metric is measured during the run (0: only at the end).")
    with st.expander("Distillation weights", expanded=method == "kasp"):
        st.caption("Loss = a·attention + h·hidden + p·prediction + c·task. A weight of 0 switches a term off.")
        c1, c2, c3, c4, c5 = st.columns(5)
        a = c1.number_input("attention a", 0.0, 100.0, float(recipe["attention_weight"]), 0.1,
                            help="MSE of pre-softmax attention scores, summed over layers.")
        h = c2.number_input("hidden h", 0.0, 100.0, float(recipe["hidden_weight"]), 0.1,
                            help="MSE of the embedding output and every layer's output.")
        p = c3.number_input("prediction p", 0.0, 100.0, float(recipe["prediction_weight"]), 0.1,
                            help="Soft cross-entropy between teacher and student logits at temperature τ.")
        c = c4.number_input("task c", 0.0, 100.0, float(recipe["task_loss_weight"]), 0.1,
                            help="Cross-entropy against the gold labels.")
        tau = c5.number_input("temperature τ", 0.1, 20.0, 1.0, 0.1, help="Softmax temperature of the prediction term.")
    evals = int(steps) // int(eval_every) if eval_every else 0
    est, src = estimate_seconds(method, int(steps), evals=evals + 1, model=model)
    st.markdown(f"**Estimated run time on this machine: {est / 60:.1f} min** "
                f"<span title='{src}'>(estimate from {src})</span>", unsafe_allow_html=True)
    launched = st.button("Launch", type="primary", disabled=not teachers,
                                     help="Start `kasp prune` with this recipe in the background.")
if launched:
    opts = {"task": task, "model": model, "method": method, "sparsity": sparsity, "max_steps": int(steps),
            "seed": int(seed), "lr": lr, "eval_every": int(eval_every), "attention_weight": a, "hidden_weight": h,
            "prediction_weight": p, "task_loss_weight": c, "temperature": tau,
            "max_train_samples": int(max_train) or None}
    try:
        run = jobs.launch("prune", opts)
        st.session_state["watch"] = run.id
        st.success(f"Launched {run.id} ({run.state()}).")
    except KaspError as e:
        st.error(str(e))


def _panel(run: RunDir) -> None:
    status = run.status()
    state = run.state()
    rec = run.recipe()
    total = status.get("total_steps") or rec.get("max_steps") or 1
    step = status.get("step") or 0
    icon = {"queued": ":material/hourglass_empty:", "running": ":material/directions_run:", "done": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:"}.get(state, "•")
    st.subheader(f"{icon} {run.id}: {state}")
    st.progress(min(step / total, 1.0), text=f"step {step} of {total}")
    if state in ("queued", "running"):
        if st.button("Cancel", key=f"cancel-{run.id}", help="Stop after the current step; no checkpoint is written."):
            jobs.cancel(run)
            st.rerun(scope="fragment")
    if state == "failed":
        st.error(f"The run failed: {status.get('error') or 'see the log below'}")
        st.code(jobs.log_tail(run) or "(no output)")
    train, evals = progress_frames(run.progress())
    if train.empty:
        st.caption("Waiting for the first progress record (loading the model and data takes ~15 s)…")
        return
    terms = [t for t in ("attention", "hidden", "prediction", "task") if t in train]
    last = train.iloc[-1]
    cols = st.columns(len(terms) + 2)
    for col, t in zip(cols, terms):
        col.metric(f"{t} loss", f"{last[t]:.4g}", help="Live run: mean over the last logged steps.")
    final = (run.report().get("sparsity") or {}).get("pruned_sparsity") if state == "done" else None
    cols[-2].metric("sparsity", f"{(final if final is not None else last['sparsity']) * 100:.1f} %",
                    help="Live run: fraction of encoder linear weights masked (measured on the saved model once done).")
    if not evals.empty:
        m = T.main_metric
        cols[-1].metric(f"dev {m}", f"{evals.iloc[-1][m] * 100:.2f} %", help=f"Live run: measured at step {int(evals.iloc[-1]['step'])}.")
    c1, c2, c3 = st.columns(3)
    mode = "lines+markers" if len(train) < 30 else "lines"
    fig = go.Figure([go.Scatter(x=train["step"], y=train[t], name=t, mode=mode) for t in terms])
    fig.update_layout(title="Loss terms (live run)", xaxis_title="step", yaxis_title="loss (log scale)",
                      yaxis_type="log", height=320, margin={"t": 40})
    c1.plotly_chart(fig, width="stretch", key=f"loss-{run.id}")
    target = rec.get("sparsity") or 0
    curve, _ = schedule_frame(target, int(total), rec.get("pruning_events", 100))
    fig = go.Figure([go.Scatter(x=curve["step"], y=curve["sparsity"] * 100, name="cubic schedule", line={"dash": "dot"}),
                     go.Scatter(x=train["step"], y=train["sparsity"] * 100, name="masks (live)", mode=mode)])
    fig.update_layout(title="Sparsity against its schedule", xaxis_title="step", yaxis_title="sparsity (%)", height=320,
                      margin={"t": 40})
    c2.plotly_chart(fig, width="stretch", key=f"sp-{run.id}")
    if not evals.empty:
        m = T.main_metric
        fig = go.Figure([go.Scatter(x=evals["step"], y=evals[m] * 100, mode="lines+markers", name=m)])
        fig.update_layout(title=f"Dev {m} (live run)", xaxis_title="step", yaxis_title=f"{m} (%)", height=320,
                          margin={"t": 40})
        c3.plotly_chart(fig, width="stretch", key=f"ev-{run.id}")


@st.fragment(run_every=2)
def live_panel() -> None:
    jobs.pump()
    active = jobs.active_runs()
    watch = st.session_state.get("watch")
    shown = list(active)
    if watch and all(r.id != watch for r in shown):
        w = RunDir(jobs.runs_dir() / watch)
        if w.path.exists():
            shown.insert(0, w)
    if not shown:
        st.info("No run is active. Launch one above; finished runs are on the Results page.")
    for run in shown:
        _panel(run)


st.header("Live runs")
st.caption(f"At most {jobs.MAX_JOBS} run(s) at once on this machine; up to {jobs.MAX_QUEUED} more wait in a queue.")
live_panel()
