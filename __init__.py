"""Installed as the package ``kasp.app``: the wheel carries ``app.py`` (and ``pages/`` as ``kasp.app.pages``).

This file exists only so that ``pyproject.toml`` can map the repository root to ``kasp.app`` and
``importlib.resources`` can find ``app.py`` in an editable install; nothing imports it. Only the
root's ``*.py`` files (``app.py``) and ``.streamlit/config.toml`` go into that package.
See kasp/ground/resources.py and docs/architecture.md.
"""
