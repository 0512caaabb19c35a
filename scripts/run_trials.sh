#!/usr/bin/env bash
# Knob trials of issue 14, item 2: KASP at 90 % on SST-2 at the wall-time budget (2,500 steps, about
# 15 minutes a run on 2 idle cores), two seeds each, one recipe field changed per trial, with the
# teacher of the SST-2 sweep budget. Detached, resumable (each trial is a `kasp sweep --set ...`
# with its own results file; a finished run is never redone), committed as each trial finishes.
#
#   scripts/run_trials.sh             start (or resume) in the background; returns at once
#   tail -f runs/trials/trials.log    watch it
#   kill -- -"$(cat runs/trials/trials.pid)"   stop it
#
# Results: bench/trials/sst2-<change>.json (the base trial: bench/trials/sst2.json). Read them with
# scripts/trials_table.py. RESULTS_REPO=/path/to/checkout writes and commits them there instead.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
TASK=${TASK:-sst2}
STEPS=${STEPS:-2500}
REPO=${RESULTS_REPO:-$ROOT}
LOGDIR=${KASP_RUNS_DIR:-$ROOT/runs}/trials
# one trial per line: the --set changes ("" = the default recipe); the method leaves these open
TRIALS=${TRIALS:-"
temperature=2
lr=2e-4
lr=5e-5
prediction_weight=3
"}
mkdir -p "$LOGDIR"

if [[ "${1:-}" != "--foreground" ]]; then
  if [[ -f "$LOGDIR/trials.pid" ]] && kill -0 "$(cat "$LOGDIR/trials.pid")" 2>/dev/null; then
    echo "trials already running (pid $(cat "$LOGDIR/trials.pid")); log: $LOGDIR/trials.log"; exit 0
  fi
  HF_HUB_OFFLINE=1 setsid nohup nice -n "${NICE:-5}" "$0" --foreground >>"$LOGDIR/trials.log" 2>&1 < /dev/null &
  echo $! > "$LOGDIR/trials.pid"
  echo "trials started in the background (pid $!); log: $LOGDIR/trials.log"
  exit 0
fi

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
run_trial() {  # $1: name for the results file; the rest: --set items
  local name=$1; shift
  local sets=()
  for kv in "$@"; do sets+=(--set "$kv"); done
  local out=$REPO/bench/trials/$name.json
  echo "=== $(date -u +%FT%TZ) trial $name -> $out"
  local rc=0
  "$PY" -m kasp sweep --task "$TASK" --methods kasp --sparsities 0.9 --seeds 42 43 --max-steps "$STEPS" \
      --results "$out" "${sets[@]}" || rc=$?
  if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_trials.sh again to resume"; exit 130; fi
  if [[ $rc -ne 0 ]]; then echo "trial $name failed (exit $rc)"; return 0; fi
  git -C "$REPO" add "$out"
  git -C "$REPO" commit -q -m "Knob trial $name: KASP 90 % on $TASK, $STEPS steps, seeds 42 43 (scripts/run_trials.sh)" -- "$out" \
    || echo "nothing new to commit for $out"
}
run_trial "$TASK"
while read -r line; do
  [[ -z "$line" ]] && continue
  run_trial "$TASK-${line//[ =]/}" $line
done <<< "$TRIALS"
echo "=== $(date -u +%FT%TZ) all trials done"
