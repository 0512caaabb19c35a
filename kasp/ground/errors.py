"""The one exception type KASP raises for problems a user can fix.

Every message names the problem and the fix. The CLI prints it without a traceback and exits 2.
"""


class KaspError(Exception):
    """A user-facing error: bad input, missing file, unsupported model, unavailable data."""


def os_error_message(e: OSError) -> str:
    """One line for an OSError from writing or reading the run store or an output folder (the CLI and
    the app): the fix for what the file system said (disk full, quota, read-only, name too long,
    permission), and the path cut to 200 characters."""
    import errno

    name = str(e.filename) if e.filename else ""
    where = f" ({name[:200]}{'…' if len(name) > 200 else ''})" if name else ""
    fixes = {errno.ENOSPC: "the disk is full: free some space (or choose another --runs-dir / output folder) and "
                           "run it again; nothing half-written was kept",
             errno.EDQUOT: "the disk quota is used up: free some space and run it again",
             errno.EROFS: "the file system is read-only: choose a writable --runs-dir / output folder",
             errno.ENAMETOOLONG: "a file name is longer than the file system allows (255 bytes a name): use a "
                                 "shorter path",
             errno.EACCES: "permission denied: choose a folder you can write to",
             errno.EPERM: "operation not permitted: choose a folder you can write to"}
    return f"{fixes.get(e.errno, e.strerror or type(e).__name__)}{where}"


def require_extra(module: str, extra: str, what: str):
    """Import the optional dependency ``module`` that the extra ``kasp[extra]`` installs.

    ``pip install kasp`` is the engine alone; the app, the trackers, the ONNX export and the default
    model come with extras (pyproject.toml). ``what`` names the feature that needs it.

    Returns:
        the imported module.

    Raises:
        KaspError: when it is not installed: one line naming the extra to install (and the exact
            pins of requirements.txt in a checkout).
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        missing = getattr(e, "name", None) or module
        raise KaspError(f"{what} needs {missing.split('.')[0]}, which is not installed: install kasp[{extra}] "
                        f"(pip install \"kasp[{extra}]\"; in a checkout: pip install -r requirements.txt)") from None
