"""Weights: see pruning happen. A run's recorded pictures of one matrix along the cubic schedule."""

import time

import streamlit as st

from kasp.ui import urlstate
from kasp.ui.curves import schedule_frame
from kasp.ui.engine import get_task, KINDS, pair_index, read_story, what_to_notice
from kasp.ui.figures import schedule_figure
from kasp.ui.figures_weights import story_figure
from kasp.ui.stories import partner, story_entries
from kasp.ui.lesson import active, budget_line, explain, lesson_bar
from kasp.ui.style import method_label

PLAY_SECONDS = 1.5  # one recorded step per tick while Play is on

task = st.session_state.get("task", "sst2")
T = get_task(task)
st.title(f"Weights: see pruning happen ({T.folder})")
url_slot = urlstate.page("run", "layer", "matrix", "step", "compare")
st.caption("Every prune run records, at its start, at its mask updates and at its end, a small picture of each "
           "encoder linear matrix: the fraction of weights kept in each block of the matrix, and the histogram of "
           "the kept weights' magnitudes |w| with the **magnitude threshold** (the smallest kept |w|: everything "
           "below it was set to zero).")


@st.cache_data(show_spinner=False, max_entries=16)
def _story(key: str, mtime: float, records: list | None):
    return read_story(records if records is not None else key)


def load(entry):
    if entry["source"] == "live run":
        f = entry["story"] / "weights.jsonl"
        return _story(str(entry["story"]), f.stat().st_mtime if f.exists() else 0.0, None)
    return _story(entry["id"], 0.0, entry["story"])


entries = story_entries(task)
for e in entries:
    if e.get("damage"):  # a damaged run is named; the others stay viewable
        st.warning(f"{e['id']}: {e['damage']}; its pictures are skipped (restore or delete the file).",
                   icon=":material/broken_image:")
with_story = [e for e in entries if e["has_story"]]
without = [e for e in entries if not e["has_story"] and e["source"] == "precomputed run"]
if without:
    names = ", ".join(e["id"] for e in without[:4]) + (f" and {len(without) - 4} more" if len(without) > 4 else "")
    st.info(f"The {len(without)} shipped {T.folder} run(s) without pictures ({names}) were made before KASP recorded "
            "weight pictures, so they have none to show. Every prune run launched on the Prune page (or with "
            "`kasp prune`) records them, and they appear here while the run is still going.")
if not with_story:
    st.info(f"No {T.folder} prune run with recorded weight pictures yet. Launch one on the Prune page.")
    urlstate.show_problems(url_slot)
    st.stop()

labels = {e["id"]: f"{e['id']} ({e['source']}, {method_label(e['method'])}, {e['sparsity'] * 100:.0f} %, {e['state']})"
          for e in with_story}
urlstate.seed("run", "weights_run", valid=labels, what="run")
if st.session_state.get("weights_run") not in labels:
    st.session_state.pop("weights_run", None)  # another task's run
    # opening: the store's own newest run, else the shipped KASP run at 90 % (the lesson's sparsity), not the first listed
    live = [e["id"] for e in with_story if e["source"] == "live run"]
    at90 = [e["id"] for e in with_story if e["method"] == "kasp" and abs(e["sparsity"] - 0.9) < 1e-6]
    if live or at90:
        st.session_state["weights_run"] = (live or at90)[0]
rid = st.selectbox("Run", list(labels), format_func=labels.get, key="weights_run",
                   help="Prune runs of this task with recorded pictures (live runs of this machine's store first).")
entry = next(e for e in with_story if e["id"] == rid)
try:
    story = load(entry)
except ValueError as e:  # a damaged weights.jsonl: name the run, keep the page (other runs stay selectable)
    st.warning(f"The weight pictures of {rid} cannot be read: {e}. Restore or delete its weights.jsonl; "
               "choose another run above.", icon=":material/broken_image:")
    urlstate.show_problems(url_slot)
    st.stop()
if story is None:
    st.info("This run has not recorded its first picture yet; it appears at the run's start. Reload in a moment.")
    st.stop()

