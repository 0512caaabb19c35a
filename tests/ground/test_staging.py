"""kasp.ground.staging: a staged directory appears whole at its destination, or not at all."""

from __future__ import annotations

import pytest

from kasp.ground.errors import KaspError
from kasp.ground.staging import require_new_dir, staged_dir


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_finished_block_renames_the_staging_directory_to_the_destination(tmp_path):
    dest = tmp_path / "sub" / "model"
    with staged_dir(dest, suffix=".test") as tmp:
        assert tmp.parent == dest.parent and tmp.name.endswith(".test") and not dest.exists()
        (tmp / "w.txt").write_text("x")
    assert (dest / "w.txt").read_text() == "x"
    assert dest.stat().st_mode & 0o777 == 0o755
    assert _leftovers(dest.parent) == []


@pytest.mark.parametrize("exc", [ValueError("broken"), KeyboardInterrupt()])
def test_an_error_or_a_cancel_inside_the_block_leaves_nothing(tmp_path, exc):
    dest = tmp_path / "model"
    with pytest.raises(type(exc)):
        with staged_dir(dest) as tmp:
            (tmp / "half.bin").write_bytes(b"\0" * 10)
            raise exc
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_a_file_system_error_names_the_destination_and_keeps_what_was_there(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(KaspError, match=f"cannot write {dest}"):
        with staged_dir(dest) as tmp:  # os.replace refuses a non-empty directory
            (tmp / "new.txt").write_text("new")
    assert (dest / "keep.txt").read_text() == "mine" and not (dest / "new.txt").exists()
    assert _leftovers(tmp_path) == []


def test_replace_swaps_an_existing_destination(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with staged_dir(dest, replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in dest.iterdir()) == ["new.txt"]


def test_a_parent_that_is_a_file_is_refused_before_anything_is_made(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(KaspError, match="is a file, not a directory"):
        with staged_dir(tmp_path / "f" / "model"):
            pass


def test_require_new_dir_accepts_absent_and_empty_and_refuses_the_rest(tmp_path):
    assert require_new_dir(tmp_path / "absent") == tmp_path / "absent"
    (tmp_path / "empty").mkdir()
    assert require_new_dir(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(KaspError, match="not empty; choose a new directory"):
        require_new_dir(tmp_path / "full")
    (tmp_path / "file").write_text("")
    with pytest.raises(KaspError, match="is a file; give the name of a new directory"):
        require_new_dir(tmp_path / "file")
