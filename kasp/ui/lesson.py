"""The guided lesson (issue 25): seven steps through the app, from what pruning removes to a sentence of your own.

Each step is a page of the app and the address parameters that set its view (:mod:`kasp.ui.urlstate`), plus
``lesson=<n>``. A page that finds ``?lesson=<n>`` for itself draws the lesson bar at its top (the step's
question, what to look at, Back and Next), scrolls to the step's anchor (a heading of the page) and marks the
answer on the step's chart (:func:`mark`). Leaving the path (the sidebar, another link) drops the parameter,
and with it the bar.

Also here: the glossary, one plain-language sentence per technical term the app uses (:data:`GLOSSARY`),
shown as tooltips (:func:`explain`) and as a list (:func:`glossary_box`).
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from kasp.spec.tasks import task_name

#: technical term -> one sentence in plain words (the tooltips and the glossary box)
GLOSSARY: dict[str, str] = {
    "sparsity": "The share of the encoder linear weights that are exactly zero: 90 % sparsity keeps one weight in "
                "ten (×10 compression).",
    "encoder linear weights": "The six weight matrices of every Transformer layer (query, key, value, attention "
                              "output, FFN in, FFN out): the weights KASP prunes. Embeddings, LayerNorms, biases and "
                              "the classifier are never pruned.",
    "mask": "A 0/1 matrix as large as a weight matrix: where it is 0 the weight is held at zero (pruned).",
    "cubic schedule": "How the sparsity rises during training, s_t = s_f (1 − (1 − t/T)³): fast at first, slowly at "
                      "the end, so the student has time to recover (Zhu & Gupta 2017).",
    "s_f": "The final sparsity the schedule reaches at the end of the run (the target, e.g. 0.9).",
    "teacher": "The dense model fine-tuned on the task. It is frozen and shows the student what to output.",
    "student": "The model that is pruned and trained. KASP's student starts from the pre-trained, not the "
               "fine-tuned, model.",
    "distillation": "Training the student to copy the teacher (its attention scores, hidden states and soft "
                    "predictions) instead of learning from the gold labels alone.",
    "magnitude baseline": "Prune the fine-tuned model by dropping its smallest weights, then retrain it on the "
                          "task's labels: no teacher.",
    "small dense": "An unpruned model made smaller (fewer layers, narrower feed-forward) until it has as many "
                   "weights as the pruned model keeps.",
    "majority class": "The score of always answering the dev set's most frequent class: the floor a model must beat "
                      "to have learnt anything.",
    "JS": "Jensen–Shannon divergence: how different two probability distributions are (here, where a token "
          "attends): 0 = identical, 1 bit = nothing in common. Attention similarity is 1 − JS.",
    "CKA": "Centred kernel alignment: how alike two layers' representations of the same tokens are, 0 = unrelated, "
           "1 = the same up to rotation and scale (Kornblith et al. 2019).",
    "MCC": "Matthews correlation coefficient, CoLA's metric: 0 for guessing or always answering one class, 1 for "
           "perfect; fair when one class is much more common.",
    "¼ octave": "A histogram bin a quarter of a doubling wide: weights whose sizes differ by less than 2^¼ ≈ 1.19× "
                "share a bin (a logarithmic scale of |w|).",
    "information bound": "The fewest bytes a format could use for a pruned matrix that stores each non-zero value "
                         "exactly, at the narrowest float width that holds it: log2 C(n, nnz) bits to say where the "
                         "non-zeros are, plus 16 bits a value when every value is a float16 or bfloat16 number (as "
                         "in the shipped models), else the value's own width (32 in float32). A compressor that "
                         "also finds patterns in the values can go somewhat lower.",
}


def explain(*terms: str) -> str:
    """The glossary sentences of ``terms`` as one tooltip text ("**CKA**: ... **JS**: ...").

    Raises:
        KeyError: a term that is not in :data:`GLOSSARY` (a page naming a term must define it).
    """
    return "  \n".join(f"**{t}**: {GLOSSARY[t]}" for t in terms)


def glossary_box(*terms: str, expanded: bool = False) -> None:
    """An expander listing ``terms`` (default: all) in plain words."""
    with st.expander("Terms in plain words", icon=":material/translate:", expanded=expanded):
        for t in terms or GLOSSARY:
            st.markdown(f"**{t}**: {GLOSSARY[t]}")


def _weights_params(task: str) -> dict[str, str]:
    from kasp.ui.presets import view_presets

    params = next(p["params"] for p in view_presets(task) if p["page"] == "pages/weights.py")
    return {k: v for k, v in params.items() if k != "at"}  # the lesson scrolls to its own bar


def steps(task: str) -> list[dict[str, Any]]:
    """The lesson's steps for ``task``: ``key``, ``title`` (the question), ``page`` (script path), ``params`` (the
    address, ``lesson`` included), ``anchor`` (the heading scrolled to), ``look`` (what to look at)."""
    from kasp.models.shipped import manifest

    name = task_name(task)
    ships = any(r["task"] == task for r in manifest()["runs"])
    out = [
        {"key": "removes", "title": "What does pruning remove?", "page": "pages/inspect.py", "anchor": "sparsity-per-matrix",
         "params": {"run": "shipped-sst2-kasp-90"},
         "look": "Every encoder linear matrix of the KASP student shipped with KASP (trained on SST-2; pruning removes "
                 "the same kind of weights on every task) is about 90 % zeros; the embeddings, LayerNorms and "
                 "classifier are not pruned at all."},
        {"key": "schedule", "title": "How fast are the weights removed?", "page": "pages/overview.py",
         "anchor": "the-cubic-sparsity-schedule", "params": {"sparsity": "0.9", "steps": "2000"},
         "look": "The cubic schedule removes most weights early: the purple ring shows how much is gone half-way "
                 "through the run, while the student still has half its steps to recover."},
        {"key": "distil", "title": "Distil or not?", "page": "pages/overview.py", "anchor": "dev-metric-against-sparsity",
         "params": {"methods": "kasp,magnitude"},
         "look": f"{name}: KASP (pre-trained student, distilled from the teacher while pruning) against the "
                 "magnitude baseline (prune the fine-tuned model, retrain on the labels). The purple dashed line marks 90 %."},
        {"key": "small", "title": "Sparse or small?", "page": "pages/overview.py", "anchor": "dev-metric-against-sparsity",
         "params": {"methods": "kasp,small-dense"},
         "look": f"{name}: the 90 %-sparse KASP student against a small dense model with as many non-zero weights. "
                 "The purple dashed line marks 90 %."},
        {"key": "kept", "title": "What did the student keep?", "page": "pages/attention.py",
         "anchor": "retention-against-sparsity", "params": {},
         "look": "Attention similarity (1 − JS) and CKA of each student with its teacher: 1 means it attends and "
                 "represents like the teacher. Compare the methods at 90 % (purple dashed line)."},
        {"key": "weights", "title": "Watch the weights go", "page": "pages/weights.py", "anchor": "the-weights-story",
         "params": _weights_params(task),
         "look": "Press Play: one matrix through the run, beside the magnitude baseline at the same sparsity. The bar "
                 "at zero is the pruned weights; watch it grow along the cubic schedule."},
        {"key": "sentence", "title": "Try a sentence", "page": "pages/predict.py", "anchor": "predictions",
         "params": {} if ships else {"task": "sst2", "lesson_from": task},
         "look": "The dense teacher and the 90 %-sparse students on one sentence: type your own, or pick a dev example "
                 "where they disagree." + ("" if ships else f" (No trained {name} model ships with KASP, so this step "
                                                            "switches to SST-2, whose models do.)")},
    ]
    for i, s in enumerate(out, 1):
        s["params"] = {"task": task, **s["params"], "lesson": str(i)}
    return out


def lesson_task() -> str:
    """The task the lesson was started on: ``?lesson_from=`` when a step switched to another task (the last step
    goes to SST-2 when the task has no shipped models), else the sidebar's task."""
    from kasp.ui.devset import sidebar_tasks

    origin = st.query_params.get("lesson_from", "")
    return origin if origin in sidebar_tasks() else st.session_state.get("task", "sst2")


