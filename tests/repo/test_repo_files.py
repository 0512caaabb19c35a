"""The repository itself: every tracked file stays under the host's 20 MB limit (large weights ship in parts,
kasp/models/export.py, "Parts")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 20_000_000


def test_no_tracked_file_reaches_20_mb():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    sizes = {n.decode(): (ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file()}
    assert len(sizes) > 100  # the listing worked
    big = {n: s for n, s in sizes.items() if s >= LIMIT}
    assert not big, f"tracked files of 20 MB or more: {big}; write weights in parts (kasp export --max-file-mb)"
