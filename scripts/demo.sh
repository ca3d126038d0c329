#!/usr/bin/env bash
# The README's demo: set up the workspace (idempotent), then run the whole stack on this machine.
#
#   scripts/demo.sh                       # 20 frames -> out/demo/{report.md,strip.jpg,...}
#   scripts/demo.sh --frames 50 --video   # longer, plus out/demo/demo.mp4
#
# Synthetic camera (carla_bridge scenario_publisher) -> lane node + detection node (ONNX Runtime,
# bundled models/lane_small.onnx + models/det_small.onnx) -> closed-loop evaluator, over real
# ROS 2 on this host only (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of its own
# (EP_DEMO_DOMAIN_ID to choose it). Arguments go to `edge-perception demo` (see --help).
# The video instance segmentation node joins when models/vis_small_key.onnx exists (bundled; or
# --vis-model PATH); where it is missing it is skipped with a one-line notice.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
set +u
# shellcheck disable=SC1091
source "$ROOT/env.sh"
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID="${EP_DEMO_DOMAIN_ID:-$((RANDOM % 100 + 1))}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec python -m edge_perception.cli demo --domain-id "$ROS_DOMAIN_ID" "$@"
