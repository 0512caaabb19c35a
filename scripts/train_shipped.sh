#!/usr/bin/env bash
# Trains the models that ship with KASP (assets/models/, issue 25): the SST-2 teacher and its KASP, magnitude
# and small-dense students at 90 %, each with the default recipe of its kind plus --freeze-word-embeddings (the
# word-embedding matrix stays the pre-trained model's own, so that the compact export shares it instead of
# storing it). Detached and resumable: a finished run is never redone, an unfinished one is started again.
# Pack them afterwards with scripts/pack_shipped.py (exports, re-scores the packed weights, writes the manifest).
#
#   scripts/train_shipped.sh              start (or resume) in the background; returns at once
#   tail -f runs/ship/ship.log            watch it
#   kill -- -"$(cat runs/ship/ship.pid)"  stop it
set -euo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PY:-$ROOT/.venv/bin/python}
STORE=${SHIP_STORE:-$ROOT/runs/ship}
LOGDIR=$STORE
TASK=${TASK:-sst2}
# shellcheck source=scripts/detach.sh
source "$ROOT/scripts/detach.sh"
detach ship "$@"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

run() {  # $1 run name, then the kasp command and its flags
  local name=$1; shift
  local dir=$STORE/$TASK-$name
  if [[ -f $dir/report.json ]] && grep -q '"done"' "$dir/status.json" 2>/dev/null; then
    echo "=== $name: done already ($dir)"; return 0
  fi
  rm -rf "$dir"
  echo "=== $(date -u +%FT%TZ) $name -> $dir"
  "$PY" -m kasp "$@" --task "$TASK" --freeze-word-embeddings --out "$dir" --runs-dir "$STORE" --no-progress < /dev/null
}
run teacher finetune
for method in kasp magnitude small-dense; do
  run "$method-90" prune --method "$method" --sparsity 0.9 --teacher "$STORE/$TASK-teacher"
done
echo "=== $(date -u +%FT%TZ) all trained; pack them with: $PY scripts/pack_shipped.py --store $STORE"
