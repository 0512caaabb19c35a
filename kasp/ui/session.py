"""Runs people can follow and own: a browser session's owner token, the operator (the lecturer's
setting: a key, its attempts) and the runs of the Prune page's live panel. No Streamlit, no torch.
"""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path
from typing import Any

from kasp.experiments import jobs
from kasp.ground import settings
from kasp.ground.runs import FINAL_STATES, RunDir, list_runs


_TOKEN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def session_token(existing: str | None = None) -> str:
    """The owner token of a browser session: ``existing`` when it looks like one (e.g. from the page URL,
    so that a reload keeps ownership), else a new random one (``secrets.token_urlsafe``)."""
    if existing and _TOKEN.match(existing):
        return existing
    return secrets.token_urlsafe(12)


#: the shortest ``KASP_OPERATOR_KEY`` accepted (a shorter one switches the key off, with a warning)
OPERATOR_KEY_MIN_LENGTH = 16
#: wrong ``?operator=`` keys a browser session may give before it accepts no more
OPERATOR_MAX_ATTEMPTS = 5


def operator_key_problem() -> str | None:
    """Why ``KASP_OPERATOR_KEY`` cannot be used (None: it is unset, or long enough): set but shorter than
    :data:`OPERATOR_KEY_MIN_LENGTH` characters. ``kasp app`` refuses to start with such a key; the app
    switches the key off and says so in the sidebar."""
    secret = settings.get().operator_key
    if secret is None or len(secret) >= OPERATOR_KEY_MIN_LENGTH:
        return None
    return (f"KASP_OPERATOR_KEY is {len(secret)} characters long, shorter than the {OPERATOR_KEY_MIN_LENGTH} required, "
            "so no operator key is accepted: set a longer one (for example `python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(24))'`) and start the app again")


def operator_mode(key: str | None = None) -> bool:
    """Whether this session may cancel and delete every run (the lecturer's setting).

    On when the app was started with ``KASP_OPERATOR=1``, or when ``key`` (the page's ``?operator=``
    parameter) equals the secret in ``KASP_OPERATOR_KEY``, compared in constant time (as UTF-8 bytes,
    so any text is safe to compare). A secret shorter than :data:`OPERATOR_KEY_MIN_LENGTH` matches nothing.
    """
    if settings.get().operator:
        return True
    secret = settings.get().operator_key
    if not secret or operator_key_problem() or not key:
        return False
    return hmac.compare_digest(str(key).encode("utf-8", "surrogatepass"), secret.encode("utf-8", "surrogatepass"))


def operator_attempt(state: Any, key: str | None) -> str | None:
    """Take one ``?operator=`` key given to a browser session (``state``: its ``st.session_state``, or
    any dict): set ``state["operator"]`` when it is right; count it in ``state["operator_failures"]``
    when it is wrong. After :data:`OPERATOR_MAX_ATTEMPTS` wrong keys the session takes no more, right
    or wrong.

    Returns:
        the sentence the sidebar shows (wrong key and attempts left, no more attempts, no key
        configured or one too short), or None when the session is (now) the operator.
    """
    if state.get("operator"):
        return None
    failures = int(state.get("operator_failures", 0))
    if failures >= OPERATOR_MAX_ATTEMPTS:
        return (f"This session gave {OPERATOR_MAX_ATTEMPTS} wrong operator keys and accepts no more; the key in "
                "the address was ignored.")
    problem = operator_key_problem()
    if problem:
        return problem
    if not settings.get().operator_key:
        return "This app has no operator key (KASP_OPERATOR_KEY is not set): the operator key in the address was ignored."
    if operator_mode(key):
        state["operator"] = True
        return None
    state["operator_failures"] = failures = failures + 1
    left = OPERATOR_MAX_ATTEMPTS - failures
    return ("Wrong operator key: " + (f"{left} more attempt{'s' if left > 1 else ''} in this session." if left else
                                      "this session accepts no more operator keys."))


def panel_runs(session: str | None, store: str | Path | None = None) -> list[RunDir]:
    """The runs of the Prune page's live panel: every queued or running run (oldest first), then this
    session's own finished, failed or cancelled runs that it has not dismissed (newest first)."""
    runs = list_runs(store)
    active = sorted((r for r in runs if r.state() in ("queued", "running")), key=lambda r: r.id)
    own = [r for r in runs if session and r.state() in FINAL_STATES and jobs.owner(r) == session
           and not r.status().get("dismissed")]
    return active + own


def operator_key_configured() -> bool:
    """Whether the app accepts an operator key (``KASP_OPERATOR_KEY`` set and long enough), so the sidebar offers
    its password box."""
    return settings.get().operator_key is not None and operator_key_problem() is None
