"""The ``kasp`` command: finetune, prune, evaluate, inspect, attention, export, runs, app, sweep.

Flags of ``finetune`` and ``prune`` are generated from :class:`kasp.spec.config.RunConfig` fields and
their help text; a flag left unset takes the recipe default of :func:`kasp.spec.config.default_recipe`.
Errors a user can fix print one line and exit with status 2; a cancelled run exits with 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, get_args, get_origin

from kasp.ground import settings
from kasp.ground.errors import KaspError
from kasp.spec.methods import method_names, shrinks_student

_NOT_FLAGS = {"kind"}


def _add_config_flags(p: argparse.ArgumentParser, kind: str) -> None:
    from kasp.spec.config import FINETUNE_ONLY_FIELDS, PRUNE_ONLY_FIELDS, RunConfig

    for f in dataclasses.fields(RunConfig):
        if f.name in _NOT_FLAGS or (kind == "finetune" and f.name in PRUNE_ONLY_FIELDS) or \
                (kind == "prune" and f.name in FINETUNE_ONLY_FIELDS):
            continue
        flag = "--" + f.name.replace("_", "-")
        kw: dict[str, Any] = {"default": None, "help": f.metadata.get("help", "")}
        typ = f.type if not isinstance(f.type, str) else eval(f.type, vars(sys.modules[RunConfig.__module__]))
        args = get_args(typ)
        if typ is bool or set(args) == {bool, type(None)}:  # --x / --no-x; not given: None, the recipe's value
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "method":
            kw["choices"] = list(method_names())
        elif get_origin(typ) is not None and all(isinstance(a, str) for a in args):  # Literal
            kw["choices"] = list(args)
        else:
            base = next((a for a in args if a is not type(None)), typ) if args else typ
            kw["type"] = base
            kw["metavar"] = f.name.upper()
        p.add_argument(flag, dest=f.name, **kw)
    p.add_argument("--recipe", default=None, help="JSON file of flag values (names as in this help, with _), or the "
                   "name of a shipped recipe, e.g. paper-mrpc (kasp/recipes/); flags given here override it")
    p.add_argument("--out", default=None, help="run directory (default: <runs-dir>/<time>-<task>-<method>)")
    p.add_argument("--runs-dir", default=None, help="the run store (default: $KASP_RUNS_DIR or ./runs)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--report-to", nargs="+", default=None, metavar="TRACKER",
                   help="also log to these experiment trackers through Accelerate (tensorboard, wandb, mlflow, ...; "
                        "all = every installed one; none = only the run store); TensorBoard writes <run dir>/tensorboard")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue an interrupted (cancelled, failed "
                   "or killed) run from its last evaluation point, with its own recipe; no other recipe flags")


def _add_sweep_flags(p: argparse.ArgumentParser) -> None:
    from kasp.experiments.results import DEFAULT_SPARSITIES, METHODS
    from kasp.spec.methods import SWEPT_METHODS
    from kasp.experiments.sweep import TASK_BUDGETS

    def _n(b, steps, epochs):  # "1400 steps" or "5 epochs"
        return f"{b[steps]} steps" if b.get(steps) else f"{b[epochs]:g} epochs"

    budgets = "; ".join(f"{t}: teacher {_n(b, 'teacher_steps', 'teacher_epochs')}, runs {_n(b, 'max_steps', 'epochs')}, "
                        f"length {b['max_seq_length']}" for t, b in TASK_BUDGETS.items())
    p.add_argument("--task", required=True, help="GLUE task with a training set: sst2, mrpc, rte, stsb, cola, wnli")
    p.add_argument("--model", default="default", help="pre-trained checkpoint (as for kasp prune)")
    p.add_argument("--sparsities", type=float, nargs="+", default=list(DEFAULT_SPARSITIES), metavar="S",
                   help="sparsities of the KASP and magnitude runs (fractions of zeros in the encoder linear weights)")
    p.add_argument("--small-dense-sparsities", type=float, nargs="+", default=None, metavar="S",
                   help="sparsities whose non-zero counts the small-dense runs match (default: --sparsities)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(SWEPT_METHODS),
                   help=f"methods to run (default: {' '.join(SWEPT_METHODS)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[42], help="seeds; the first runs everywhere")
    p.add_argument("--multi-seed-sparsities", type=float, nargs="+", default=None, metavar="S",
                   help="sparsities at which the seeds after the first run (default: all)")
    p.add_argument("--max-steps", type=int, default=None, help=f"steps per run (per-task defaults: {budgets})")
    p.add_argument("--teacher-steps", type=int, default=None, help="steps of the teacher, when one is fine-tuned")
    p.add_argument("--epochs", type=float, default=None, help="budget of every run in passes over the training set "
                   "(less a --set holdout=N slice), converted to steps before the sweep starts: the same steps on any "
                   "machine; instead of --max-steps")
    p.add_argument("--teacher-epochs", type=float, default=None, help="the teacher's budget in epochs, when one is "
                   "fine-tuned; instead of --teacher-steps")
    p.add_argument("--max-seq-length", type=int, default=None, help="length limit in tokens (per-task default)")
    p.add_argument("--max-train-samples", type=int, default=None, help="use only the first N training examples")
    p.add_argument("--max-eval-samples", type=int, default=None, help="evaluate on only the first N dev examples")
    p.add_argument("--teacher", default=None, help="teacher run or checkpoint directory (default: a finished finetune "
                   "run in the store with the sweep's teacher budget, else one is fine-tuned)")
    p.add_argument("--runs-dir", default=None, help="the run store (default: $KASP_RUNS_DIR or ./runs); sweep runs go "
                   "to <runs-dir>/sweeps/<task>/")
    p.add_argument("--results", default=None, help="results file (default: <runs-dir>/sweeps/<task>.json); an "
                   "existing one is resumed")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoint (default: deleted "
                   "once the run is recorded)")
    p.add_argument("--retention-samples", type=int, default=256, help="dev examples for the retention summary "
                   "(0: none)")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads (of each run, with --jobs)")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="runs trained at once, each in its own process "
                   "with --num-threads threads (default: the CPUs divided by N); on 2 cores two 1-thread runs do about "
                   "1.3x the steps of one 2-thread run (bench/teacher_cache.md). Default 1")
    p.add_argument("--augment", type=int, default=0, metavar="N", help="N augmented copies per training example in "
                   "every run (as kasp prune --augment; with --augment-source glue only distilling methods, not magnitude); its runs "
                   "and default results file are named <task>-augment-<source><N>")
    p.add_argument("--augment-source", choices=["words", "glue"], default="words", help="as kasp prune --augment-source")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one recipe field in every run (repeatable), e.g. --set temperature=2 --set lr=2e-4; "
                        "its runs and default results file are named after the change")
    p.add_argument("--stop-after", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of wall time, as Ctrl-C would: finished runs stay recorded, the "
                        "run in progress resumes from its last evaluation point when the same command runs again")
    p.add_argument("--dry-run", action="store_true", help="print the plan and what is already done, run nothing")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kasp", description="Knowledge-aware sparse pruning (SparseBERT, Xu et al. NAACL 2021) "
                                 "of BERT-family models on GLUE.")
    sub = ap.add_subparsers(dest="command", required=True)
    ft = sub.add_parser("finetune", help="fine-tune the dense teacher; writes a run directory")
    _add_config_flags(ft, "finetune")
    pr = sub.add_parser("prune", help="prune a student to a target sparsity (KASP or the magnitude baseline)")
    _add_config_flags(pr, "prune")
    ev = sub.add_parser("evaluate", help="GLUE metric of a checkpoint on a dev set or your own labelled TSV")
    ev.add_argument("checkpoint", help="checkpoint directory or KASP run directory")
    ev.add_argument("--task", default=None, help="GLUE task (default: the task the checkpoint was trained on)")
    ev.add_argument("--data", default=None, help="labelled TSV in the task's GLUE column layout (default: the dev set); "
                    "tab-separated with CSV quoting (a field starting with \" may hold tabs and line breaks), "
                    "or unquoted like GLUE's own files; every row needs the header's number of fields")
    ev.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens (and never "
                    "beyond the model's position table)")
    ev.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    ev.add_argument("--max-eval-samples", type=int, default=None, help="only the first N examples")
    ev.add_argument("--json", action="store_true", help="print JSON")
    ins = sub.add_parser("inspect", help="per-matrix sparsity and parameter counts of a checkpoint")
    ins.add_argument("checkpoint", help="checkpoint directory or KASP run directory")
    ins.add_argument("--json", action="store_true", help="print JSON")
    ins.add_argument("--no-sizes", action="store_true", help="skip the size comparison (zstd of the whole file)")
    att = sub.add_parser("attention", help="attention-knowledge retention of a student against its teacher")
    att.add_argument("teacher", help="teacher checkpoint or run directory")
    att.add_argument("student", help="student checkpoint or run directory")
    att.add_argument("--task", default="sst2", help="GLUE task whose dev examples are used")
    att.add_argument("--samples", type=int, default=256, help="number of dev examples")
    att.add_argument("--max-seq-length", type=int, default=128, help="truncate inputs to this many tokens")
    att.add_argument("--json", action="store_true", help="print JSON")
    exp = sub.add_parser("export", help="write a checkpoint in KASP's sparse format (bitmask + values, safetensors) "
                         "or as a dense ONNX model checked against PyTorch")
    exp.add_argument("checkpoint", help="checkpoint directory or KASP run directory")
    exp.add_argument("out", help="new output directory (must not exist, or be empty; written under a temporary name "
                     "beside it and renamed when complete)")
    exp.add_argument("--format", choices=["sparse", "compact", "onnx"], default="sparse", help="sparse: bitmask + values "
                     "(kasp/models/export.py, docs/formats.md), bit for bit; compact: the same in float16, with the "
                     "tensors equal to the default pre-trained model's left out (taken from the installed package on "
                     "loading) and masks only where they pay, as the models shipped with KASP; onnx: a dense model.onnx for ONNX Runtime (dynamic batch and "
                     "sequence axes), refused unless its logits match PyTorch's within 1e-4 on dev examples "
                     "(kasp/models/onnx_export.py)")
    exp.add_argument("--task", default=None, help="onnx: GLUE task whose dev examples check the export (default: the "
                     "task the checkpoint records)")
    exp.add_argument("--samples", type=int, default=64, help="onnx: dev examples compared with PyTorch")
    exp.add_argument("--max-file-mb", type=float, default=None, help="sparse and compact: write the weights in "
                     "parts of at most this many MB (1 MB = 10^6 bytes) each, sparse.safetensors, sparse-2.safetensors, "
                     "... (for hosts that limit file sizes); default: one file")
    sub.add_parser("app", help="start the Streamlit app shipped with the package (any further options, such as "
                   "--server.port 8502, go to `streamlit run`)")
    sw = sub.add_parser("sweep", help="accuracy against sparsity for one task: KASP, magnitude and small-dense at "
                        "several sparsities and seeds, into one resumable results file")
    _add_sweep_flags(sw)
    wk = sub.add_parser("worker", help="start queued runs of the store as slots free up, until the queue is empty "
                        "(runs started by the app also start the next one themselves when they end)")
    wk.add_argument("--runs-dir", default=None, help="the run store (default: $KASP_RUNS_DIR or ./runs)")
    wk.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the queue")
    ls = sub.add_parser("runs", help="list the runs in the store")
    ls.add_argument("--runs-dir", default=None, help="the run store (default: $KASP_RUNS_DIR or ./runs)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    return ap


class _StopFlag:
    """SIGINT/SIGTERM set a flag the training loop polls; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handler)
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, signum, frame) -> None:
        if self.stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stop = True
        print(f"\nkasp: received {signal.Signals(signum).name}; stopping after this step (no checkpoint will be written)",
              file=sys.stderr)

    def __call__(self) -> bool:
        return self.stop


