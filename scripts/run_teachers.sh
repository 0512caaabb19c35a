#!/usr/bin/env bash
# Teachers trained until they stop improving (issue 29 item 1): for each task, `kasp finetune` for EPOCHS epochs
# (default 10) with the task's selection slice held out (the same --holdout as scripts/run_study.sh), the dev and
# held-out metrics measured once an epoch, and --select-best: the run ends with the weights of the epoch that scored
# best on the held-out slice (never chosen on dev). Each finished teacher is recorded in bench/teachers/<task>.json
# (scripts/teachers.py record: every epoch's dev and slice metric, the epoch kept), the docs table between the
# teachers-table markers of docs/results.md is regenerated, and both are committed.
# Detached and resumable: a finished task is skipped; an interrupted one continues from its last epoch (kasp finetune
# --resume; --select-best then chooses among the epochs after the resume).
#
#   scripts/run_teachers.sh               start (or resume) in the background; returns at once
#   tail -f runs/teachers/teachers.log    watch it
#   kill -- -"$(cat runs/teachers/teachers.pid)"   stop it
#
# TASKS (default "mrpc rte cola stsb"), EPOCHS; LR (a learning rate other than the recipe's 1e-4: its own run folder
# <...>-lr<LR> and record bench/teachers/<task>-lr<LR>.json, a row of its own in the table; the study and sweeps keep
# using the plain teachers); RESULTS_REPO=/path/to/checkout writes and commits there instead.
# The teachers stay in the run store ($KASP_RUNS_DIR/teachers/<task>-holdout<N>-e<EPOCHS>) for the study and sweeps.
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
REPO=${RESULTS_REPO:-$ROOT}
STORE=${KASP_RUNS_DIR:-$ROOT/runs}
LOGDIR=$STORE/teachers
TASKS=${TASKS:-"mrpc rte cola stsb"}
EPOCHS=${EPOCHS:-10}
LR=${LR:-}
SUFFIX=${LR:+-lr$LR}
# the selection slices of scripts/run_study.sh, and the sweeps' length limits (kasp/experiments/sweep.py)
declare -A HOLDOUT=([sst2]=872 [mrpc]=408 [rte]=277 [stsb]=600 [cola]=800)
declare -A LENGTH=([sst2]=64 [mrpc]=128 [rte]=128 [stsb]=128 [cola]=64)
# shellcheck source=scripts/detach.sh
source "$ROOT/scripts/detach.sh"
detach teachers "$@"

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for task in $TASKS; do
  dir=$STORE/teachers/$task-holdout${HOLDOUT[$task]}-e$EPOCHS$SUFFIX
  out=$REPO/bench/teachers/$task$SUFFIX.json
  if [[ -f $out && -f $dir/report.json ]]; then echo "$task: recorded in $out; skipped"; continue; fi
  if [[ ! -f $dir/report.json && -f $dir/resume.json ]]; then  # interrupted after an epoch: continue from there
    echo "=== $(date -u +%FT%TZ) $task: resuming $dir"
    rc=0
    "$PY" -m kasp finetune --resume "$dir" --no-progress < /dev/null || rc=$?
    if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_teachers.sh again to resume"; exit 130; fi
    if [[ $rc -ne 0 ]]; then echo "$task teacher could not resume (exit $rc): starting it again"; fi
  fi
  if [[ ! -f $dir/report.json ]]; then
    n=$("$PY" -c "from kasp.data.files import load_split; print(len(load_split('$task', 'train')))")
    per_epoch=$(( (n - HOLDOUT[$task] + 31) / 32 ))  # steps an epoch at batch 32
    echo "=== $(date -u +%FT%TZ) $task: $EPOCHS epochs of $per_epoch steps, ${HOLDOUT[$task]} held out -> $dir"
    rm -rf "$dir"
    rc=0
    "$PY" -m kasp finetune --task "$task" --holdout "${HOLDOUT[$task]}" --epochs "$EPOCHS" --eval-every "$per_epoch" \
      --max-seq-length "${LENGTH[$task]}" ${LR:+--lr "$LR"} --select-best --out "$dir" --runs-dir "$STORE" --no-progress \
      < /dev/null || rc=$?
    if [[ $rc -eq 130 ]]; then echo "stopped; run scripts/run_teachers.sh again to resume"; exit 130; fi
    if [[ $rc -ne 0 ]]; then echo "$task teacher failed (exit $rc)"; continue; fi
  fi
  "$PY" "$ROOT/scripts/teachers.py" record "$dir" "$out"
  (cd "$REPO" && "$PY" scripts/teachers.py table --write docs/results.md) \
    || echo "could not regenerate docs/results.md's teachers table: run scripts/teachers.py table --write docs/results.md"
  git -C "$REPO" add "$out" "$REPO/docs/results.md"
  git -C "$REPO" commit -q -m "Teacher $task$SUFFIX: $EPOCHS epochs, ${HOLDOUT[$task]} held out, best epoch on the slice (scripts/run_teachers.sh)" \
    -- "$out" "$REPO/docs/results.md" || echo "nothing new to commit for $out"
done
echo "=== $(date -u +%FT%TZ) teachers done"
