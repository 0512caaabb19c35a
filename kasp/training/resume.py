"""Resume state of a run: what `kasp prune/finetune --resume RUN` needs to continue an interrupted run.

At every evaluation point (``--eval-every``) the training loop writes, into the run directory::

    resume.json                 pointer to the newest complete state (written last, atomically)
    resume-<step>/tensors.safetensors
        model.<name>            the student's state dict (masks applied)
        mask.<name>             the pruner's bool masks (True = kept)
        optim.<i>.<key>         the optimizer's per-parameter state (AdamW: step, exp_avg, exp_avg_sq)
        rng.torch, rng.cuda.<i> torch's generator states (uint8)
    resume-<step>/state.json    loop position (step, epoch, batch within the epoch, examples seen,
                                training seconds), optimizer param groups, LR-scheduler state,
                                pruner schedule position, Python and NumPy RNG states, the open
                                log window, and the recipe it belongs to

Tensors go through safetensors and everything else through JSON: nothing is pickled (``torch.save``
of an optimizer state would be). The state directory is complete before ``resume.json`` names it,
so a run killed while saving resumes from the previous point. A finished run deletes its resume state.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from kasp.ground.errors import KaspError
from kasp.ground.runs import RunDir, atomic_write_json, atomic_write_text, read_json

POINTER = "resume.json"


@dataclass
class LoopState:
    """Where the training loop stands; what resume restores besides the tensors.

    ``batch_in_epoch`` is the number of batches of ``epoch`` already trained on; ``window`` holds
    the sums of the loss terms since the last progress record and ``window_n`` their count.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    seen: int = 0
    train_seconds: float = 0.0
    window: dict[str, float] = field(default_factory=dict)
    window_n: int = 0


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return tensors, {"python": [py[0], list(py[1]), py[2]],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]}


