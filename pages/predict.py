"""Predictions: the teacher and the pruned students on the same sentence, side by side."""

import streamlit as st

from kasp.ui import urlstate
from kasp.ui.tables import load_precomputed, shipped_scores, short_labels
from kasp.ui.devset import dev_examples_frame
from kasp.ui.engine import get_task, metric_axis, shipped_sweep_path
from kasp.ui.measure import cut_warnings, dev_example, disagreements, predict_texts, prediction_runs
from kasp.ui.models import RunDir, shipped_line, shipped_store
from kasp.ui.lesson import active, lesson_bar
from kasp.ground.errors import KaspError

task = st.session_state.get("task", "sst2")
T = get_task(task)
st.title(f"Predictions side by side ({T.folder})")
st.caption("Type a sentence" + (" pair" if T.text_b else "") + ": the dense teacher and each pruned student predict it "
           "live on this machine, the same computation as `kasp evaluate`. Where the text is a GLUE dev example, its "
           "gold label is shown too.")
url_slot = urlstate.page("teacher", "runs", "sentence", "sentence2")

runs = prediction_runs(task)
store = shipped_store()
ship = prediction_runs(task, store) if store is not None else {"teachers": [], "students": []}
for k in runs:
    runs[k] += ship[k]
if ship["students"]:
    with st.expander(f"The models shipped with KASP ({len(ship['teachers']) + len(ship['students'])}): where they come "
                     "from", expanded=False):
        for r in ship["teachers"] + ship["students"]:
            st.markdown(shipped_line(RunDir(r["path"])))
        st.caption("Runs you make on the Prune page are listed before them once finished.")
else:
    without = [r["id"] for r in load_precomputed() if r["task"] == task]
    if without or shipped_sweep_path(task).is_file():
        st.info(f"No trained {T.folder} model ships with KASP (only the SST-2 ones do): the shipped {T.folder} results "
                "keep no weights, so they cannot predict here; their agreement with the teacher over the dev set is "
                "on the Attention page. Runs you make on the Prune page appear here once finished.")
if not runs["teachers"] and not runs["students"]:
    st.info(f"No finished {T.folder} run with a checkpoint in the store yet. Fine-tune a teacher and prune a student on "
            "the Prune page.")
    scores = shipped_scores(task)
    if len(scores):
        st.subheader(f"What the shipped {T.folder} runs scored: {metric_axis(task)}")
        st.dataframe(scores, hide_index=True, width="stretch", column_config={  # 545 px: whole at 1024 px
            "method": st.column_config.TextColumn(width=125),
            "sparsity (%)": st.column_config.NumberColumn(format="%.0f", width=80, help=(
                "Encoder linear weights that are zero; a small dense model: the sparsity its size equals.")),
            metric_axis(task): st.column_config.NumberColumn("mean", format="%.2f", width=65, help=(
                f"{metric_axis(task)}: the mean over the seeds, as on the Overview and Results pages.")),
            "spread": st.column_config.NumberColumn("±", format="%.2f", width=50, help=(
                "Half the seeds' range: the mean ± this spans the seeds (0 for one seed).")),
            "seeds": st.column_config.NumberColumn(format="%d", width=50, help="How many seeds the mean is over."),
            "run": st.column_config.TextColumn(width=175, help=(
                "The run's id; a condition of the shipped sweep is named without its seed (its runs, "
                "sweep/kasp@0.9/seed42 and so on, are on the Results page)."))})
        st.caption("Precomputed: measured when each run ended, on the whole dev set; not predicted now. Each condition "
                   "of the shipped sweep is the mean over its seeds, ± half their range: the numbers the Overview and "
                   "Results pages draw. Recipes on the Results page.")
    st.subheader(f"The first {T.folder} dev examples and their gold answers")
    ex = dev_examples_frame(task)
    gold = [c for c in ex.columns if "gold" in c.lower() or "label" in c.lower()]
    st.dataframe(ex[gold + [c for c in ex.columns if c not in gold]], hide_index=True, width="stretch")  # the answer first
    st.caption(f"From the GLUE {T.folder} dev set shipped with KASP (data/glue): the examples every dev metric of the "
               "app is computed on. Once a run of this task has finished here, this page lets you type your own.")
    urlstate.show_problems(url_slot)
    urlstate.share_box()
    st.stop()