def config_from_args(args: argparse.Namespace):
    """The :class:`kasp.spec.config.RunConfig` of a parsed ``kasp finetune`` / ``kasp prune`` command line (not
    ``--resume``): the ``--recipe`` file's fields, overridden by the flags given, validated as the app's
    Launch validates (:func:`kasp.spec.config.config_from_options`).

    Raises:
        KaspError: an unknown field in the recipe file, or an invalid recipe.
    """
    from kasp.spec.config import RunConfig, config_from_options, layer_budget

    names = {f.name for f in dataclasses.fields(RunConfig)}
    overrides = _load_recipe(args.recipe, args.command) if args.recipe else {}
    unknown = set(overrides) - names
    if unknown:
        raise KaspError(f"recipe {args.recipe}: unknown field(s) {sorted(unknown)}; see `kasp {args.command} --help`")
    flags = {k: v for k, v in vars(args).items() if k in names and v is not None}
    # a budget given on the command line replaces the recipe file's (the one rule: layer_budget)
    return config_from_options(args.command, layer_budget(overrides, flags))  # the same validation as the app's Launch


def _cmd_train(args: argparse.Namespace) -> int:
    from kasp.spec.config import RunConfig
    from kasp.ground.runs import RunDir, new_run_id, runs_dir
    from kasp.training.train import Cancelled, train

    names = {f.name for f in dataclasses.fields(RunConfig)}
    if args.resume:
        return _resume(args, names)
    cfg = config_from_args(args)
    from kasp.training.tracking import resolve_report_to

    report_to = resolve_report_to(args.report_to)  # checked before the run directory exists
    store = Path(args.runs_dir) if args.runs_dir else runs_dir()
    out = Path(args.out) if args.out else store / new_run_id(cfg.task, cfg.method, cfg.sparsity)
    if args.runs_dir:
        os.environ["KASP_RUNS_DIR"] = str(store)
    # under `accelerate launch` / torchrun only the main process (RANK 0) owns the run directory
    run = RunDir.create(out, recipe=cfg.to_dict()) if settings.get().main_process else None
    stop = _StopFlag()
    stop.install()
    callbacks = []
    if run and report_to:
        from kasp.training.tracking import TrackerCallback

        callbacks.append(TrackerCallback(report_to, out, cfg.to_dict()))
    print(f"kasp: run directory {out}", file=sys.stderr)
    try:
        result = train(cfg, run, callbacks=callbacks, should_stop=stop, store=store, progress_bar=not args.no_progress)
    except Cancelled as e:
        print(f"kasp: {e}; status 'cancelled' written to {out}/status.json", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"kasp: interrupted; status 'cancelled' written to {out}/status.json", file=sys.stderr)
        return 130
    finally:
        for cb in callbacks:
            cb.close()
    r = result.report
    print(_summary_line(r, out))
    return 0


