#!/usr/bin/env bash
# Static checks of the TensorRT / CUDA code and the Python-3.8 runtime modules:
#   mypy against the published tensorrt-stubs (mypy.ini), a mutation check that a misspelt
#   TensorRT API name fails it, vermin -t=3.8- over the runtime modules, ruff on the TensorRT code.
#
#   scripts/check_static.sh            # after scripts/setup.sh; exit status 0 = clean
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -f env.sh ] || { echo "check_static: run scripts/setup.sh first (no env.sh)" >&2; exit 1; }
  # shellcheck disable=SC1091
  set +u; source env.sh; set -u
fi
python -m ruff check src/edge_perception/edge_perception/tensorrt \
  src/edge_perception/edge_perception/backends/tensorrt_backend.py \
  src/edge_perception/edge_perception/backends/providers.py test/tensorrt bench/gpu_bench.py
python -m pytest -q -p no:cacheprovider test/tensorrt/test_trt_static.py "$@"
