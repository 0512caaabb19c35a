#!/usr/bin/env bash
# Run the accuracy-against-sparsity sweeps of issue 15 for the five shipped tasks, one after the
# other, detached from the terminal, resumable, committing each task's results file when it is done.
#
#   scripts/run_sweeps.sh            start (or resume) in the background; returns at once
#   tail -f runs/sweeps/sweeps.log   watch it ("N/M runs done; about X left")
#   kill -- -"$(cat runs/sweeps/sweeps.pid)"   stop it (SIGTERM: the current run stops, finished runs stay)
#
# Started again after a stop, a reboot or a kill, every sweep skips the runs already in its
# results file (assets/sweeps/<task>.json) and redoes at most the interrupted one.
# Plan (issue 15, item 3): KASP and magnitude at 0.5 0.7 0.9 0.95, small-dense at the sizes of 0.5
# and 0.9, seed 42, plus seed 43 at 0.9 for all three methods: 13 runs and a teacher per task.
# Then (issue 14, item 3) KASP at 0.9 with augmented training data, seeds 42 and 43, with the same
# teacher and budget: TinyBERT word replacement (N = TinyBERT's copies for the task) and the other
# GLUE tasks' sentences (N = 1), into bench/augment/<task>-augment-<source><N>.json; the plain
# sweep's KASP 0.9 runs are the "without" column. AUGMENT=0 skips them.
# Per-task budgets and length limits: kasp/experiments/sweep.py TASK_BUDGETS (recorded in each file; the small tasks
# 5 epochs since 2026-12-03, so a plain run redoes their older, shorter sweeps and augmentation runs).
# Small tasks first: SST-2 (about 3 h) last.
# RESULTS_REPO=/path/to/checkout writes and commits the results files there instead (run the sweep
# from a second worktree of a fixed commit, so that editing the main checkout cannot change the code
# of a sweep half-way).
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")  # absolute: the detached copy starts after the cd below
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
TASKS=${TASKS:-"mrpc rte stsb cola sst2"}
AUGMENT=${AUGMENT:-1}
REPO=${RESULTS_REPO:-$ROOT}
LOGDIR=${KASP_RUNS_DIR:-$ROOT/runs}/sweeps
# The grid in epochs (issue 29 item 2) is the same script with these set, e.g.
#   EPOCHS=5 SPARSITIES="0.5 0.9 0.95" JOBS=2 AUGMENT=0 TASKS="mrpc rte stsb cola" \
#   TEACHER='$KASP_RUNS_DIR/teachers/{task}-holdout{holdout}-e10' scripts/run_sweeps.sh
# EPOCHS: a budget in passes over the training set instead of TASK_BUDGETS' (kasp sweep --epochs);
# SPARSITIES / SMALL_DENSE: the grid (small-dense at the sizes of SMALL_DENSE); JOBS: runs at once
# (kasp sweep --jobs); TEACHER: a teacher run folder per task ({task} and {holdout}, the selection slice the
# teachers of scripts/run_teachers.sh held out, are filled in), instead of a teacher the sweep fine-tunes;
# OUTDIR: where the results files go (default assets/sweeps, what the app shows).
EPOCHS=${EPOCHS:-}
SPARSITIES=${SPARSITIES:-"0.5 0.7 0.9 0.95"}
SMALL_DENSE=${SMALL_DENSE:-"0.5 0.9"}
JOBS=${JOBS:-1}
TEACHER=${TEACHER:-}
OUTDIR=${OUTDIR:-$REPO/assets/sweeps}
declare -A HOLDOUT=([sst2]=872 [mrpc]=408 [rte]=277 [stsb]=600 [cola]=800)
# shellcheck source=scripts/detach.sh
source "$ROOT/scripts/detach.sh"
detach sweeps "$@"

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for task in $TASKS; do
  results=$OUTDIR/$task.json
  mkdir -p "$OUTDIR"
  extra=()
  [[ -n $EPOCHS ]] && extra+=(--epochs "$EPOCHS")
  if [[ -n $TEACHER ]]; then
    t=${TEACHER//\{task\}/$task}; t=${t//\{holdout\}/${HOLDOUT[$task]}}
    [[ -f $t/report.json ]] || { echo "no finished $task teacher in $t (scripts/run_teachers.sh); skipping $task"; continue; }
    extra+=(--teacher "$t")
  fi
  echo "=== $(date -u +%FT%TZ) sweep $task ${extra[*]} -> $results"
  rc=0
  # shellcheck disable=SC2086  # the grid's sparsities are words
  "$PY" -m kasp sweep --task "$task" --results "$results" \
      --sparsities $SPARSITIES --small-dense-sparsities $SMALL_DENSE \
      --seeds 42 43 --multi-seed-sparsities 0.9 --jobs "$JOBS" "${extra[@]}" || rc=$?
  if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_sweeps.sh again to resume"; exit 130; fi
  if [[ $rc -ne 0 ]]; then echo "sweep $task failed (exit $rc); going on with the next task"; continue; fi
  git -C "$REPO" add "$results"
  git -C "$REPO" commit -q -m "Sweep results for $task (kasp sweep, scripts/run_sweeps.sh)" -- "$results" \
    || echo "nothing new to commit for $task"
  [[ "$AUGMENT" == 1 ]] || continue
  n_words=$("$PY" -c "from kasp.training.augment import TINYBERT_N; print(TINYBERT_N['$task'])")
  for spec in "words $n_words" "glue 1"; do
    set -- $spec
    out=$REPO/bench/augment/$task-augment-$1$2.json
    echo "=== $(date -u +%FT%TZ) augmentation $task: $1 x$2 -> $out"
    rc=0
    "$PY" -m kasp sweep --task "$task" --results "$out" --methods kasp --sparsities 0.9 --seeds 42 43 \
        --augment "$2" --augment-source "$1" || rc=$?
    if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_sweeps.sh again to resume"; exit 130; fi
    if [[ $rc -ne 0 ]]; then echo "augmentation $task $1 failed (exit $rc)"; continue; fi
    git -C "$REPO" add "$out"
    git -C "$REPO" commit -q -m "Augmentation results for $task: $1 x$2 (scripts/run_sweeps.sh)" -- "$out" \
      || echo "nothing new to commit for $out"
  done
done
echo "=== $(date -u +%FT%TZ) all sweeps done"
