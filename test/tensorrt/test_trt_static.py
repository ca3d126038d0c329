"""Static checks: mypy against the published tensorrt-stubs, Python-3.8 compatibility (vermin).

* mypy checks the TensorRT / CUDA code (``edge_perception/tensorrt``, the TensorRT backend, the
  ORT provider selection) with ``mypy.ini`` against ``tensorrt-stubs``. The published stubs are a
  plain ``tensorrt/`` folder without ``py.typed`` and contain two syntax errors (a parameter named
  ``in``; a non-default after defaults); :func:`prepare_stubs` copies them to a temp folder with
  those two mechanical repairs and puts it on ``MYPYPATH``. A second test proves the check bites:
  it misspells two real TensorRT API names in a copy of the package and expects mypy to fail.
* vermin proves the runtime modules (what runs on the Jetson's Python 3.8) need nothing newer
  than 3.8; a small AST check adds what vermin does not see (``list[int]`` / ``int | None``
  evaluated at run time, outside annotations).

``scripts/check_static.sh`` runs this file.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "src" / "edge_perception" / "edge_perception"
MYPY_TARGETS = [
    PKG / "tensorrt",
    PKG / "backends" / "tensorrt_backend.py",
    PKG / "backends" / "providers.py",
]
# Modules that run on the vehicle (Python 3.8 + NumPy 1.x): docs/CONTRACTS.md.
RUNTIME_PATHS = [
    PKG / "backends",
    PKG / "runtime",
    PKG / "ros",
    PKG / "masks.py",
    PKG / "config.py",
    PKG / "config",
    PKG / "lane" / "postprocess.py",
    PKG / "vis" / "keyframe.py",  # imported by runtime/vis.py
    PKG / "tensorrt",
]


def prepare_stubs(dest: Path) -> Path:
    """Copy the installed tensorrt-stubs' .pyi files to ``dest`` with two mechanical repairs."""
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (requirements/nodeps.txt; scripts/setup.sh)")
    for f in dist.files or []:
        if not str(f).endswith(".pyi"):
            continue
        text = Path(str(dist.locate_file(f))).read_text(encoding="utf-8")
        text = re.sub(r"(\(|, )in: ", r"\1in_: ", text)  # `in` is a keyword
        text = text.replace(", channel_axis: int) ->", ", channel_axis: int = ...) ->")
        out = dest / str(f)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    assert (dest / "tensorrt" / "__init__.pyi").is_file()
    return dest


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_stubs(tmp_path_factory.mktemp("trt_stubs"))


def run_mypy(
    targets: List[Path], stubs: Path, cwd: Path, cache: Path
) -> subprocess.CompletedProcess:
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(stubs), str(cwd)]))
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "mypy.ini"),
        "--cache-dir",
        str(cache),
        "--no-error-summary",
    ] + [str(t) for t in targets]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_mypy_tensorrt_code_against_stubs(stubs, tmp_path):
    out = run_mypy(MYPY_TARGETS, stubs, ROOT, tmp_path / "cache")
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_mypy_catches_a_wrong_tensorrt_api_name(stubs, tmp_path):
    copy = tmp_path / "src" / "edge_perception"
    for part in ("__init__.py", "backends", "tensorrt"):
        src = PKG / part
        if src.is_dir():
            shutil.copytree(src, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            copy.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, copy / part)
    mutations = [
        (copy / "backends" / "tensorrt_backend.py", "execute_async_v3(", "execute_async_v4("),
        (copy / "tensorrt" / "builder.py", "set_memory_pool_limit(", "set_memory_pool_limits("),
        (
            copy / "tensorrt" / "builder.py",
            "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
            "BuilderFlag.OBEY_PRECISION",
        ),
    ]
    for path, good, bad in mutations:
        text = path.read_text()
        assert good in text, "the real name %s is no longer used in %s" % (good, path.name)
        path.write_text(text.replace(good, bad))
    targets = [copy / "tensorrt", copy / "backends" / "tensorrt_backend.py"]
    out = run_mypy(targets, stubs, tmp_path / "src", tmp_path / "cache")
    assert out.returncode != 0
    for _, _, bad in mutations:
        name = bad.rstrip("(").split(".")[-1]
        assert name in out.stdout, "mypy missed %s:\n%s" % (name, out.stdout[-3000:])


def existing_runtime_paths() -> List[Path]:
    return [p for p in RUNTIME_PATHS if p.exists()]


