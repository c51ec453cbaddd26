"""Writing a file so that a kill or a full disk at any instant leaves the old file or the new
one, whole (standard library only, so every layer may use it).

:func:`atomic_write` writes a temporary file in the *same* directory, named after its writer's
process id, flushes and ``fsync``s it, renames it over the old file with ``os.replace`` (atomic
on POSIX) and ``fsync``s the directory so the rename itself is durable; a failure removes the
temporary file. Temporary files of writers that are gone are swept; a live writer's are kept
(two processes saving one checkpoint). Checkpoints use it, and so does every output a command
writes (reports, summaries, figures, ``budgets.json``): a full disk left a truncated
``budgets.json`` or ``report.md`` that looked like a result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write", "write_atomic"]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: the process exists
        return True
    return True


def _sweep_stale(path: Path) -> None:
    """Remove temporary files that killed writers left behind. A temporary file is named after its
    writer's process id, so a live writer's file (another process saving the same checkpoint) is
    left alone."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid_text = stale.name[len(path.name) + 2:].split(".", 1)[0]
        if pid_text.isdigit() and _writer_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            stale.unlink()


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(file)`` so that a kill at any instant leaves old or new, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> None:
    """:func:`atomic_write` of ``data`` (text as UTF-8)."""
    blob = data.encode("utf-8") if isinstance(data, str) else data
    atomic_write(path, lambda f: f.write(blob))
