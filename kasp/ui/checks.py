"""Checks the app makes on a model before it is used: the pre-trained model named in the sidebar, and a
teacher that has learnt no more than a constant answer. No Streamlit, no torch at import.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.spec.tasks import format_metric, get_task, metric_label, task_name
from kasp.ui.devset import majority_baseline


# --- the model box and the teacher ---------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def check_model(name: str, offline: bool | None = None) -> str | None:
    """Check the pre-trained model named in the sidebar before anything is launched.

    Args:
        name: "default", a local folder (a Hugging Face checkpoint or a KASP run directory) or a Hub id.
        offline: whether the Hub is unreachable; default: ``HF_HUB_OFFLINE=1`` (the app sets it).

    Returns:
        None when the model can be used, else a one-line message naming the problem and the fix.
    """
    from kasp.models.modeling import check_checkpoint_dir, default_model_path, resolve_model

    name = (name or "default").strip()
    if offline is None:
        offline = settings.get().hub_offline
    try:
        if name == "default":
            default_model_path()
            return None
        if Path(name).is_dir():
            check_checkpoint_dir(resolve_model(name))
            return None
    except KaspError as e:
        return str(e)
    if offline:
        return (f"`{name}` is not a folder on this machine, and the app works offline: use `default` "
                "(MiniLM-L6-H384) or the path of a local folder holding a Hugging Face checkpoint (safetensors).")
    if not _HUB_ID.match(name):
        return f"`{name}` is neither a local folder nor a Hugging Face Hub id (owner/name)"
    return None


def teacher_warning(task: str, report: dict[str, Any]) -> str | None:
    """A warning when a teacher's dev main metric is at or below the majority-class baseline, else None."""
    base = majority_baseline(task)
    main = get_task(task).main_metric
    value = (report.get("metrics") or {}).get(main)
    if base is None or value is None or value > base[main]:
        return None
    return (f"This teacher's dev {metric_label(task)} ({format_metric(task, value)}) is not above that of always "
            f"answering the most frequent label of the {task_name(task)} dev set ({format_metric(task, base[main])}): "
            "it has learnt nothing a constant answer would not, and a student distilled from it learns no more. "
            "Fine-tune a teacher with more steps.")
