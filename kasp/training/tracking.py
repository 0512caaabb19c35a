"""Experiment trackers (TensorBoard, Weights & Biases, MLflow, ...) through Accelerate's ``log_with``.

``kasp finetune|prune --report-to tensorboard`` (the name the Hugging Face ``Trainer`` uses) sends
the same records the run store's ``progress.jsonl`` gets to the chosen trackers, in addition to the
store: every ``log_every`` steps the training loss terms, sparsity and learning rate
(``train/<name>``), and at each dev evaluation the GLUE metrics (``eval/<name>``), at the optimizer
step they belong to. TensorBoard event files go to ``<run dir>/tensorboard/``
(``tensorboard --logdir runs``). The recipe is stored as the trackers' hyper-parameters.

The tracker is a training-loop callback (:func:`kasp.training.train.train` ``callbacks``): it creates its
own ``accelerate.Accelerator(log_with=..., project_dir=...)`` at the first record, when the loop's
Accelerator already holds the process state, and only on the main process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from kasp.ground import settings
from kasp.ground.errors import KaspError

#: the project (sub-folder) name given to the trackers; TensorBoard writes <run dir>/tensorboard/
PROJECT = "tensorboard"


def tracker_names() -> list[str]:
    """Tracker names Accelerate knows (``--report-to`` choices besides "none" and "all")."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def resolve_report_to(names: Sequence[str] | None) -> list[str]:
    """The trackers to use for ``--report-to`` values (comma or space separated; "all", "none").

    "all" means every tracker that is installed (as in the Hugging Face ``Trainer``).

    Raises:
        KaspError: for an unknown name, or a tracker whose package is not installed.
    """
    from accelerate.tracking import get_available_trackers

    available = sorted(getattr(t, "value", str(t)) for t in get_available_trackers())
    wanted = [n.strip().lower() for item in (names or []) for n in item.split(",") if n.strip()]
    if not wanted or wanted == ["none"]:
        return []
    known = tracker_names()
    if wanted == ["all"]:
        return available
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise KaspError(f"--report-to: unknown tracker(s) {unknown}; choose from {', '.join(known)}, all or none")
    missing = [n for n in wanted if n not in available]
    if missing:
        pkgs = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet-ml"}
        extra = " (the extra kasp[track])" if "tensorboard" in missing else ""
        raise KaspError(f"--report-to {', '.join(missing)}: not installed; pip install "
                        f"{' '.join(pkgs.get(n, n) for n in missing)}{extra} (or leave the flag out: the run store always logs)")
    return wanted


def _flat(prefix: str, record: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in record.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, dict):
            out.update(_flat(f"{prefix}{k}/", v))
        elif isinstance(v, (int, float)):
            out[f"{prefix}{k}"] = float(v)
    return out


class TrackerCallback:
    """Training-loop callback that logs ``train`` and ``eval`` records to Accelerate trackers.

    Args:
        report_to: tracker names from :func:`resolve_report_to` (e.g. ``["tensorboard"]``).
        run_dir: the run directory; trackers that write files write under it.
        config: the recipe (:meth:`kasp.spec.config.RunConfig.to_dict`), logged as hyper-parameters
            (values that are not numbers, strings or booleans are written as strings).

    Call :meth:`close` when the run ends (also after a failure) to flush the trackers.
    """

    def __init__(self, report_to: Sequence[str], run_dir: str | Path, config: dict[str, Any]):
        self.report_to = list(report_to)
        self.run_dir = Path(run_dir)
        self.config = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.items()}
        self._accelerator = None

    def _start(self):
        from accelerate import Accelerator

        acc = Accelerator(log_with=self.report_to, project_dir=str(self.run_dir))
        acc.init_trackers(PROJECT, config=self.config)
        return acc

    def __call__(self, event: str, record: dict[str, Any]) -> None:
        if event not in ("train", "eval") or not settings.get().main_process:
            return
        if self._accelerator is None:
            self._accelerator = self._start()
        values = _flat(f"{event}/", {k: v for k, v in record.items() if k not in ("step", "total_steps")})
        self._accelerator.log(values, step=int(record["step"]))

    def close(self) -> None:
        """Flush and close the trackers (no-op if nothing was logged)."""
        if self._accelerator is not None:
            self._accelerator.end_training()
            self._accelerator = None
