"""Generated blocks of the docs: the Markdown between a start and an end marker of a page, which a maintainer script
(scripts/teachers.py, scripts/study_table.py, scripts/sweep_table.py) writes from the data files, and a test checks."""

from __future__ import annotations

from pathlib import Path


def replace_block(doc: Path, start: str, end: str, block: str) -> None:
    """Replace the text of ``doc`` from the ``start`` marker to the ``end`` marker (both included) with ``block``,
    which holds both markers again.

    Raises:
        SystemExit: ``doc`` lacks either marker, or has them in the wrong order (the page then stays as it was).
    """
    text = doc.read_text(encoding="utf-8")
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        raise SystemExit(f"{doc} has no {start} ... {end} markers: add both where the table belongs")
    doc.write_text(text[:a] + block + text[b + len(end):], encoding="utf-8")


def read_block(doc: Path, start: str, end: str) -> str | None:
    """The text of ``doc`` from ``start`` to ``end`` (both included), or None when either marker is missing."""
    text = doc.read_text(encoding="utf-8")
    a, b = text.find(start), text.find(end)
    return text[a:b + len(end)] if 0 <= a < b else None