def current(page: str) -> tuple[int, dict[str, Any]] | None:
    """(1-based index, step) when the address holds ``?lesson=<n>`` for a step on ``page`` (script path such as
    "pages/overview.py"), else None."""
    try:
        n = int(st.query_params.get("lesson", ""))
    except ValueError:
        return None
    all_steps = steps(lesson_task())
    if 1 <= n <= len(all_steps) and all_steps[n - 1]["page"] == page:
        return n, all_steps[n - 1]
    return None


def active(page: str, key: str) -> bool:
    """Whether the lesson step ``key`` is the one shown on ``page`` now (so the page marks its answer)."""
    cur = current(page)
    return cur is not None and cur[1]["key"] == key


def _link(where, step: dict[str, Any], label: str, icon: str) -> None:
    from kasp.ui.urlstate import preset_link

    preset_link(where, {"label": label, "icon": icon, "page": step["page"], "params": step["params"],
                        "help": step["title"]})


def lesson_bar(page: str, budget_line: str | None = None, here: str | None = None) -> None:
    """The lesson's bar on ``page`` when a step of it is in the address and ``here`` is that step's anchor: the
    step's question and what to look at, the task's budget line, Back / Next / end links; then a scroll that
    brings the bar to the top of the window. Each page calls it just above each heading a step points at, so
    that the bar, the heading and the chart it explains are on screen together (at 1024 × 768)."""
    cur = current(page)
    if cur is None or cur[1]["anchor"] != here:
        return
    n, step = cur
    all_steps = steps(lesson_task())
    with st.container(border=True, key=f"lesson-bar-{n}"):
        # compact (no progress bar: the title counts the steps), so that the chart below fits the window with it
        st.markdown(f"**Lesson, step {n} of {len(all_steps)}: {step['title']}**")
        st.markdown(step["look"])
        if budget_line:
            st.caption(budget_line)
        c = st.columns([0.8, 2.8, 1.4])  # the next question in full at 1024 px; Back names its step in its tooltip
        if n > 1:
            _link(c[0], all_steps[n - 2], "Back", ":material/arrow_back:")
        if n < len(all_steps):
            _link(c[1], all_steps[n], f"Next: {all_steps[n]['title']}", ":material/arrow_forward:")
        _link(c[2], {"page": "pages/overview.py", "params": {"task": lesson_task()}, "title": "Leave the lesson"},
              "End lesson", ":material/close:")
    scroll_to(f".st-key-lesson-bar-{n}", n)


