"""Atomic file writes and the deterministic naming of report files."""

from __future__ import annotations

import os
import re
import tempfile
import zlib
from pathlib import Path

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "check_name",
    "figure_stem",
    "natural_key",
    "slug",
]

FIGURES_DIR = "figures"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same directory (same file system, so the final
    ``os.replace`` is atomic), are flushed and fsync'ed, then renamed over ``path``. Parent
    directories are created. The temporary file is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600 files; report files are ordinary documents. (Reading the
        # umask would mean briefly changing it for the whole process, so use 0644.)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text (newlines are written as given)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_name(name: str, what: str = "study") -> str:
    """Validate a name used as a file name (a study, a figure name).

    Raises
    ------
    ValueError
        If ``name`` is empty or contains characters other than letters, digits and ``_.+-``
        (or starts with a punctuation character), which would make unsafe or surprising paths.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} cannot be used as a file name: use letters, digits and "
            "'_', '.', '+', '-' only, starting with a letter or digit (e.g. 'clustering')"
        )
    return name


def slug(text: str, *, max_len: int = 80) -> str:
    """A file-name-safe, deterministic rendering of ``text`` (e.g. a pytest node id).

    Runs of unsafe characters become ``-``; the module path of a node id is dropped
    (``experiments/test_x.py::test_y[a-b]`` -> ``test_y-a-b``). A crc32 of the full text is
    appended so that distinct ids that look alike after cleaning never collide.
    """
    tail = text.split("::", 1)[1] if "::" in text else text
    clean = re.sub(r"[^A-Za-z0-9_.+]+", "-", tail).strip("-.") or "x"
    return f"{clean[:max_len]}-{zlib.crc32(text.encode('utf-8')):08x}"


def figure_stem(reports_dir: str | os.PathLike[str], study: str, test_id: str, name: str) -> Path:
    """Path stem (no extension) of a figure, following the report's naming convention.

    Figures live in ``<reports_dir>/figures/<study>/<slug(test_id)>__<name>.<ext>``;
    :func:`harness.report.build_index` shows every PNG (or SVG) found there in the section of
    ``<study>``, captioned with ``<name>``. The same arguments always give the same path.

    Parameters
    ----------
    reports_dir : path
        The reports directory (``reports/``).
    study : str
        Study (experiment module) name, e.g. ``"clustering"``.
    test_id : str
        The pytest node id of the test that draws the figure.
    name : str
        What the figure shows, e.g. ``"null"`` or ``"lesion-accuracy"``.
    """
    check_name(study, "study")
    check_name(name, "figure")
    return Path(reports_dir) / FIGURES_DIR / study / f"{slug(test_id)}__{name}"


_NUM_RE = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders digit runs numerically: ``k=2`` before ``k=10``.

    ``re.split`` with a capturing group alternates text and digit runs, so the tuples of two
    strings always compare str with str and int with int.
    """
    parts = _NUM_RE.split(text)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
