"""Fast, deterministic ``.npz`` writer for the flow labels (readable by ``np.load``).

``np.savez_compressed`` deflates with zlib at level 6 and stamps the current time. Here the zip
archive is written directly: fixed dates, each member's ``.npy`` header followed by the array's
memory (no intermediate copies), deflated with ISA-L (the ``isal`` package: the same deflate
format as zlib, about 7x faster at level 1 on flow images and about the same size) when it is
installed, else with the standard library's zlib at level 1. The archive holds standard deflate
or stored members only, so ``np.load`` / ``zipfile`` read it whichever compressor wrote it; the
bytes depend only on the arrays and on that choice (:data:`COMPRESSOR`).
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import List, Sequence, Tuple

import numpy as np

try:  # optional: a faster deflate with the same output format
    from isal import isal_zlib as DEFLATE

    COMPRESSOR = "isal"
except ImportError:  # pragma: no cover - depends on the environment
    DEFLATE = zlib  # type: ignore[assignment]
    COMPRESSOR = "zlib"
# DEFLATE: the module (``isal.isal_zlib`` or ``zlib``, the same API) every dataset writer
# deflates with; the PNG label writer (:mod:`carla_bridge.dataset.png`) uses it too

_DOS_DATE = (1980 - 1980) << 9 | 1 << 5 | 1  # 1980-01-01 (zip's epoch), time 00:00:00
_VERSION = 20  # "version needed to extract" / "made by": deflate, no zip64
_UNIX = 3  # "made by" host system, as Python's zipfile writes it on POSIX
_ATTR = 0o600 << 16  # external attributes: a regular file, rw------- (as zipfile.writestr)


def npy_header(arr: np.ndarray) -> bytes:
    """The ``.npy`` (format 1.0) header that ``np.lib.format.write_array`` writes for ``arr``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(arr))
    return buf.getvalue()


def _array_bytes(arr: np.ndarray) -> memoryview:
    """The array's memory in its storage order (C or Fortran contiguous), without a copy."""
    if arr.flags.c_contiguous:
        return memoryview(arr.reshape(-1).view(np.uint8))
    if arr.flags.f_contiguous:
        return memoryview(arr.T.reshape(-1).view(np.uint8))
    raise ValueError("the array must be C or Fortran contiguous")


def _member(chunks: Sequence[memoryview], compress: bool) -> Tuple[int, int, int, List]:
    """(crc32, compressed size, size, data pieces) of one zip member made of ``chunks``."""
    crc = size = 0
    out: List = []
    comp = DEFLATE.compressobj(1, DEFLATE.DEFLATED, -15) if compress else None
    for c in chunks:
        crc = DEFLATE.crc32(c, crc)
        size += c.nbytes
        out.append(comp.compress(c) if comp is not None else c)
    if comp is not None:
        out.append(comp.flush())
    return crc, sum(len(memoryview(p)) for p in out), size, out


def write_npz(arrays: Sequence[Tuple[str, np.ndarray, bool]]) -> bytes:
    """Zip archive of ``.npy`` members ``(name, array, deflate?)``, as ``np.load`` reads them.

    Arrays must be contiguous (C or Fortran order; the header records which). Entries are in the
    given order, dated 1980-01-01, without data descriptors or zip64 (each member < 4 GiB).
    """
    parts: List = []
    central: List[bytes] = []
    offset = 0
    for name, arr, compress in arrays:
        fname = (name + ".npy").encode("ascii")
        pieces = [memoryview(npy_header(arr)), _array_bytes(arr)]
        crc, csize, size, data = _member(pieces, compress)
        if max(csize, size) >= 0xFFFFFFFF:
            raise ValueError(f"{name}: too large for a zip without zip64")
        # version, flags, method, time, date, crc, sizes and name length as zipfile writes them
        common = (0, 8 if compress else 0, 0, _DOS_DATE, crc, csize, size, len(fname), 0)
        local = struct.pack("<4s2B4HL2L2H", b"PK\x03\x04", _VERSION, 0, *common)
        cd_entry = (b"PK\x01\x02", _VERSION, _UNIX, _VERSION, 0, *common, 0, 0, 0, _ATTR, offset)
        central.append(struct.pack("<4s4B4HL2L5H2L", *cd_entry) + fname)
        parts += [local, fname] + data
        offset += len(local) + len(fname) + csize
    cd = b"".join(central)
    n = len(central)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(cd), offset, 0)
    return b"".join(parts + [cd, end])