urlstate.write("run", rid)
layers = sorted({int(n.split(".")[0]) for n in story.matrices})
urlstate.seed("layer", "weights_layer", int, layers, "layer")
urlstate.seed("matrix", "weights_kind", valid=KINDS, what="matrix")
if st.session_state.get("weights_layer") not in layers:
    st.session_state.pop("weights_layer", None)
c1, c2 = st.columns([1, 3])
layer = c1.selectbox("Layer", layers, key="weights_layer", help="Encoder layer (0 = closest to the embeddings).")
kind = c2.radio("Matrix", KINDS, horizontal=True, key="weights_kind",
                help="Q, K, V: attention query, key and value projections; O: attention output; FFN-in / FFN-out: "
                     "the feed-forward block's expansion and projection.")
urlstate.write("layer", layer)
urlstate.write("matrix", kind)
name = f"{layer}.{kind}"
steps = [int(s) for s in story.steps]
lesson_bar("pages/weights.py", budget_line(task), here="the-weights-story")
st.subheader("The weights' story, step by step", anchor="the-weights-story",
             help=explain("mask", "cubic schedule", "¼ octave"))
if active("pages/weights.py", "weights"):
    st.info("**Press Play** (below the slider): the grey bar at |w| = 0 (the pruned weights) grows and the heat map "
            "darkens block by block as the cubic schedule removes weights.", icon=":material/play_circle:")
urlstate.seed("step", "weights_step", int, steps, "step")
# Back / Next / Play set the step through session state (never a browser-side animation), so that the
# slider, the address, the sentence and the schedule marker always show the same step as the pictures
goto = st.session_state.pop("weights_goto", None)
if goto is not None:
    st.session_state["weights_step"] = goto
if st.session_state.pop("weights_play_stop", False):
    st.session_state["weights_play"] = False
if st.session_state.get("weights_step") not in steps:
    st.session_state["weights_step"] = steps[-1]  # the end, or another run's step that this one did not record


def _move(by: int) -> None:
    cur = st.session_state.get("weights_step", steps[-1])
    k = steps.index(cur) if cur in steps else len(steps) - 1
    st.session_state["weights_step"] = steps[min(max(k + by, 0), len(steps) - 1)]
    st.session_state["weights_play"] = False


if len(steps) > 1:
    step = st.select_slider("Step", steps, key="weights_step",
                            help="Recorded steps: the start, the mask updates (at most 20 of them) and the end.")
    c1, c2, c3, _ = st.columns([1, 1, 1, 2], vertical_alignment="center")
    c1.button("◀ Back", on_click=_move, args=(-1,), disabled=step == steps[0], key="weights_back",
              help="The previous recorded step.")
    c2.button("Next ▶", on_click=_move, args=(1,), disabled=step == steps[-1], key="weights_next",
              help="The next recorded step.")
    playing = c3.toggle("Play", key="weights_play",
                        help=f"Step through the recorded steps, one every {PLAY_SECONDS:g} s, from here to the end "
                             "(from the start when at the end). The slider, the address, the sentence below and the "
                             "schedule marker move with the pictures: the page itself steps, because a browser-side "
                             "animation of the figure cannot move Streamlit's slider, address or text.")
else:
    step = steps[0]
    playing = False
    st.caption(f"Only step {step} is recorded so far; the next picture comes with the run's next mask update.")
urlstate.write("step", step)

if playing:
    @st.fragment(run_every=PLAY_SECONDS)
    def _tick() -> None:
        if time.time() - st.session_state.get("weights_tick", 0.0) < PLAY_SECONDS * 0.8:
            return  # the page was just redrawn for this tick
        st.session_state["weights_tick"] = time.time()
        cur = st.session_state.get("weights_step", steps[-1])
        k = steps.index(cur) if cur in steps else len(steps) - 1
        if k == len(steps) - 1 and st.session_state.get("weights_played"):
            st.session_state["weights_play_stop"] = True  # played to the end: stop there
            st.session_state.pop("weights_played", None)
        else:
            st.session_state["weights_goto"] = steps[0] if k == len(steps) - 1 else steps[k + 1]
            st.session_state["weights_played"] = True
        st.rerun()

    _tick()
