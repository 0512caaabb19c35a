"""Predictions: the teacher and the pruned students on the same sentence, side by side."""

import streamlit as st

from kasp.data import get_task
from kasp.errors import KaspError
from kasp.predict import dev_example, disagreements, prediction_runs, predict_texts
from kasp.views import load_precomputed

task = st.session_state.get("task", "sst2")
T = get_task(task)
st.title(f"Predictions side by side ({T.folder})")
st.caption("Type a sentence" + (" pair" if T.text_b else "") + ": the dense teacher and each pruned student predict it "
           "live on this machine, the same computation as `kasp evaluate`. Where the text is a GLUE dev example, its "
           "gold label is shown too.")

runs = prediction_runs(task)
shipped = [r["id"] for r in load_precomputed() if r["task"] == task]
if shipped:
    st.info(f"The shipped precomputed {task} runs ({', '.join(shipped)}) come without their weights (only results and "
            "logs ship), so they cannot predict here; their agreement with the teacher over the dev set is on the "
            "Attention page. Runs you make on the Prune page appear here once finished.")
if not runs["teachers"] and not runs["students"]:
    st.info(f"No finished {task} run with a checkpoint in the store yet. Fine-tune a teacher and prune a student on "
            "the Prune page.")
    st.stop()

teachers = {t["label"]: t for t in runs["teachers"]}
students = {s["label"]: s for s in runs["students"]}
used = [s["teacher"] for s in runs["students"] if s["teacher"]]
default_t = next((lbl for lbl, t in teachers.items() if any(u.startswith(t["path"]) for u in used)),
                 next(iter(teachers), None))
c1, c2 = st.columns(2)
t_label = c1.selectbox("Teacher", list(teachers), index=list(teachers).index(default_t) if default_t else None,
                       key=f"predict_teacher_{task}", help="A finished fine-tuning run of this task (dense).")
s_labels = c2.multiselect("Students", list(students), default=list(students)[:3], key=f"predict_students_{task}",
                          help="Finished prune runs of this task (KASP or the magnitude baseline).")

key_a, key_b, key_pick = f"predict_a_{task}", f"predict_b_{task}", f"predict_pick_{task}"
if key_a not in st.session_state:
    a0, b0 = dev_example(task, 0)
    st.session_state[key_a], st.session_state[key_b] = a0, b0 or ""


@st.cache_data(show_spinner="Running teacher and students over 256 dev examples…", max_entries=8)
def _disagreeing(teacher_path: str, student_paths: tuple, task_name: str) -> list:
    return disagreements(teacher_path, list(student_paths), task_name, n=256)


def _pick() -> None:
    if not t_label or not s_labels:
        st.session_state["predict_msg"] = "Choose a teacher and at least one student first."
        return
    try:
        idx = _disagreeing(teachers[t_label]["path"], tuple(students[s]["path"] for s in s_labels), task)
    except KaspError as e:
        st.session_state["predict_msg"] = str(e)
        return
    if not idx:
        st.session_state["predict_msg"] = "The chosen students agree with the teacher on all of the first 256 dev examples."
        return
    n = st.session_state.get(key_pick, -1) + 1
    st.session_state[key_pick] = n
    a, b = dev_example(task, idx[n % len(idx)])
    st.session_state[key_a], st.session_state[key_b] = a, b or ""
    st.session_state["predict_msg"] = (f"Dev example {idx[n % len(idx)]}: disagreement {n % len(idx) + 1} of {len(idx)} "
                                       "among the first 256 dev examples (strongest first).")


if T.text_b:
    st.text_area("First sentence", key=key_a, height=80)
    st.text_area("Second sentence", key=key_b, height=80)
else:
    st.text_area("Sentence", key=key_a, height=80)
st.button("Pick a dev example where the students disagree with the teacher", on_click=_pick, key="predict_pick_btn",
          help="Runs every chosen model over the first 256 dev examples once (cached), then steps through the examples "
               "where a student's predicted class differs from the teacher's (STS-B: scores more than 1 apart).")
if st.session_state.get("predict_msg"):
    st.caption(st.session_state.pop("predict_msg"))

models = {}
if t_label:
    models[f"teacher: {teachers[t_label]['id']}"] = teachers[t_label]["path"]
for s in s_labels:
    models[f"student: {s}"] = students[s]["path"]
if not models:
    st.info("Choose a teacher or a student.")
    st.stop()
try:
    table = predict_texts(models, task, st.session_state[key_a], st.session_state.get(key_b) if T.text_b else None,
                          teacher=f"teacher: {teachers[t_label]['id']}" if t_label else None)
except KaspError as e:
    st.error(str(e))
    st.stop()
fmt = {c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="percent")
       for c in table.columns if c.startswith("P(")}
st.dataframe(table, hide_index=True, width="stretch", column_config=fmt, key="predict_table")
gold = table["gold"].iloc[0]
st.caption("Source: live predictions of the checkpoints in this machine's run store. "
           + (f"Gold label ({T.folder} dev): **{gold}**." if gold is not None else "Not a dev example: no gold label."))