def scroll_to(target: str, nonce: Any = None) -> None:
    """Scroll the browser to ``target`` once it is drawn: the heading whose anchor is ``target``, or the element
    matching the CSS selector ``target`` when it starts with "." (a zero-height frame with a script; same origin as
    the app). ``nonce`` makes a new frame, so that the scroll happens again."""
    # the page is still drawing when the frame runs (charts above the target grow as they render), so the scroll is
    # repeated while the target is not near the top, for a few seconds at most
    find = ("d.querySelector(%s)" if target.startswith(".") else "d.getElementById(%s)") % json.dumps(target)
    script = ("<script>(function(){var n=0;function go(){var d=window.parent.document;var e=" + find + ";"
              "if(e){var t=e.getBoundingClientRect().top;if(t<0||t>90){e.scrollIntoView({block:'start'});}}"
              "if(n++<12){setTimeout(go,350);}}setTimeout(go,300);})();</script><!-- %s -->") % json.dumps(str(nonce))
    st.iframe(script, height=1)


def start_link(where, task: str) -> None:
    """The link that starts the lesson at its first step."""
    _link(where, steps(task)[0], "Start the guided lesson (7 steps)", ":material/school:")


def budget_need(task: str, floor: float | None, path=None) -> str | None:
    """What the recipe study measured beyond the shipped budget of a small ``task`` at 90 %
    (:func:`kasp.ui.tables.longer_budget`): the longer run's end and its best point on the way, and, when it also
    ends within a point of ``floor`` (the majority class, or 0 for a correlation; the app's test of a learnt task,
    :func:`kasp.ui.figures.caption_facts`), that the task needs more than that many epochs with the default recipe,
    else that KASP learns it in that many. Without a longer run: :func:`shipped_budget_need`."""
    from kasp.spec.metrics import METRIC_NAMES
    from kasp.ui.tables import longer_budget

    b = longer_budget(task, path)
    shipped_steps = _shipped_kasp90_steps(task)
    if b is None or (shipped_steps and b.get("steps", 0) <= shipped_steps):  # no run longer than the shipped ones
        return shipped_budget_need(task, floor)
    final = list(b["dev"].values())
    mean = 100 * sum(final) / len(final)
    best = max(b.get("evals") or [], key=lambda p: sum(p["dev"].values()) / len(p["dev"]), default=None)
    epochs = f"{b['epochs']:g} epochs ({b['steps']:,} steps)" if b.get("epochs") else f"{b['steps']:,} steps"
    t = b["teacher"]
    name = METRIC_NAMES.get(b.get("main_metric"), b.get("main_metric") or "metric")
    teacher = f"a teacher trained {t['epochs']:g} epochs" if isinstance(t.get("epochs"), (int, float)) else "its teacher"
    text = (f"A longer run was measured (precomputed recipe-study run `{b['line']}`, {len(final)} "
            f"seed{'s' if len(final) > 1 else ''}, bench/study/): KASP at 90 % for {epochs}, distilled from {teacher} "
            f"({100 * t['metric']:.2f}), ends at {name} {mean:.2f}")
    low = 0.0 if floor is None else floor
    stuck = mean - 100 * low < 1.0
    if stuck:
        text += f", at or below the floor ({100 * low:.2f})"
    # the best point on the way, where it came before the target sparsity (at the target it is the end's story)
    if best is not None and best.get("sparsity") is not None and best["sparsity"] < b.get("sparsity", 0.9) - 0.005:
        text += (f"{', though' if stuck else ';'} on the way it reached "
                 f"{100 * sum(best['dev'].values()) / len(best['dev']):.2f} at {100 * best['sparsity']:.0f} % sparsity")
    if stuck:
        return text + f": at 90 % this task needs more than {epochs.split(' (')[0]} with the default recipe."
    return text + f": at 90 % KASP learns this task in {epochs.split(' (')[0]} with the default recipe."


