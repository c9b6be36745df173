"""Files written once, whole: atomic writes, fsync helpers and the natural sort key.

Everything the harness writes (store artifacts, datasets, report tables, figures, run facts)
goes through :func:`atomic_writer` or its two shorthands, so a reader sees the old file or
the new one and never half of one, even if the writer is killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_file",
    "fsync_dir",
    "natural_key",
    "writable_dir_problem",
]


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it to ``path``.

    The temporary file lives in the same directory (same file system, so ``os.replace`` is
    atomic) under a hidden name. If the body raises (KeyboardInterrupt included) the
    temporary file is deleted and ``path`` is left untouched. Parent directories are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the final file the usual permissions instead.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_writer`); returns the path."""
    with atomic_writer(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text (newlines are written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


_NUM_RE = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders digit runs numerically: ``k=2`` before ``k=10``.

    ``re.split`` with a capturing group alternates text and digit runs, so the tuples of two
    strings always compare str with str and int with int.

    >>> sorted(["w10", "w2", "w1"], key=natural_key)
    ['w1', 'w2', 'w10']
    """
    parts = _NUM_RE.split(text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def writable_dir_problem(path: str | os.PathLike[str], *, create: bool = False) -> str | None:
    """Why files cannot be written in folder ``path``, or None when they can.

    The one probe behind every "is this folder writable" check (the store, the data folder,
    the reports folder). Without ``create`` nothing is made: the nearest existing folder gets
    a probe file, removed at once. With ``create`` the folder (and its parents) is created
    first and probed itself. The answer is a phrase that follows the folder's name, such as
    ``"is a file, not a folder"``, ``"cannot be created: /a is not a folder"`` or
    ``"is not writable (cannot create files in /a): Permission denied"``.
    """
    path = Path(os.path.abspath(path))
    existing = path
    try:
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():  # found before mkdir, whose error would not say where
            if existing == path:
                return "is a file, not a folder"
            return f"cannot be created: {existing} is not a folder"
        if create:
            path.mkdir(parents=True, exist_ok=True)
            existing = path
        with tempfile.TemporaryFile(dir=existing, prefix=".harness-probe-"):
            pass
    except OSError as exc:
        where = "" if existing == path else f" (cannot create files in {existing})"
        return f"is not writable{where}: {exc.strerror or exc}"
    return None
