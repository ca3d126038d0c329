# Sourced by the long training scripts (det_long_run.sh, yolox_long_run.sh, vis_train_run.sh):
# repository root as the working directory, the workspace set up and its environment loaded, and
# `ensure_data DIR SCENARIO SEQUENCES SEED` generating a data set (lowest priority) when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh >/dev/null
set +u
# shellcheck disable=SC1091
source env.sh
set -u

ensure_data() {  # dir, scenario YAML, train sequences, seed (deterministic in it)
  [ -f "$1/manifest.json" ] && return 0
  nice -n 19 carla-bridge generate --out "$1" --scenario "$2" --train-sequences "$3" \
    --workers 2 --seed "$4"
}