def _shipped_kasp90_steps(task: str) -> int | None:
    """The step count of the shipped sweep's KASP runs at 90 % of ``task`` (None without such runs)."""
    from kasp.experiments.results import load_shipped
    from kasp.ground.errors import KaspError

    try:
        runs = [e for e in (load_shipped(task) or {}).get("runs", []) if e["method"] == "kasp" and e["sparsity"] == 0.9]
    except KaspError:
        return None
    return max((e.get("steps") or 0 for e in runs), default=0) or None


def shipped_budget_need(task: str, floor: float | None) -> str | None:
    """The budget need the shipped sweep itself measures for a small ``task`` at 90 % when no longer run ships: if
    no method learnt the task there (:func:`kasp.ui.figures.caption_facts` on the sweep's points, ``floor`` the
    majority class or None for a correlation), that it needs more than the epochs those runs trained, with their
    recipe: a lower bound measured, not a guess. None when the sweep learnt the task, or has no KASP run at 90 %."""
    from kasp.experiments.results import load_shipped, sweep_points
    from kasp.ground.errors import KaspError
    from kasp.ui.devset import train_size
    from kasp.ui.figures import caption_facts

    try:
        sweep = load_shipped(task)
    except KaspError:
        return None
    steps = _shipped_kasp90_steps(task)
    if not sweep or not steps:
        return None
    teacher = (sweep.get("teacher") or {}).get("metric")
    weak = teacher_near_floor(task, teacher)  # one binomial test: the learnt check and the sentence both read it
    if caption_facts(sweep_points(sweep), 0.9, floor, teacher, weak is not None)["learnt"]:
        return None
    budget = (sweep.get("plan") or {}).get("budget") or {}
    n = train_size(task)
    batch = next((e["recipe"].get("batch_size") for e in sweep["runs"] if e.get("recipe")), None) or 32
    epochs = budget.get("epochs") or (round(steps * batch / n, 1) if n else None)
    span = f"{epochs:g} epochs ({steps:,} steps)" if epochs else f"{steps:,} steps"
    text = (f"Measured by the shipped runs (precomputed sweep, assets/sweeps): after {span} no method has learnt "
            f"{task_name(task)} at 90 %, so at 90 % it needs more than {span.split(' (')[0]} with their recipe.")
    return f"{text} {weak}" if weak else text


def teacher_at_chance(task: str, teacher: float | None) -> bool:
    """Whether the dense ``teacher`` of ``task`` is not significantly above the majority class on dev
    (:func:`teacher_near_floor` has a sentence for it): then no student counts as having learnt the task
    (:func:`kasp.ui.figures.caption_facts`)."""
    return teacher_near_floor(task, teacher) is not None


