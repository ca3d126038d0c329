#!/usr/bin/env bash
# Build the TensorRT engines of the bundled models on the target (Jetson Xavier), offline.
#
#   scripts/build_engines.sh                          # FP16 engines of models/*.onnx
#   scripts/build_engines.sh --precision int8 --calib-data /data/carla   # mixed INT8/FP16
#   scripts/build_engines.sh --dla-core 0 --precision fp16 models/lane_small.onnx
#
# Options: --precision fp32|fp16|int8 (default fp16), --calib-data DIR, --dla-core N,
# --cache-dir DIR, --workspace-mb N, --force, --check; further arguments are ONNX files (default:
# every models/*.onnx except *_qdq.onnx when building FP16/FP32). With int8 each model gets the
# precision policy of its kind from its file name: lane* -> lane, det*/rtdetr* -> rtdetr,
# yolact*/vis* -> yolact; a *_qdq.onnx model is built as explicit INT8 (no calibration).
# Engines land beside the models as <stem>.<precision>[.dla<N>].engine + .json key; a valid
# engine is kept (seconds), a stale one rebuilt. Exit status: number of models that failed.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$((RANDOM % 100 + 1))}

die() { printf 'build_engines: %s\n' "$*" >&2; exit 2; }
PRECISION=fp16
COMMON=()
MODELS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --precision) [ $# -ge 2 ] || die "--precision needs a value"; PRECISION=$2; shift 2 ;;
    --calib-data|--dla-core|--cache-dir|--workspace-mb|--calib-images|--calibrator)
      [ $# -ge 2 ] || die "$1 needs a value"; COMMON+=("$1" "$2"); shift 2 ;;
    --force|--check|-v|--verbose) COMMON+=("$1"); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) MODELS+=("$1"); shift ;;
  esac
done
case "$PRECISION" in fp32|fp16|int8) ;; *) die "--precision must be fp32, fp16 or int8" ;; esac

if [ -z "${VIRTUAL_ENV:-}" ] && [ -f env.sh ]; then
  # shellcheck disable=SC1091
  set +u; source env.sh; set -u
fi
python - <<'PY' || die "TensorRT is not importable: on a Jetson use JetPack's python3-libnvinfer (see docs/jetson.md)"
import sys
from edge_perception.tensorrt import tensorrt_available
sys.exit(0 if tensorrt_available() else 1)
PY

if [ ${#MODELS[@]} -eq 0 ]; then
  for m in models/*.onnx; do
    [ -f "$m" ] || continue
    case "$m" in *_qdq.onnx) [ "$PRECISION" = int8 ] || continue ;; esac
    MODELS+=("$m")
  done
fi
[ ${#MODELS[@]} -gt 0 ] || die "no ONNX models found (models/*.onnx); export them first"

policy_for() {
  case "$(basename "$1")" in
    *_qdq.onnx) echo "" ;;
    lane*) echo lane ;;
    det*|rtdetr*) echo rtdetr ;;
    yolact*|vis*) echo yolact ;;
    *) echo "" ;;
  esac
}

failed=0
for model in "${MODELS[@]}"; do
  args=("$model" --precision "$PRECISION" "${COMMON[@]}")
  if [ "$PRECISION" = int8 ]; then
    pol=$(policy_for "$model")
    [ -n "$pol" ] && args+=(--policy "$pol")
  fi
  printf '[build_engines] %s\n' "${args[*]}"
  start=$(date +%s)
  if python -m edge_perception.cli trt-build "${args[@]}"; then
    printf '[build_engines] %s: ok (%ss)\n' "$model" "$(($(date +%s) - start))"
  else
    printf '[build_engines] %s: FAILED\n' "$model" >&2
    failed=$((failed + 1))
  fi
done
exit "$failed"