def _resume(args: argparse.Namespace, names: set[str]) -> int:
    """``kasp prune/finetune --resume RUN_DIR``: continue the run in RUN_DIR from its resume state."""
    from kasp.training import resume
    from kasp.spec.config import RunConfig
    from kasp.ground.runs import RunDir
    from kasp.training.train import Cancelled, train

    given = sorted(k for k, v in vars(args).items() if k in names and v is not None)
    if given or args.recipe or args.out:
        flags = ", ".join("--" + k.replace("_", "-") for k in given + (["recipe"] if args.recipe else [])
                          + (["out"] if args.out else []))
        raise KaspError(f"--resume continues a run with the recipe in its config.json; drop {flags}")
    from kasp.training.tracking import resolve_report_to

    report_to = resolve_report_to(args.report_to)
    main_rank = settings.get().main_process
    # (the other processes also accept "done": the main process may have marked it already)
    done = (resume.finish_complete(args.resume) if main_rank else
            resume.complete_report(args.resume, ("failed", "cancelled", "done")))
    if done is not None:  # killed after its checkpoint and report were saved: nothing left to train
        print(f"kasp: {args.resume} had finished training and saved its checkpoint and report when it was stopped; "
              "marked done, nothing retrained", file=sys.stderr)
        print(_summary_line(done, Path(args.resume)))
        return 0
    if main_rank:
        recipe, state_dir = resume.prepare_run(args.resume)
    else:  # the main process checks the run and trims its log
        recipe, state_dir = RunDir(Path(args.resume)).recipe(), resume.latest(args.resume)
    try:
        cfg = RunConfig.from_dict(recipe)
    except (TypeError, ValueError) as e:
        raise KaspError(f"--resume {args.resume}: the stored recipe is not valid ({e})") from None
    if cfg.kind != args.command:
        raise KaspError(f"--resume {args.resume}: that is a {cfg.kind} run; use `kasp {cfg.kind} --resume`")
    run = RunDir(Path(args.resume))
    teacher = (run.config().get("provenance") or {}).get("teacher_path")
    if teacher and not cfg.teacher:  # the teacher the run started with, not a newer one in the store
        cfg = dataclasses.replace(cfg, teacher=teacher)
    if args.runs_dir:
        os.environ["KASP_RUNS_DIR"] = str(args.runs_dir)
    stop = _StopFlag()
    stop.install()
    callbacks = []
    if main_rank and report_to:
        from kasp.training.tracking import TrackerCallback

        callbacks.append(TrackerCallback(report_to, run.path, cfg.to_dict()))
    print(f"kasp: resuming {run.path} from {state_dir.name}", file=sys.stderr)
    try:
        result = train(cfg, run if main_rank else None, callbacks=callbacks, should_stop=stop, store=args.runs_dir,
                       progress_bar=not args.no_progress, resume_from=state_dir)
    except (Cancelled, KeyboardInterrupt) as e:
        print(f"kasp: {e or 'interrupted'}; status 'cancelled' written to {run.path}/status.json", file=sys.stderr)
        return 130
    finally:
        for cb in callbacks:  # the trackers' end_training, as in _cmd_train
            cb.close()
    print(_summary_line(result.report, run.path))
    return 0