def teacher_near_floor(task: str, teacher: float | None) -> str | None:
    """A sentence when the dense ``teacher`` (dev accuracy, a fraction) of a task whose main metric is accuracy is
    not significantly above always answering the majority class on the shipped dev set: a one-sided exact binomial
    test (``scipy.stats.binomtest``, H0: the teacher's correct answers are draws at the majority class's rate) with
    p >= 0.05. Then no student distilled from it can be expected to learn the task, whatever its budget. None when
    the teacher is clearly above the floor, the metric is not accuracy (F1, correlations), or the dev labels are
    missing."""
    from kasp.ground.errors import KaspError
    from kasp.spec.tasks import get_task
    from kasp.ui.devset import majority_metric

    floor = majority_metric(task)
    if teacher is None or floor is None or get_task(task).main_metric != "accuracy":
        return None
    try:
        from kasp.data.files import load_split

        n = len(load_split(get_task(task), "dev"))
    except KaspError:
        return None
    from scipy.stats import binomtest

    k = round(teacher * n)
    p = binomtest(k, n, floor, alternative="greater").pvalue
    if p < 0.05:
        return None
    margin = k - round(floor * n)
    return (f"Its teacher ({100 * teacher:.2f}) is itself only {round(100 * teacher, 2) - round(100 * floor, 2):.2f} points above always "
            f"answering the majority class ({100 * floor:.2f}): {margin} more right answers of {n:,} dev examples, a margin "
            f"chance alone reaches with probability {p:.2f} (one-sided binomial test). A student cannot be expected to learn "
            "more than its teacher knows, so a better teacher comes before a longer budget.")


def budget_line(task: str) -> str | None:
    """One line on what the shipped results of ``task`` can and cannot show: their training length (steps and
    epochs of the KASP runs at 90 %) and whether the students learnt the task there (:func:`caption_facts`)."""
    from kasp.ground.errors import KaspError
    from kasp.experiments.results import load_shipped
    from kasp.ui.curves import curve_data
    from kasp.ui.devset import majority_metric, train_size
    from kasp.ui.figures import caption_facts

    try:
        sweep = load_shipped(task) or {}
    except KaspError:
        return None
    steps_ = sorted({r.get("steps") for r in sweep.get("runs", []) if r.get("method") == "kasp"
                     and isinstance(r.get("steps"), int)})
    if not steps_:
        return None
    batch = (sweep.get("runs")[0].get("recipe") or {}).get("batch_size") or 32
    n = train_size(task)
    epochs = f" (about {steps_[-1] * batch / n:.1f} epochs of its {n:,} training examples)" if n else ""
    points, teacher, _, _ = curve_data(task)
    t = teacher[0] if teacher else None
    facts = caption_facts(points, 0.9, majority_metric(task), t, teacher_at_chance(task, t))
    head = f"{task_name(task)}: the shipped runs trained {steps_[-1]:,} steps{epochs}. "
    if facts["kasp"] is None:
        return head + "No KASP result at 90 % ships for it."
    if facts["learnt"]:
        return head + "At 90 % the students have learnt the task, so the comparisons at 90 % are meaningful."
    need = budget_need(task, majority_metric(task))
    learnt = [task_name(t) for t in tasks_learnt_at_90() if t != task]
    names = ", ".join(learnt[:-1]) + " and " + learnt[-1] if len(learnt) > 1 else "".join(learnt)  # "A, B and C"
    where = f"; {names} {'shows' if len(learnt) == 1 else 'show'} them" if learnt else ""
    shows = ("and neither has its teacher: this task shows what a teacher that has not learnt it passes on"
             if facts.get("teacher_at_chance") else "so this task shows what too short a budget does")
    return head + (f"At 90 % no student has learnt the task yet (every method sits at the floor), {shows}, not the "
                   f"paper's claims{where}.") + (f" {need}" if need else "")


def tasks_learnt_at_90() -> list[str]:
    """The GLUE tasks (keys, in :data:`kasp.spec.tasks.TASKS` order) whose shipped sweep has a student that learnt
    the task at 90 % (:func:`kasp.ui.figures.caption_facts`: above the majority-class or zero-correlation floor by
    more than the seed spread); a task whose shipped file is missing or broken is left out."""
    from kasp.ground.errors import KaspError
    from kasp.spec.tasks import TASKS
    from kasp.ui.curves import curve_data
    from kasp.ui.devset import majority_metric
    from kasp.ui.figures import caption_facts

    out = []
    for t in TASKS:
        try:
            points, teacher, _, _ = curve_data(t)
        except KaspError:
            continue
        tm = teacher[0] if teacher else None
        if len(points) and caption_facts(points, 0.9, majority_metric(t), tm, teacher_at_chance(t, tm))["learnt"]:
            out.append(t)
    return out
