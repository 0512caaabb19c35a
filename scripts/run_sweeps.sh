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
# Per-task step budgets and length limits: kasp/sweep.py TASK_BUDGETS (recorded in each file).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
TASKS=${TASKS:-"sst2 mrpc rte stsb cola"}
LOGDIR=${KASP_RUNS_DIR:-$ROOT/runs}/sweeps
mkdir -p "$LOGDIR"

if [[ "${1:-}" != "--foreground" ]]; then
  if [[ -f "$LOGDIR/sweeps.pid" ]] && kill -0 "$(cat "$LOGDIR/sweeps.pid")" 2>/dev/null; then
    echo "sweeps already running (pid $(cat "$LOGDIR/sweeps.pid")); log: $LOGDIR/sweeps.log"; exit 0
  fi
  HF_HUB_OFFLINE=1 setsid nohup nice -n "${NICE:-5}" "$0" --foreground >>"$LOGDIR/sweeps.log" 2>&1 < /dev/null &
  echo $! > "$LOGDIR/sweeps.pid"
  echo "sweeps started in the background (pid $!); log: $LOGDIR/sweeps.log"
  exit 0
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for task in $TASKS; do
  results=assets/sweeps/$task.json
  echo "=== $(date -u +%FT%TZ) sweep $task -> $results"
  rc=0
  "$PY" -m kasp sweep --task "$task" --results "$results" \
      --sparsities 0.5 0.7 0.9 0.95 --small-dense-sparsities 0.5 0.9 \
      --seeds 42 43 --multi-seed-sparsities 0.9 || rc=$?
  if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_sweeps.sh again to resume"; exit 130; fi
  if [[ $rc -ne 0 ]]; then echo "sweep $task failed (exit $rc); going on with the next task"; continue; fi
  git add "$results"
  git commit -q -m "Sweep results for $task (kasp sweep, scripts/run_sweeps.sh)" -- "$results" \
    || echo "nothing new to commit for $task"
done
echo "=== $(date -u +%FT%TZ) all sweeps done"