def _load_recipe(name: str, command: str | None = None) -> dict[str, Any]:
    """A recipe file's fields: :func:`kasp.spec.config.load_recipe`."""
    from kasp.spec.config import load_recipe

    return load_recipe(name, command)


def _task_name(name: str) -> str:
    from kasp.data.glue import get_task

    return get_task(name).name


def _summary_line(r: dict[str, Any], out: Path) -> str:
    from kasp.spec.metrics import format_metrics

    from kasp.data.glue import input_length_text

    m = r["metrics"]
    metric = format_metrics(m)
    length = f", {input_length_text(r['input_length'])}" if isinstance(r.get("input_length"), dict) else ""
    return (f"{r['task']} {r['method']}: {metric} on {m['n']} dev examples{length}; encoder-linear sparsity "
            f"{r['sparsity']['pruned_sparsity'] * 100:.2f} % (all parameters {r['sparsity']['overall_sparsity'] * 100:.2f} %); "
            f"{r['steps']} steps in {r['wall_seconds'] / 60:.1f} min; checkpoint {out / 'checkpoint'}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from kasp.training.evaluate import evaluate_checkpoint, evaluation_notes

    res = evaluate_checkpoint(args.checkpoint, args.task, args.data, args.max_eval_samples, args.max_seq_length,
                              args.batch_size)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        from kasp.spec.metrics import format_metrics

        m = res["metrics"]
        print(f"{res['task']} on {res['data']} ({m['n']} examples): {format_metrics(m)}")
        for note in evaluation_notes(res):
            print(f"  ({note})")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from kasp.analysis.inspection import analyse, inspect_warnings
    from kasp.spec.pruned_set import sparsity_grid

    info = analyse(args.checkpoint, sizes=not args.no_sizes)
    if args.json:
        out = dict(info)
        out["structured"] = {k: v for k, v in info["structured"].items() if k != "per_matrix"}
        if out["sizes"] is None:
            del out["sizes"]
        print(json.dumps(out, indent=2))
        return 0
    p = info["parameters"]
    print(f"{info['path']}  ({info['model_type']}, {info['layers']} layers, hidden {info['hidden_size']}, {info['heads']} heads)")
    print(f"parameters: {info['total_parameters']:,} = embeddings {p['embeddings']:,} + encoder linear {p['encoder_linear']:,} "
          f"+ other {p['other']:,}")
    print(f"sparsity over the encoder linear weights: {info['pruned_sparsity'] * 100:.2f} %;  over all parameters: "
          f"{info['overall_sparsity'] * 100:.2f} %")
    layers, kinds, grid = sparsity_grid(info["per_matrix"])
    print("per-matrix sparsity (% zeros):")
    print("layer " + "".join(f"{k:>9}" for k in kinds))
    for i, row in zip(layers, grid):
        print(f"{i:>5} " + "".join(f"{v * 100:9.2f}" for v in row))
    st = info["structured"]
    print(f"structured zeros: {sum(len(h) for h in st['heads'].values())} whole attention heads, "
          f"{sum(st['ffn_neurons'].values())} FFN neurons, {st['zero_rows']} rows and {st['zero_cols']} columns "
          "of the pruned matrices are entirely zero (what structured removal could drop)")
    if info.get("sizes"):
        z = info["sizes"]
        print("sizes (bytes)            whole model   encoder linear")
        for label, key in (("dense safetensors", "dense"), (f"dense + zstd -{z['zstd_level']}", "dense_zstd"),
                           ("KASP sparse export", "sparse_export"), ("information bound*", "bound")):
            print(f"  {label:<22}{z[key]:>13,.0f}  {z[key + '_encoder_linear']:>15,.0f}")
        bits = "/".join(str(b) for b in z.get("value_bits_encoder_linear") or []) or "?"
        print("  * for the pruned matrices at their sparsity: log2 C(n, nnz) bits + the bits each value needs "
              f"({bits} here: 16 when every value is an exact float16 or bfloat16, else its dtype's, 32 in float32);")
        print("    other tensors at their values' bits, every entry, which is why zstd, compressing those too, can land "
              "below it for the whole model")
        print("  dense safetensors is the file on disk; the other rows encode these weights now (nothing is written)")
        print("  (unstructured zeros alone leave the dense file as large and dense PyTorch as fast)")
    if info.get("card"):
        from kasp.training.card import card_summary

        for line in card_summary(info["card"]):
            print(line)
    if info.get("recipe"):
        r = info["recipe"]
        print(f"KASP recipe: {r.get('kind')} {r.get('task')} method={r.get('method')} sparsity={r.get('sparsity')} "
              f"lr={r.get('lr')} steps={r.get('max_steps')} seed={r.get('seed')}")
    for line in inspect_warnings(info):
        print(f"warning: {line}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from kasp.models.export import export_sparse, weight_files

    if args.format == "onnx":
        if args.max_file_mb is not None:
            raise KaspError("--max-file-mb is for --format sparse or compact; drop it")
        from kasp.models.onnx_export import ONNX_FILE, export_onnx

        c = export_onnx(args.checkpoint, args.out, task=args.task, samples=args.samples)
        print(f"wrote {args.out}: {ONNX_FILE} {c['file_bytes']:,} bytes (dense; opset {c['opset']}); ONNX Runtime logits "
              f"match PyTorch's within {c['max_abs_diff']:.2e} (max abs diff, limit {c['tolerance']:g}) on "
              f"{c['dev_examples']} {c['task']} dev examples. Inputs input_ids, attention_mask, token_type_ids "
              "[batch, sequence]; output logits.")
        return 0
    if args.task is not None:
        raise KaspError("--task is for --format onnx (the dev examples that check the export); drop it")

    cap = None if args.max_file_mb is None else int(args.max_file_mb * 1e6)
    b = export_sparse(args.checkpoint, args.out, compact=args.format == "compact", max_file_bytes=cap)
    ratio = b["encoder_linear_sparse"] / b["encoder_linear_dense"] if b["encoder_linear_dense"] else float("nan")
    files = weight_files(args.out)
    print(f"wrote {args.out}: {', '.join(f.name for f in files)} {b['file']:,} bytes; encoder linear weights "
          f"{b['encoder_linear_sparse']:,} bytes {args.format} vs {b['encoder_linear_dense']:,} dense "
          f"({ratio:.3f}x). Load with kasp.load_sparse(path, task) or kasp.models.export.load_sparse_model.")
    return 0


def _cmd_attention(args: argparse.Namespace) -> int:
    from kasp.analysis.retention import compare

    r = compare(args.teacher, args.student, args.task, samples=args.samples, max_seq_length=args.max_seq_length)
    if args.json:
        print(json.dumps(r.to_dict(), indent=2))
        return 0
    print(f"{r.task}: {r.samples} dev examples; teacher {r.teacher}; student {r.student}")
    if r.input_length:
        from kasp.data.glue import input_length_text, length_warning

        print(f"  ({length_warning(r.input_length) or input_length_text(r.input_length)})")
    print(f"mean attention similarity (1 - Jensen-Shannon, bits): {r.mean_similarity:.4f};  "
          "mean linear CKA of layer outputs: " + (f"{r.mean_cka:.4f}" if r.mean_cka == r.mean_cka else
                                                   "undefined (a constant representation in every layer)"))
    if r.agreement is not None:
        print(f"prediction agreement: {r.agreement * 100:.2f} %;  KL(teacher || student): {r.kl:.4f} nats")
    else:
        print(f"prediction MSE: {r.prediction_mse:.4f}")
    print("layer  CKA     similarity per head (1 = identical attention)")
    for i, row in enumerate(r.similarity):
        cka = r.cka[i + 1]
        print(f"{i:>5}  {'undef' if cka != cka else f'{cka:.3f}'}   " + " ".join(f"{v:.2f}" for v in row))
    if any(c != c for c in r.cka[1:]):
        print("(undef: CKA is undefined where the teacher's or the student's layer output is constant: 0/0, never 0)")
    print("(attention maps are not explanations: they show where a model looks, not why it decides)")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from kasp.experiments.sweep import SweepOptions, check_settings, parse_overrides, run_sweep
    from kasp.experiments.results import load_results
    from kasp.training.train import Cancelled

    opt = SweepOptions(task=_task_name(args.task), model=args.model, sparsities=tuple(args.sparsities),
                       small_dense_sparsities=None if args.small_dense_sparsities is None else tuple(args.small_dense_sparsities),
                       multi_seed_sparsities=None if args.multi_seed_sparsities is None else tuple(args.multi_seed_sparsities),
                       methods=tuple(args.methods), seeds=tuple(args.seeds), max_steps=args.max_steps,
                       teacher_steps=args.teacher_steps, max_seq_length=args.max_seq_length,
                       max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples,
                       teacher=args.teacher, runs_dir=args.runs_dir, results=args.results,
                       keep_checkpoints=args.keep_checkpoints, retention_samples=args.retention_samples,
                       num_threads=args.num_threads, augment=args.augment, augment_source=args.augment_source,
                       overrides=parse_overrides(args.overrides), jobs=args.jobs, epochs=args.epochs,
                       teacher_epochs=args.teacher_epochs)
    plan = opt.plan(opt.model_config() if any(shrinks_student(m) for m in opt.methods) else None)
    check_settings(opt, plan)
    if args.dry_run:
        path = opt.results_path()
        done = {e["key"] for e in load_results(path)["runs"]} if path.exists() else set()
        print(f"sweep {opt.task}: {len(plan)} runs, budget {opt.budget()}; results {path}")
        for r in plan:
            print(f"  {'done ' if r.key in done else 'to do'}  {r.key}")
        return 0
    if args.runs_dir:
        os.environ["KASP_RUNS_DIR"] = str(args.runs_dir)
    stop = _StopFlag()
    stop.install()
    deadline = time.time() + 60 * args.stop_after if args.stop_after else None
    try:
        res = run_sweep(opt, should_stop=lambda: stop() or (deadline is not None and time.time() > deadline))
    except (Cancelled, KeyboardInterrupt) as e:
        print(f"kasp: sweep stopped ({e or 'interrupted'}); finished runs are in {opt.results_path()}; "
              "run the same command to resume", file=sys.stderr)
        return 130
    print(f"sweep {res['task']}: {len(res['runs'])} runs in {opt.results_path()} "
          f"({res['sweep_seconds'] / 60:.1f} min of sweeping)")
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from kasp.experiments.jobs import work
    from kasp.ground.runs import runs_dir

    store = Path(args.runs_dir) if args.runs_dir else runs_dir()
    n = work(store, poll_seconds=args.poll)
    print(f"kasp worker: started {n} queued run(s); no run is queued or running in {store}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from kasp.ui.tables import runs_frame

    df = runs_frame(args.runs_dir)
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in  # NaN -> None
            df[["id", "state", "task", "method", "target_sparsity", "measured_sparsity", "metric", "metric_name",
                "metric_note", "wall_min", "error"]].to_dict("records")]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no runs in the store")
    else:
        for row in rows:
            metric = "" if row["metric"] is None else f"{row['metric'] * 100:.2f}"
            if row["metric_note"]:  # undefined (a gap, never 0.00), or GLUE's convention for a constant predictor
                metric = (f"{metric} ({row['metric_note']})" if metric else "undefined" if row["metric_note"] == "undefined"
                          else f"undefined ({row['metric_note']})")
            wall = "" if row["wall_min"] is None else f"{row['wall_min']:.1f}"
            print(f"{row['id']:<40} {row['state']:<10} {row['task'] or '':<6} {row['method'] or '':<10} "
                  f"{row['target_sparsity'] or 0:>5} {metric:>7} {wall:>6}")
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    """Replace this process by ``streamlit run`` on the app installed with the package (app.py, pages/).

    The run store stays ``$KASP_RUNS_DIR`` or ./runs of the current directory; the app's
    .streamlit/config.toml is shipped beside app.py, where Streamlit reads it.

    Raises:
        KaspError: when ``KASP_OPERATOR_KEY`` is set but shorter than 16 characters, or the app's
            dependencies (the extra kasp[app]: streamlit, plotly, bertviz) are not installed.
    """
    from kasp.ground.errors import require_extra
    from kasp.ground.resources import app_script
    from kasp.ui.session import operator_key_problem

    for module in ("streamlit", "plotly", "bertviz"):  # before Streamlit starts: one line, not a page's traceback
        require_extra(module, "app", "kasp app")
    problem = operator_key_problem()  # a short operator key is refused here, before the app serves anyone
    if problem:
        raise KaspError(problem)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_script()), *args.streamlit_args]
    print("kasp: python " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # streamlit replaces this process: Ctrl-C and SIGTERM reach it
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "app":
        args.streamlit_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        handler = {"finetune": _cmd_train, "prune": _cmd_train, "evaluate": _cmd_evaluate,
                   "inspect": _cmd_inspect, "runs": _cmd_runs, "export": _cmd_export,
                   "attention": _cmd_attention, "app": _cmd_app, "sweep": _cmd_sweep, "worker": _cmd_worker}[args.command]
        try:
            return handler(args)
        finally:
            if args.command in ("finetune", "prune") and settings.get().main_process:
                from kasp.experiments.jobs import advance_queue
                from kasp.ground.runs import runs_dir

                advance_queue(Path(args.runs_dir) if args.runs_dir else runs_dir())  # the queue moves on, no browser
    except KaspError as e:
        print(f"kasp: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system said no: one line naming the path and the fix, never a traceback
        from kasp.ground.errors import os_error_message

        print(f"kasp: error: {os_error_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