def run_vermin(paths: List[Path]) -> subprocess.CompletedProcess:
    pytest.importorskip("vermin")
    cmd = [
        sys.executable,
        "-c",
        "import sys, vermin; sys.exit(vermin.main())",
        "-t=3.8-",
        "--no-tips",
        "--violations",
    ] + [str(p) for p in paths]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_runtime_modules_need_only_python_3_8():
    out = run_vermin(existing_runtime_paths())
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_vermin_flags_a_python_3_9_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("name = 'v_1'.removeprefix('v_')\n")
    out = run_vermin([bad])
    assert out.returncode != 0 and "removeprefix" in out.stdout


_BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
_TYPE_NAMES = _BUILTIN_GENERICS | {"int", "float", "str", "bytes", "bool", "object"}


class _RuntimeTypingFinder(ast.NodeVisitor):
    """``list[int]`` and ``X | None`` evaluated at run time (not inside annotations)."""

    def __init__(self) -> None:
        self.found: List[str] = []

    def _skip_annotations(self, node: ast.AST) -> None:
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns"):
                continue
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item)
            elif isinstance(value, ast.AST):
                self.visit(value)

    def visit_arg(self, node: ast.arg) -> None:
        self._skip_annotations(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._skip_annotations(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._skip_annotations(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in _BUILTIN_GENERICS:
            self.found.append("line %d: %s[...] at run time" % (node.lineno, node.value.id))
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.BitOr):
            sides = (node.left, node.right)
            if any(isinstance(s, ast.Constant) and s.value is None for s in sides) or any(
                isinstance(s, ast.Name) and s.id in _TYPE_NAMES for s in sides
            ):
                self.found.append("line %d: X | Y type union at run time" % node.lineno)
        self.generic_visit(node)


def test_no_py39_typing_evaluated_at_run_time():
    problems = []
    for base in existing_runtime_paths():
        files = [base] if base.is_file() else sorted(base.rglob("*.py"))
        for f in files:
            finder = _RuntimeTypingFinder()
            finder.visit(ast.parse(f.read_text(encoding="utf-8"), str(f)))
            problems += ["%s %s" % (f.relative_to(ROOT), p) for p in finder.found]
    assert not problems, "Python 3.8 cannot evaluate these:\n" + "\n".join(problems)


def find_python38() -> str:
    """A real CPython 3.8 interpreter here, if any (PATH, then pyenv's versions folder)."""
    candidates = [shutil.which("python3.8") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob("3.8*/bin/python3.8"))
    for exe in candidates:
        if not exe:
            continue
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        except OSError:
            continue
        if out.stdout.strip() == "True":
            return exe
    return ""


def test_runtime_modules_compile_and_policy_runs_on_python_3_8(tmp_path):
    """Byte-compile every runtime module with a real 3.8, and run the policy code there."""
    exe = find_python38()
    if not exe:
        pytest.skip("no CPython 3.8 interpreter on this machine")
    files = []
    for base in existing_runtime_paths():
        files += [base] if base.is_file() else sorted(base.rglob("*.py"))
    script = (
        "import py_compile, sys\n"
        "for i, f in enumerate(sys.argv[1:]):\n"
        "    py_compile.compile(f, cfile=%r + '/%%d.pyc' %% i, doraise=True)\n" % str(tmp_path)
    )
    out = subprocess.run(
        [exe, "-c", script] + [str(f) for f in files], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-4000:]
    policy = PKG / "tensorrt" / "policy.py"  # stdlib-only at import: runs without numpy
    check = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('policy', %r)\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['policy'] = m\n"
        "spec.loader.exec_module(m)\n"
        "p = m.policy_from_dict({'rules': [{'^/backbone/': 'int8'}], 'default': 'fp16'})\n"
        "assert p.precision_for('/backbone/c/Conv') == 'int8', p\n"
        "assert m.PRESETS['yolact'].precision_for('/fpn/pred_layers.0/Conv') == 'fp16'\n"
        "print(p.digest())\n" % str(policy)
    )
    out = subprocess.run([exe, "-c", check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    assert len(out.stdout.strip()) == 64


def test_runtime_typing_finder_flags_what_it_should():
    src = (
        "from __future__ import annotations\n"
        "def f(x: list[int] | None) -> dict[str, int]:\n"
        "    y: list[int] = []\n"
        "    return {}\n"
        "A = list[int]\n"
        "ok = isinstance(1, int | str)\n"
        "flags = 1 | 2\n"
    )
    finder = _RuntimeTypingFinder()
    finder.visit(ast.parse(src))
    assert finder.found == [
        "line 5: list[...] at run time",
        "line 6: X | Y type union at run time",
    ]
