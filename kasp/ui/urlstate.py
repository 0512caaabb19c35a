"""The view in the page address: shareable links and one-click presets (``st.query_params``).

Every page keeps what a viewer chose (task, model, selected runs, sparsity, the sentence on the
Attention page, ...) in its address, so that a copied link opens the same view on another machine
that has the same shipped results. The rules:

- A value in the address that this browser session did not write itself (a link just opened, a
  preset clicked) is applied once, before the widget it belongs to is drawn; after that the widget
  rules and its value is written back to the address. So a viewer's own clicks are never undone by
  the address, and a link is never ignored.
- A value that does not fit (an unknown task, a run that is not on this machine, a sparsity that is
  not a number) is not applied; the page says which and why (:func:`problems`), and draws its
  default view.
- Each page declares its own parameters (:func:`page`); the parameters of other pages are dropped
  from the address, so that a link carries only what its page reads. Entering a page (from another
  one) treats every value in its address as new, so a preset opened a second time applies again. ``task`` and ``model`` are the
  sidebar's, on every page, and so are ``present`` (presenter mode) and ``lesson`` (the guided lesson's step,
  :mod:`kasp.ui.lesson`).
- ``session`` (the browser session's run ownership token, see ``app.py``) is never part of a shared
  link: :func:`share_url` leaves it out.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable
from urllib.parse import urlencode

import streamlit as st

#: parameters that every page keeps: the sidebar's choice
GLOBAL = ("task", "model", "present", "lesson", "lesson_from")
#: parameters that identify the browser session, never shared
PRIVATE = ("session", "operator")
_WRITTEN = "_url_written"  # session key: {param: the value this session last wrote or applied}
_PROBLEMS = "_url_problems"
_PAGE = "_url_page"  # session key: the parameters of the page drawn last (which page the session is on)


def _written() -> dict[str, str]:
    return st.session_state.setdefault(_WRITTEN, {})


def route_through_app(rerun: bool = True) -> None:
    """Make every run of the app go through ``app.py`` (its sidebar and ``st.navigation``), never a page alone.

    Streamlit treats an app with a ``pages/`` folder beside its entry script as a version-1 multipage app
    (``PagesManager.uses_pages_directory``): until that flag is cleared, a run opened straight at a page's
    address (``/weights`` as the server's very first request) runs ``pages/weights.py`` by itself, without
    ``app.py``'s sidebar and with Streamlit's own list of file names. ``app.py`` clears the flag on its first
    run; a page that finds it still set clears it and reruns, so that this run, too, goes through ``app.py``.
    Outside ``streamlit run`` (AppTest runs a page as the entry script) the flag is never set and nothing happens.

    Args:
        rerun: rerun after clearing the flag (a page); ``app.py`` passes False, since it is running already.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if rerun:
            st.rerun()


def page(*names: str):
    """Declare the current page's parameters: every other non-global, non-private one leaves the address.

    Returns:
        An empty container at this place of the page, where :func:`show_problems` puts its warnings
        (so that a link's unfitting value is reported at the top of the page, not below the charts).
    """
    route_through_app()
    keep = set(GLOBAL) | set(PRIVATE) | set(names)
    page_id = ",".join(names)
    if st.session_state.get(_PAGE) != page_id:  # entering a page: every value in its address is news
        st.session_state[_PAGE] = page_id
        for k in [k for k in _written() if k not in GLOBAL]:
            del _written()[k]
    for k in list(st.query_params.keys()):
        if k not in keep:
            del st.query_params[k]
            _written().pop(k, None)
    return st.container()


def seed(name: str, key: str, parse: Callable[[str], Any] = str,
         valid: Callable[[Any], bool] | Iterable[Any] | None = None, what: str | None = None) -> bool:
    """Apply ``?name=...`` to ``st.session_state[key]`` when the address holds a value this session has
    not written or applied yet (a link just opened). Call it before the widget with ``key`` is drawn.

    Args:
        name: the query parameter.
        key: the session-state key (usually the widget's key) that receives the parsed value.
        parse: str -> value; a ValueError marks the value as not fitting.
        valid: the allowed values (a collection) or a predicate on the parsed value; None: any.
        what: how the page names the parameter in a problem message (default ``name``).

    Returns:
        True when a value was applied. A value that does not fit is recorded for :func:`problems`.
    """
    raw = st.query_params.get(name)
    if raw is None or raw == _written().get(name):
        return False
    _written()[name] = raw  # handled once, applied or not
    try:
        value = parse(raw)
        ok = True if valid is None else (valid(value) if callable(valid) else value in list(valid))
    except (ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        shown = raw.replace("`", "'").replace("\n", " ")  # shown as code, never as Markdown of the link's making
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        st.session_state.setdefault(_PROBLEMS, []).append(
            f"The link's {what or name} `{shown}` does not fit here (not on this machine, or not a valid value): "
            "showing the default instead.")
        return False
    st.session_state[key] = value
    return True


def initial(name: str, default: Any, parse: Callable[[str], Any] = str,
            valid: Callable[[Any], bool] | None = None, what: str | None = None) -> Any:
    """The starting value of a widget that has no key (its default depends on other choices, e.g. a
    recipe's): a link's value once one was opened in this session, else ``default``. The value stays
    the same on later reruns, so the widget keeps its identity and the viewer's own changes.
    An unfitting value is reported as by :func:`seed`.
    """
    key = f"_url_initial_{name}"
    seed(name, key, parse, valid, what)
    return st.session_state.get(key, default)


def write(name: str, value: Any, fmt: Callable[[Any], str] = str) -> None:
    """Put the widget's current value into the address (None or an empty list removes the parameter)."""
    text = None if value is None or (isinstance(value, (list, tuple)) and not value) else fmt(value)
    if text is None:
        if name in st.query_params:
            del st.query_params[name]
        _written().pop(name, None)
        return
    if st.query_params.get(name) != text:
        st.query_params[name] = text
    _written()[name] = text


def problems() -> list[str]:
    """The messages of address values that did not fit, since the last call (then cleared)."""
    return st.session_state.pop(_PROBLEMS, [])


def show_problems(where=None) -> None:
    """Draw :func:`problems` as warnings, in ``where`` (the container :func:`page` returned) or here."""
    for p in problems():
        (where or st).warning(p, icon=":material/link_off:")


def join(items: Iterable[str]) -> str:
    """Several values in one parameter: comma-separated (run ids never hold a comma)."""
    return ",".join(items)


def split(text: str) -> list[str]:
    """The inverse of :func:`join`; empty items dropped."""
    return [x for x in (s.strip() for s in text.split(",")) if x]


def share_params() -> dict[str, str]:
    """The address's parameters without the private ones (session, operator)."""
    return {k: st.query_params.get(k) for k in st.query_params.keys() if k not in PRIVATE}


def share_url(page_path: str = "") -> str:
    """A link to the current view for another machine or person: the address without ``session`` and
    ``operator``. ``page_path`` is the page's URL path (``st.context.url`` when available)."""
    base = page_path
    try:
        base = base or (st.context.url or "").split("?", 1)[0]
    except Exception:  # noqa: BLE001 - older Streamlit or no browser context (AppTest): a relative link
        base = base or ""
    q = urlencode(share_params())
    return f"{base}?{q}" if q else base


def preset_link(where, preset: dict[str, Any]) -> None:
    """Draw one preset (:func:`kasp.ui.presets.view_presets`) as a link to its page with its parameters.

    Within the app's navigation this is ``st.page_link`` (the session, and so run ownership, is kept);
    a page run on its own (``streamlit run pages/overview.py``, AppTest) has no pages to link to, so
    the preset becomes a plain link with the same parameters.
    """
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        where.page_link(preset["page"], label=preset["label"], icon=preset["icon"], query_params=preset["params"],
                        help=preset["help"], disabled=bool(preset.get("disabled")), width="stretch")
    except StreamlitPageNotFoundError:  # no st.navigation around this page
        where.markdown(f"[{preset['label']}](?{urlencode(preset['params'])})", help=preset["help"])


def share_box() -> None:
    """A small "Link to this view" popover with the shareable address (private parameters left out)."""
    with st.popover("Link to this view", icon=":material/link:"):
        st.code(share_url(), language=None, wrap_lines=True)
        st.caption("Opens this view (task, model, selection) on any machine with the same shipped results and runs. "
                   "Your session's run ownership is not in the link.")
