"""scripts/setup.sh stops early with one clear message on an unsupported Python or no compiler.

These checks run before anything is created, so the tests are fast and leave the checkout alone
(EP_ROS=wheels keeps them off any system ROS the machine may have).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup.sh"


def _run(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SETUP)], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def _bin_dir_without(tmp_path: Path, missing: set) -> Path:
    """A PATH folder with links to every tool of the current PATH except ``missing``."""
    out = tmp_path / "bin"
    out.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            target = os.path.join(folder, name)
            if name in missing or (out / name).exists() or not os.access(target, os.X_OK):
                continue
            (out / name).symlink_to(target)
    return out


def test_unsupported_python_stops_with_the_fix(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    env = dict(os.environ, EP_ROS="wheels", EP_PYTHON=str(fake))
    res = _run(env)
    assert res.returncode == 1
    assert "Python 3.9 is not supported" in res.stderr
    assert "Fix:" in res.stderr
    assert not (tmp_path / ".venv").exists()


def test_missing_compiler_stops_with_the_fix(tmp_path):
    python = shutil.which("python3")
    bin_dir = _bin_dir_without(tmp_path, {"gcc", "g++", "cc", "c++"})
    env = dict(os.environ, EP_ROS="wheels", EP_PYTHON=python, PATH=str(bin_dir))
    res = _run(env)
    assert res.returncode == 1
    assert "no C/C++ compiler" in res.stderr
    assert "build-essential" in res.stderr


def test_second_run_is_quick_and_changes_nothing():
    env = dict(os.environ, EP_ROS="wheels")
    before = (ROOT / "env.sh").read_text()
    res = _run(env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "installing Python packages" not in res.stderr
    assert "building the workspace" not in res.stderr
    assert (ROOT / "env.sh").read_text() == before
