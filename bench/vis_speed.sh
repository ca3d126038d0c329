#!/usr/bin/env bash
# bench/vis_speed.py with the background training jobs paused while it times (they share the
# 2 cores). The running jobs are found once (pgrep -f 'edge_perception.(detection|vis).train';
# one already stopped by someone else is left alone), stopped by pid and ALWAYS continued again by
# the same pids (EXIT trap: also on failure or Ctrl-C).
#   bash bench/vis_speed.sh [--runs 30 --frames 60 --yolact-runs 8]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
set +u
# shellcheck disable=SC1091
source "$ROOT/env.sh"
set -u
PIDS=""
for p in $(pgrep -f 'edge_perception[.](detection|vis)[.]train' || true); do
  # field 3 of /proc/PID/stat is the state: T = already stopped (not ours to continue)
  [ "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" = T ] || PIDS="$PIDS $p"
done
resume() {
  for p in $PIDS; do kill -CONT "$p" 2>/dev/null || true; done
  [ -n "$PIDS" ] && echo "[vis_speed] resumed training pids: $PIDS" >&2 || true
}
trap resume EXIT INT TERM
for p in $PIDS; do kill -STOP "$p" 2>/dev/null || true; done
[ -n "$PIDS" ] && echo "[vis_speed] paused training pids: $PIDS" >&2 || true
python bench/vis_speed.py --command "bash bench/vis_speed.sh $*" "$@"
