"""Readers of data-set and model files that fail with one line naming the file and the problem.

Every command-line tool (``edge-perception *``, ``carla-bridge *``) reads its inputs through these
helpers (or raises :class:`DataError` itself) and its entry point turns a :class:`DataError` into
``<prog>: error: <file>: <what is wrong>`` and exit status 2, never a traceback. The problems told
apart: missing, a directory, empty, unreadable (permissions), not valid JSON (truncated?), JSON of
the wrong shape (a key missing), an image that cannot be decoded, a truncated JPEG / PNG, a PNG of
the wrong kind.

ROS-free and torch-free: NumPy, OpenCV and Pillow only (Pillow imported when a PNG is read).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

EXIT_BAD_INPUT = 2  # what the CLIs return for a DataError (argparse uses 2 for usage errors too)


class DataError(ValueError):
    """An input file is missing, unreadable or malformed: ``str(exc)`` is one line, file first."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # one line, whatever the cause said
        super().__init__(f"{self.path}: {self.problem}")


class MissingDataError(DataError, FileNotFoundError):
    """The file does not exist (also a FileNotFoundError, for callers that test for that)."""

    def __init__(self, path: str, problem: str = "not found") -> None:
        DataError.__init__(self, path, problem)

    def __str__(self) -> str:  # FileNotFoundError's own __str__ would print errno fields
        return f"{self.path}: {self.problem}"


def check_file(path: str, what: str = "file", hint: str = "") -> str:
    """``path`` if it is a readable, non-empty regular file; else :class:`DataError`."""
    suffix = f" ({hint})" if hint else ""
    if os.path.isdir(path):
        raise DataError(path, f"is a directory, not a {what}{suffix}")
    if not os.path.exists(path):
        raise MissingDataError(path, f"{what} not found{suffix}")
    if not os.access(path, os.R_OK):
        raise DataError(path, f"{what} is not readable (permissions)")
    if os.path.getsize(path) == 0:
        raise DataError(path, f"{what} is empty (0 bytes){suffix}")
    return path


def _read_bytes(path: str, what: str) -> bytes:
    check_file(path, what)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise DataError(path, f"cannot read {what}: {exc.strerror or exc}") from exc


def read_json(
    path: str,
    what: str = "JSON file",
    required: Sequence[str] = (),
    kind: type = dict,
    hint: str = "",
) -> Any:
    """Parsed JSON; ``required`` top-level keys (of a JSON object) must be present."""
    data = _read_bytes(path, what)
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"{what} is not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        truncated = " (truncated?)" if exc.pos >= len(data.rstrip()) else ""
        raise DataError(
            path,
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            f"{truncated}",
        ) from exc
    if kind is not None and not isinstance(obj, kind):
        raise DataError(
            path, f"{what} must hold a JSON {_json_kind(kind)}, not {_json_kind(type(obj))}"
        )
    require_keys(path, obj, required, what, hint)
    return obj


def _json_kind(t: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(
        t, "null" if t is type(None) else t.__name__
    )


def require_keys(
    path: str, obj: Any, keys: Iterable[str], what: str = "JSON file", hint: str = ""
) -> None:
    """:class:`DataError` naming the first of ``keys`` that the JSON object lacks."""
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        extra = f"; {hint}" if hint else ""
        raise DataError(path, f"{what} has no {missing[0]!r} key{extra}")


def read_rgb(path: str, what: str = "image") -> np.ndarray:
    """uint8 H x W x 3 RGB; missing, empty, undecodable and truncated files are told apart."""
    import cv2

    data = _read_bytes(path, what)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        # libjpeg decodes what there is and fills the rest with grey (only a warning)
        raise DataError(path, f"{what} is a truncated JPEG (no end-of-image marker)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(path, f"{what} cannot be decoded (corrupt, or not an image file)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_png(
    path: str, what: str = "label PNG", modes: Optional[Sequence[str]] = None, hint: str = ""
) -> np.ndarray:
    """Stored values of a PNG (palette indices, not colours); ``modes`` are the Pillow modes
    accepted (e.g. ``("P", "L")`` for class masks, ``("I;16", "I")`` for 16-bit ids)."""
    from PIL import Image, UnidentifiedImageError

    check_file(path, what)
    try:
        with Image.open(path) as im:
            if modes is not None and im.mode not in modes:
                extra = f"; {hint}" if hint else ""
                raise DataError(
                    path, f"{what} has image mode {im.mode}, expected one of {list(modes)}{extra}"
                )
            im.load()
            arr = np.array(im)
    except UnidentifiedImageError as exc:
        with open(path, "rb") as fh:
            png = fh.read(8) == b"\x89PNG\r\n\x1a\n"
        problem = "is a corrupt or truncated PNG" if png else "is not a PNG / image file"
        raise DataError(path, f"{what} {problem}") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / bad CRC / bad chunk
        if isinstance(exc, DataError):
            raise
        raise DataError(path, f"{what} is corrupt or truncated ({exc})") from exc
    if arr.dtype == np.int32:  # Pillow's mode "I" for 16-bit greyscale
        arr = arr.astype(np.uint16)
    return arr


def read_npz(path: str, keys: Sequence[str], what: str = "npz file") -> Tuple[np.ndarray, ...]:
    """The arrays ``keys`` of an ``.npz`` (a bad zip or a missing member is a DataError)."""
    import zipfile

    check_file(path, what)
    try:
        with np.load(path) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise DataError(path, f"{what} has no {missing[0]!r} array")
            return tuple(np.asarray(z[k]) for k in keys)
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(path, f"{what} is corrupt or truncated ({exc})") from exc


def load_torch(
    path: str, what: str = "checkpoint", hint: str = "", keys: Sequence[str] = ()
) -> Any:
    """``torch.load`` of a checkpoint file; missing / directory / corrupt files are DataErrors, and
    so is a loadable file that is not a dict with every key in ``keys`` (another tool's file)."""
    import pickle

    import torch

    check_file(path, what, hint)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"{what} cannot be loaded by torch (corrupt?): {first}") from exc
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise DataError(path, f"is not a {what} (no {missing[0]!r} entry)")
    return obj


class SkipLog:
    """What ``--skip-bad`` skipped: ``add(exc)`` records, ``summary()`` is the report line(s)."""

    def __init__(self, allow: bool) -> None:
        self.allow = allow
        self.skipped: List[str] = []

    def add(self, exc: DataError) -> None:
        """Record ``exc`` when skipping is allowed, else re-raise it."""
        if not self.allow:
            raise exc
        self.skipped.append(str(exc))

    def summary(self, limit: int = 20) -> str:
        if not self.skipped:
            return ""
        lines = [f"skipped {len(self.skipped)} bad sample(s) (--skip-bad):"]
        lines += [f"  {s}" for s in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def cli_error(prog: str, exc: BaseException) -> int:
    """Print ``<prog>: error: <one line>`` to stderr; returns :data:`EXIT_BAD_INPUT`."""
    import sys

    msg = " ".join(str(exc).split()) or type(exc).__name__
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


def oserror_line(exc: OSError) -> str:
    """One line for an OSError about a file: ``<file>: <reason>`` (a directory says so)."""
    name = exc.filename
    if isinstance(exc, IsADirectoryError):
        return f"{name}: is a directory, not a file"
    reason = exc.strerror or str(exc)
    return f"{name}: {reason}" if name else reason