teachers = {t["label"]: t for t in runs["teachers"]}
students = {s["label"]: s for s in runs["students"]}
short = short_labels(runs["students"])  # "KASP, 90 %": the chips and the table's rows stay whole at 1024 px
used = [s["teacher"] for s in runs["students"] if s["teacher"]]
default_t = next((lbl for lbl, t in teachers.items() if any(u.startswith(t["path"]) for u in used)),
                 next(iter(teachers), None))
t_by_id = {t["id"]: lbl for lbl, t in teachers.items()}
s_by_id = {s["id"]: lbl for lbl, s in students.items()}
key_t, key_s = f"predict_teacher_{task}", f"predict_students_{task}"
urlstate.seed("teacher", key_t, lambda v: t_by_id[v], what="teacher run")
urlstate.seed("runs", key_s, lambda v: [s_by_id[x] for x in urlstate.split(v)], bool, "student runs")
if st.session_state.get(key_t) not in teachers:
    st.session_state[key_t] = default_t
if not set(st.session_state.get(key_s) or []) <= set(students):
    st.session_state.pop(key_s)
st.session_state.setdefault(key_s, list(students)[:3])
c1, c2 = st.columns(2)
t_label = c1.selectbox("Teacher", list(teachers), key=key_t, help="A finished fine-tuning run of this task (dense).")
s_labels = c2.multiselect("Students", list(students), key=key_s, format_func=short.get, wrap=True,
                          help="Finished prune runs of this task (KASP or the magnitude baseline): "
                               + "; ".join(f"{short[lbl]}: `{s['id']}`" for lbl, s in students.items()) + ".")
urlstate.write("teacher", teachers[t_label]["id"] if t_label else None)
urlstate.write("runs", [students[s]["id"] for s in s_labels], urlstate.join)

key_a, key_b, key_pick = f"predict_a_{task}", f"predict_b_{task}", f"predict_pick_{task}"
if key_a not in st.session_state:
    a0, b0 = dev_example(task, 0)
    st.session_state[key_a], st.session_state[key_b] = a0, b0 or ""
urlstate.seed("sentence", key_a, valid=bool, what="sentence")
if T.text_b:
    urlstate.seed("sentence2", key_b, what="second sentence")


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
urlstate.write("sentence", st.session_state[key_a] or None)
urlstate.write("sentence2", (st.session_state.get(key_b) or None) if T.text_b else None)

models = {}
if t_label:
    models["dense teacher"] = teachers[t_label]["path"]  # the box above names it
for s in s_labels:
    models[short[s]] = students[s]["path"]
urlstate.show_problems(url_slot)
urlstate.share_box()
if not models:
    st.info("Choose a teacher or a student.")
    st.stop()
try:
    table = predict_texts(models, task, st.session_state[key_a], st.session_state.get(key_b) if T.text_b else None,
                          teacher="dense teacher" if t_label else None)
except KaspError as e:
    st.error(str(e))
    st.stop()
lesson_bar("pages/predict.py", here="predictions")
st.subheader("Teacher and students on this text", anchor="predictions")
if active("pages/predict.py", "sentence"):
    st.info("**Look at the rows:** does each sparse student give the teacher's answer, and with how much confidence? "
            "Then change the text, or pick a dev example where they disagree.", icon=":material/lightbulb:")
fmt = {"model": st.column_config.TextColumn(width=165), "prediction": st.column_config.TextColumn(width=100),
       "score": st.column_config.NumberColumn(format="%.3f", width=70),
       "agrees with teacher": st.column_config.CheckboxColumn("agrees", width=60, help="Agrees with the teacher."),
       "difference from teacher": st.column_config.NumberColumn("− teacher", format="%+.3f", width=80,
                                                                help="The score minus the teacher's.")}
fmt.update({c: st.column_config.ProgressColumn(c, min_value=0.0, max_value=1.0, format="percent", width=100)
            for c in table.columns if c.startswith("P(")})
# about 525 px at 1024 px, every probability in view; the gold label is the same on every row: said below
st.dataframe(table, hide_index=True, width="stretch", column_config=fmt, key="predict_table",
             column_order=[c for c in table.columns if c != "gold"])
for w in cut_warnings(models, task):  # a short tokenizer cuts the sentence: said, never silent
    st.warning(w, icon=":material/content_cut:")
gold = table["gold"].iloc[0]
st.caption("Source: live predictions, computed now, of the chosen checkpoints (the store's runs"
           + (", and the models shipped with KASP, whose recipes are in the box above" if ship["students"] else "") + "). "
           + (f"Gold label ({T.folder} dev): **{gold}**." if gold is not None else "Not a dev example: no gold label."))
