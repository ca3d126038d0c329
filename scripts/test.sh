#!/usr/bin/env bash
# The README's test command: set-up (idempotent) + the whole test suite.
#   scripts/test.sh [pytest args...]
# ROS discovery is confined to this host and every run gets its own ROS_DOMAIN_ID.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
set +u
source env.sh
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID=$(( (RANDOM % 100) + 1 ))
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID (discovery: localhost only)"
exec python -m pytest "$@"