def _set_rng_state(tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k[9:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    v, st, g = js["python"]
    random.setstate((v, tuple(st), g))
    kind, keys, pos, has_gauss, gauss = js["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors, other = {}, {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{i}.{k}"] = v.detach().contiguous()
            else:
                other.setdefault(str(i), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "non_tensor_state": other}


def _load_optimizer_state(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], js: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    for i, extra in js["non_tensor_state"].items():
        state.setdefault(int(i), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in js["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save(run_path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
         pruner: Any, loop: LoopState, recipe: dict[str, Any]) -> Path:
    """Write the resume state of ``loop.step`` into ``run_path`` and point ``resume.json`` at it.

    Older states are deleted once the new one is in place.

    Returns:
        the new state directory.
    """
    from safetensors.torch import save_file

    run_path = Path(run_path)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    ps = pruner.state_dict()
    tensors.update({f"mask.{k}": v.contiguous() for k, v in ps.pop("masks").items()})
    opt_t, opt_js = _optimizer_state(optimizer)
    tensors.update(opt_t)
    rng_t, rng_js = _rng_state()
    tensors.update(rng_t)
    tensors = {k: v.cpu() for k, v in tensors.items()}
    sched = scheduler.state_dict()  # LambdaLR: step counts and base rates; its lambdas are code, saved as None/{}
    js = {"loop": asdict(loop), "optimizer": opt_js, "scheduler": sched, "pruner": ps, "rng": rng_js,
          "recipe": recipe}
    final = run_path / f"resume-{loop.step}"
    tmp = Path(tempfile.mkdtemp(dir=run_path, prefix=f".resume-{loop.step}-"))
    try:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        atomic_write_text(tmp / "state.json", json.dumps(js, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(run_path / POINTER, {"dir": final.name, "step": loop.step})
    for old in run_path.glob("resume-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_path: str | Path) -> Path | None:
    """The state directory ``resume.json`` names, or None when the run has none."""
    ptr = read_json(Path(run_path) / POINTER)
    if not ptr:
        return None
    d = Path(run_path) / ptr["dir"]
    return d if (d / "state.json").is_file() and (d / "tensors.safetensors").is_file() else None


def load(state_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
         pruner: Any) -> tuple[LoopState, Callable[[], None]]:
    """Restore model weights, masks, optimizer and scheduler states from ``state_dir``.

    Call after the optimizer, scheduler and pruner exist and before the first step.

    Returns:
        the loop position to continue from, and a function that restores the RNG states. Call it
        once the first batch has been drawn: starting to iterate a DataLoader draws a seed from
        torch's generator, which the saved state (taken mid-epoch) had already done.
    Raises:
        KaspError: if the state is damaged (unreadable JSON or safetensors) or does not fit the model
            (a different recipe or architecture).
    """
    from safetensors.torch import load_file

    from safetensors import SafetensorError

    state_dir = Path(state_dir)
    try:
        js = json.loads((state_dir / "state.json").read_text(encoding="utf-8"))
        tensors = load_file(str(state_dir / "tensors.safetensors"))
    except (OSError, ValueError, SafetensorError) as e:  # JSONDecodeError is a ValueError
        raise KaspError(f"{state_dir}: the resume state is damaged ({str(e)[:200]}); start the run again without "
                        "--resume") from None
    device = next(model.parameters()).device
    weights = {k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(weights, strict=True)
        pruner.load_state_dict({**js["pruner"], "masks": {k[5:]: v for k, v in tensors.items() if k.startswith("mask.")}})
        _load_optimizer_state(optimizer, {k: v for k, v in tensors.items() if k.startswith("optim.")}, js["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise KaspError(f"{state_dir}: the resume state does not fit this model and recipe ({str(e)[:200]})") from None
    scheduler.load_state_dict(js["scheduler"])
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return LoopState(**js["loop"]), lambda: _set_rng_state(rng, js["rng"])


def prepare_run(run_path: str | Path) -> tuple[dict[str, Any], Path]:
    """Check that ``run_path`` holds an interrupted run that can resume; return its recipe and state dir.

    Also drops the progress records written after that state (the resumed run writes them again).

    Raises:
        KaspError: not a run directory, a finished or still-running run, no evaluation point reached, or
            a final checkpoint without a report or resume state (killed at the end by an older KASP).
    """
    run = RunDir(Path(run_path))
    has_status = (run.path / "status.json").exists()
    state = run.state() if has_status else None
    # the state first: a queued run (the app's, not started yet) has no config.json, and is a KASP run
    if state == "done":
        raise KaspError(f"--resume {run.path}: the run has already finished; nothing to resume")
    if state == "queued":
        raise KaspError(f"--resume {run.path}: the run is queued and has not started, so there is nothing to resume; "
                        "`kasp worker` (or the Prune page) starts it, or cancel it on the Prune page")
    if state == "running":
        raise KaspError(f"--resume {run.path}: the run is still running (pid {run.status().get('pid')}); "
                        "cancel it first")
    if state == "damaged":
        raise KaspError(f"--resume {run.path}: {run.status().get('error')}")
    if not (run.path / "config.json").is_file():
        raise KaspError(f"--resume {run.path}: not a KASP run directory (no config.json)")
    run.remove_leftovers()  # a killed save's temporary copies, resume states resume.json does not name
    state_dir = latest(run.path)
    if state_dir is None and (run.checkpoint / "config.json").is_file():
        raise KaspError(f"--resume {run.path}: the run saved its final checkpoint but was stopped before it wrote its "
                        "report, and its resume state is gone (a KASP before issue 26 deleted it first); score the "
                        f"checkpoint with `kasp evaluate {run.path}`, or start the run again")
    if state_dir is None:
        raise KaspError(f"--resume {run.path}: no resume state; a run saves one at each evaluation point "
                        "(--eval-every N), and this one stopped before its first")
    step = read_json(run.path / POINTER)["step"]
    kept = [r for r in run.progress() if r.get("step", 0) <= step]
    atomic_write_text(run.path / "progress.jsonl", "".join(json.dumps(r, default=float) + "\n" for r in kept))
    return run.recipe(), state_dir


def complete_report(run_path: str | Path, states: tuple[str, ...] = ("failed", "cancelled")) -> dict[str, Any] | None:
    """The report of a run that finished training and saved its checkpoint and report but was killed
    before it wrote its final status (it reads as failed); None for any other run.

    Complete means: in one of ``states`` (not queued or running), a ``report.json`` with metrics that
    names a checkpoint, and a ``checkpoint/`` folder holding a ``config.json`` (it is renamed into place
    only when whole). The report is written after the checkpoint, so such a run has nothing left to train.
    """
    run = RunDir(Path(run_path))
    if run.state() not in states:
        return None
    rep = run.report()
    if not (isinstance(rep.get("metrics"), dict) and rep.get("checkpoint") and (run.checkpoint / "config.json").is_file()):
        return None
    return rep


def finish_complete(run_path: str | Path) -> dict[str, Any] | None:
    """Mark a run that :func:`complete_report` finds complete as done (its resume state deleted) and return
    its report; None, touching nothing, for any other run."""
    import time

    rep = complete_report(run_path)
    if rep is None:
        return None
    run = RunDir(Path(run_path))
    _finish_card(run, rep)
    run.set_status("done", step=rep.get("steps"), total_steps=rep.get("steps"), finished=time.time(),
                   wall_seconds=rep.get("wall_seconds"), error=None,
                   note="stopped after saving its checkpoint and report; marked done by --resume, nothing retrained")
    discard(run.path)
    return rep


def _finish_card(run: RunDir, report: dict[str, Any]) -> None:
    """Write the model card (README.md and config.json's ``kasp`` block) of a complete run killed before or
    while it wrote them (they come after the report), so that its checkpoint tells what it is like any other."""
    from kasp.training.card import CARD_FILE, read_card_facts, write_model_card

    config = read_json(run.checkpoint / "config.json", {}, kind=dict)
    if (run.checkpoint / CARD_FILE).is_file() and read_card_facts(config):
        return
    try:
        write_model_card(run.checkpoint, report, run.recipe(), run.config().get("provenance"))
    except KaspError as e:
        print(f"kasp: warning: {run.id}: its model card could not be written ({e})", file=sys.stderr)


def discard(run_path: str | Path) -> None:
    """Delete a run's resume state (after it finished and saved its checkpoint)."""
    run_path = Path(run_path)
    (run_path / POINTER).unlink(missing_ok=True)
    for d in run_path.glob("resume-*"):
        shutil.rmtree(d, ignore_errors=True)
    for d in run_path.glob(".resume-*"):
        shutil.rmtree(d, ignore_errors=True)
