"""Every environment variable KASP reads, read in this one module.

:func:`get` returns the settings as a frozen :class:`Settings`, read from ``os.environ`` at the
call (never frozen at import: a test, the CLI's ``--runs-dir`` or the app's ``HF_HUB_OFFLINE``
default may change the environment after KASP is imported; the value is cached while the
environment's values of these variables stay the same).

=======================  ====  =============================  ==================================================
variable                 type  default                        meaning
=======================  ====  =============================  ==================================================
``KASP_RUNS_DIR``        path  ``runs`` (of the working dir)  the run store (:func:`kasp.ground.runs.runs_dir`)
``KASP_DATA_DIR``        path  the shipped GLUE copy          a GLUE folder (``<TASK>/train.tsv``, ``dev.tsv``)
                                                              read instead of the shipped one
``KASP_CACHE_DIR``       path  ``~/.cache/kasp``              the teacher-output cache (``teacher/``) and the
                                                              augmentation cache (``augment/``)
``KASP_UPLOADS_DIR``     path  ``<tmp>/kasp-uploads``         the app's cache of uploaded checkpoints
``KASP_MAX_JOBS``        int   1                              how many runs the queue runs at once (0: none)
``KASP_MAX_QUEUED``      int   2                              how many more may wait in the queue
``KASP_OPERATOR``        flag  off (on when ``1``)            every app session may cancel and delete every run
                                                              (the lecturer's setting)
``KASP_OPERATOR_KEY``    text  unset                          the secret an ``?operator=`` address must give (at
                                                              least 16 characters) to be operator
``KASP_FUSED_ADAMW``     flag  on (anything but ``1``: off)   fused AdamW where torch offers it
``HF_HUB_OFFLINE``       flag  off (on when ``1``)            no Hugging Face Hub downloads (the app sets it to
                                                              1 unless given)
``HF_DATASETS_OFFLINE``  flag  off (on when ``1``)            no Hub downloads of GLUE data either
``RANK``                 int   0                              this process's rank under ``torchrun`` /
                                                              ``accelerate launch`` (0: the main one)
``ACCELERATE_USE_CPU``   flag  off (on: 1, true, yes)         train data-parallel on CPU processes
=======================  ====  =============================  ==================================================

Variables KASP only *passes on* (``TOKENIZERS_PARALLELISM``, ``PYTHONUNBUFFERED`` for its child
processes) are set where the child is started, not read here.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kasp.ground.errors import KaspError

#: the variables :class:`Settings` is read from (the cache key of :func:`get`)
NAMES = ("KASP_RUNS_DIR", "KASP_DATA_DIR", "KASP_CACHE_DIR", "KASP_UPLOADS_DIR", "KASP_MAX_JOBS", "KASP_MAX_QUEUED",
         "KASP_OPERATOR", "KASP_OPERATOR_KEY", "KASP_FUSED_ADAMW", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "RANK",
         "ACCELERATE_USE_CPU")


@dataclass(frozen=True)
class Settings:
    """KASP's settings from the environment (see the module's table for each variable).

    Paths are as given (relative ones relative to the working directory); ``data_dir`` is None when
    ``KASP_DATA_DIR`` is unset or empty, ``operator_key`` None when ``KASP_OPERATOR_KEY`` is unset (an
    empty key is kept: it is a key too short to use).
    """

    runs_dir: Path
    data_dir: Path | None
    cache_dir: Path
    uploads_dir: Path
    max_jobs: int
    max_queued: int
    operator: bool
    operator_key: str | None
    fused_adamw: bool
    hub_offline: bool
    datasets_offline: bool
    rank: int
    accelerate_use_cpu: bool

    @property
    def main_process(self) -> bool:
        """Whether this is the main process (``RANK`` 0) of a multi-process run, or the only one."""
        return self.rank == 0


def _int(name: str, raw: str | None, default: int) -> int:
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise KaspError(f"{name} must be a whole number, got {raw[:40]!r}") from None


@functools.lru_cache(maxsize=8)
def _read(values: tuple[str | None, ...], home: str | None) -> Settings:
    """The settings of these values of :data:`NAMES`; ``home`` ($HOME, which ``Path.home()`` reads for the
    default cache folder) is only part of the cache key."""
    env = dict(zip(NAMES, values))
    return Settings(
        runs_dir=Path(env["KASP_RUNS_DIR"] if env["KASP_RUNS_DIR"] is not None else "runs"),
        data_dir=Path(env["KASP_DATA_DIR"]) if env["KASP_DATA_DIR"] else None,
        cache_dir=Path(env["KASP_CACHE_DIR"]) if env["KASP_CACHE_DIR"] else Path.home() / ".cache" / "kasp",
        uploads_dir=Path(env["KASP_UPLOADS_DIR"] if env["KASP_UPLOADS_DIR"] is not None
                         else Path(tempfile.gettempdir()) / "kasp-uploads"),
        max_jobs=_int("KASP_MAX_JOBS", env["KASP_MAX_JOBS"], 1),
        max_queued=_int("KASP_MAX_QUEUED", env["KASP_MAX_QUEUED"], 2),
        operator=env["KASP_OPERATOR"] == "1",
        operator_key=env["KASP_OPERATOR_KEY"],
        fused_adamw=env["KASP_FUSED_ADAMW"] in (None, "1"),
        hub_offline=env["HF_HUB_OFFLINE"] == "1",
        datasets_offline=env["HF_DATASETS_OFFLINE"] == "1",
        rank=_int("RANK", env["RANK"], 0),
        accelerate_use_cpu=(env["ACCELERATE_USE_CPU"] or "").lower() in ("1", "true", "yes"),
    )


def get() -> Settings:
    """The settings as the environment holds them now.

    Raises:
        KaspError: when ``KASP_MAX_JOBS``, ``KASP_MAX_QUEUED`` or ``RANK`` is set but not a whole number.
    """
    return _read(tuple(os.environ.get(n) for n in NAMES), os.environ.get("HOME"))
