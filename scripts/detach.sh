# Sourced by the long-running maintainer scripts (run_sweeps.sh, run_trials.sh): `detach NAME "$@"`
# restarts the calling script in the background, detached from the terminal (setsid nohup, niced by
# $NICE, default 5), logging to $LOGDIR/NAME.log with its pid in $LOGDIR/NAME.pid, unless its first
# argument is --foreground (then it returns and the script goes on). Needs SELF (the script's absolute
# path) and LOGDIR set. Refuses a second copy while one runs.
detach() {
  local name=$1
  [[ "${2:-}" == "--foreground" ]] && return 0
  mkdir -p "$LOGDIR"
  if [[ -f "$LOGDIR/$name.pid" ]] && kill -0 "$(cat "$LOGDIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$LOGDIR/$name.pid")); log: $LOGDIR/$name.log"; exit 0
  fi
  HF_HUB_OFFLINE=1 setsid nohup nice -n "${NICE:-5}" "$SELF" --foreground >>"$LOGDIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$LOGDIR/$name.pid"
  echo "$name started in the background (pid $!); log: $LOGDIR/$name.log"
  exit 0
}
