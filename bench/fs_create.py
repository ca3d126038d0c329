"""File-creation cost of the dataset's file system, fresh vs right after deleting many files.

The dataset writer creates four files per frame, so the file system's cost per create is part of
``bench/datagen.py``'s figures. On ext4 without a journal (this project's VM) an inode freed in
the last 30 s is skipped when a new one is allocated, after reading it, so creating files right
after deleting a dataset costs more. This measures the CPU time (user + system) of creating
empty files in a new directory under ``--dir``: first on a quiet file system (after ``--settle``
seconds without deletions), then immediately after deleting ``--delete`` files.

    python bench/fs_create.py [--dir data] [--files 300] [--delete 1000] [--settle 35]

Writes ``bench/results/fs_create.json`` and ``bench/results/fs_create.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import environment, markdown_table, write_results  # noqa: E402


def _create_ms(root: str, n: int) -> float:
    """CPU ms per ``open(O_CREAT)`` + ``close`` of ``n`` new files in a new directory."""
    d = tempfile.mkdtemp(prefix="create_", dir=root)
    t0 = time.process_time()
    for i in range(n):
        os.close(os.open(os.path.join(d, f"f{i}"), os.O_WRONLY | os.O_CREAT, 0o644))
    return 1e3 * (time.process_time() - t0) / n


def _fs_type(path: str) -> str:
    """The mount's file system type and options (Linux), else ``unknown``."""
    best, found = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                _, mnt, kind, opts = line.split()[:4]
                real = os.path.realpath(path)
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(
                    best
                ):
                    best, found = mnt, f"{kind} ({opts})"
    except OSError:
        pass
    return found


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="data", help="where the scratch directory is made")
    ap.add_argument("--files", type=int, default=300, help="files created per measurement")
    ap.add_argument("--delete", type=int, default=1000, help="files deleted before the second")
    ap.add_argument("--settle", type=float, default=35.0, help="quiet seconds before the first")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="fs_create_", dir=args.dir)
    try:
        time.sleep(args.settle)
        quiet = _create_ms(scratch, args.files)
        junk = tempfile.mkdtemp(prefix="junk_", dir=scratch)
        for i in range(args.delete):
            with open(os.path.join(junk, f"j{i}"), "wb") as fh:
                fh.write(b"x" * 4096)
        time.sleep(args.settle)  # the junk files are old: only their deletion is recent
        shutil.rmtree(junk)
        after = _create_ms(scratch, args.files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    env = environment()
    rows: List[Dict[str, Any]] = [
        {"case": f"no deletion in the last {args.settle:g} s", "cpu_ms_per_create": quiet},
        {"case": f"right after deleting {args.delete} files", "cpu_ms_per_create": after},
    ]
    for r in rows:
        r["cpu_ms_per_create"] = round(r["cpu_ms_per_create"], 3)
    command = "python bench/fs_create.py " + " ".join(sys.argv[1:] if argv is None else argv)
    data = {
        "benchmark": "fs_create",
        "command": command.strip(),
        "settings": vars(args),
        "file_system": _fs_type(args.dir),
        "environment": env,
        "results": rows,
    }
    table = markdown_table(
        [(r["case"], r["cpu_ms_per_create"]) for r in rows], ["case", "CPU ms per file create"]
    )
    md = (
        "# File creation cost (dataset writer's file system)\n\n"
        f"Command: `{data['command']}`  \n"
        f"Machine: {env['cpu']}, {env['cpu_count']} CPUs, git {env['git']}, {env['time_utc']}  \n"
        f"File system of `{args.dir}`: {data['file_system']}\n\n" + table
    )
    paths = write_results("fs_create", data, md)
    print(md)
    print(f"wrote {paths['json']} and {paths['md']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
