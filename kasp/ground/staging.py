"""Directories that appear whole or not at all: the one way KASP writes an export, an unpacked model or a
shipped run into place.

:func:`staged_dir` hands out a hidden sibling directory of the destination (``tempfile.mkdtemp`` in the same
parent, so the final rename stays on one file system), and renames it to the destination only when the
``with`` block ends without an error. On any error, a cancelled run (``KeyboardInterrupt``) included, the
staging directory is removed and the destination is left as it was: a reader never sees half a model.
Used by ``kasp export`` (sparse, compact, ONNX), ``kasp unpack`` and the unpacking of the shipped models.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kasp.ground.errors import KaspError


@contextlib.contextmanager
def staged_dir(dest: str | Path, suffix: str = ".kasp-staging", replace: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside ``dest``; on success rename it to ``dest`` (mode 0755).

    Args:
        dest: the directory to create; its parent is created if missing. Unless ``replace``, it must not
            exist or be an empty directory (``os.replace`` replaces only an empty one).
        suffix: ends the staging directory's hidden name (``.<dest name>.<random><suffix>``), so that a
            leftover of a killed process says what made it.
        replace: remove an existing ``dest`` just before the rename (the shipped models' unpacked copies).

    Raises:
        KaspError: the parent is a file, or a file system error (disk full, permissions, ``dest`` not
            empty) while staging or renaming; the message names ``dest`` and the cause. Any other error
            raised inside the block propagates unchanged; in every case the staging directory is removed.
    """
    dest = Path(dest)
    parent = dest.parent if str(dest.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise KaspError(f"{parent} is a file, not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.", suffix=suffix))
    except OSError as e:
        raise KaspError(f"cannot write {dest}: {e.strerror or e}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if replace:
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)  # atomic; replaces only an empty directory
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise KaspError(f"cannot write {dest}: {e.strerror or e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_new_dir(out: str | Path) -> Path:
    """Check that ``out`` can be created as a new directory (absent, or an empty directory); return it.

    Raises:
        KaspError: ``out`` is a file, or a directory that is not empty (the message says what to give instead).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise KaspError(f"{out} is a file; give the name of a new directory for the export")
    if out.is_dir() and any(out.iterdir()):
        raise KaspError(f"{out} exists and is not empty; choose a new directory")
    return out