else:
    st.session_state.pop("weights_played", None)
    st.session_state.pop("weights_tick", None)

other_entry = partner(entry, with_story)
compare = False
if other_entry is not None:
    urlstate.seed("compare", "weights_compare", lambda v: {"1": True, "0": False}[v], what="compare")
    st.session_state.setdefault("weights_compare", True)
    compare = st.toggle(f"Side by side with {method_label(other_entry['method'])} run {other_entry['id']} (paired at equal "
                        "sparsity)",
                        key="weights_compare")
    urlstate.write("compare", None if compare else "0")
i = story.nearest(step)
panels = [(method_label(entry["method"]), story, i)]
other = load(other_entry) if compare else None
j = None
if other is not None and name in other.matrices:
    j = pair_index(story, i, other)
    panels.append((method_label(other_entry["method"]), other, j))
    same_length = int(other.steps[-1]) == int(story.steps[-1])
    st.caption(f"**Paired at equal sparsity**: {method_label(entry['method'])} at step {story.steps[i]} of {int(story.steps[-1])} "
               f"({story.sparsity[i] * 100:.1f} % pruned) beside {method_label(other_entry['method'])} at its step {other.steps[j]} "
               f"of {int(other.steps[-1])} ({other.sparsity[j] * 100:.1f} % pruned), its recorded step nearest in "
               "sparsity. " + ("Both runs have the same length, so this is also the same step." if same_length else
                               "The runs differ in length, so equal step numbers would compare different sparsities; "
                               "the pair is matched by sparsity (the fraction of zeros the masks hold), read from "
                               "each run's own record."))
else:
    other = None

st.plotly_chart(story_figure(panels, name), width="stretch", key="weights_story_fig")
st.markdown("**What to notice:** " + what_to_notice(story, step, layer, kind, other,
                                                    (method_label(entry["method"]),
                                                     method_label(other_entry["method"]) if other else ""),
                                                    other_index=j))
evals = [r for r in entry["progress"] if r.get("type") == "eval"]
total = int(entry["total_steps"] or steps[-1] or 1)
rec = entry.get("recipe") or {}  # the run's own schedule: a first pruning step, a recovery phase, its mask updates
initial, recovery = float(rec.get("initial_sparsity") or 0.0), float(rec.get("recovery") or 0.0)
curve, updates = schedule_frame(float(entry["sparsity"]), total, int(rec.get("pruning_events") or 100), initial, recovery)
st.plotly_chart(schedule_figure(curve, updates, height=330, step=step, evals=evals, task=task, initial=initial,
                                recovery=recovery), width="stretch", key="weights_schedule")


def _source(e) -> str:
    rec = e["recipe"] or {}
    return {"live run": "live run in this machine's store",
            "precomputed sweep": f"precomputed sweep run (`kasp sweep --task {task}`, shipped in assets/sweeps/{task}.json; "
                                 f"recipe: {rec.get('max_steps', '?')} steps, seed {rec.get('seed', '?')}, "
                                 f"lr {rec.get('lr', '?')}, length {rec.get('max_seq_length', '?')})"
            }.get(e["source"], f"precomputed run, recipe `{e['command']}`")


beside = (f" Beside it: {_source(other_entry)}, run {other_entry['id']}, recorded at step {other.steps[j]} of "
          f"{int(other_entry['total_steps'] or other.steps[-1])}." if other is not None else "")
st.caption(f"Source: {_source(entry)}, run {entry['id']}, recorded at step {story.steps[i]} of {total}.{beside} Densities "
           "are per block (uint8, ±0.2 %); histogram counts, the pruned count and thresholds are exact (from the recorded "
           "counts). The schedule curve is the formula; the dev metric points are the run's own evaluations up to this step.")
urlstate.show_problems(url_slot)
urlstate.share_box()
