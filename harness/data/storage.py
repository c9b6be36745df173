"""Where data lives on disk, and how it is written there.

Layout of the data directory (``HARNESS_DATA_DIR``, default ``<project root>/.data/``)::

    raw/mnist/train-images-idx3-ubyte      verified IDX files, stored uncompressed so that
    raw/fashion/...                        loading is a read plus a sha256 check
    cifar-10-python.tar.gz                 the official CIFAR-10 archive, if you have it
    derived/<name>__seed<seed>__v<GENERATOR_VERSION>.npz     built datasets
    derived/<name>__v<GENERATOR_VERSION>.npz                 built datasets without randomness

Every file is written through :func:`harness.files.atomic_writer` (a temporary file in the
same directory, moved into place with ``os.replace``), so a reader never sees a half-written
file, and a file that fails verification is never moved into place at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness import files
from harness.data.errors import DataDirNotWritable

__all__ = [
    "ENV_DATA_DIR",
    "atomic_writer",
    "default_data_dir",
    "ensure_writable_dir",
    "resolve_data_dir",
]

ENV_DATA_DIR = "HARNESS_DATA_DIR"


def _project_root() -> Path | None:
    """The checkout this package was imported from (editable install), else None."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def default_data_dir() -> Path:
    """``<project root>/.data`` for a checkout, else ``~/.cache/clusterability-harness``."""
    root = _project_root()
    if root is not None:
        return root / ".data"
    return Path.home() / ".cache" / "clusterability-harness"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the argument, else ``$HARNESS_DATA_DIR``, else the default.

    The directory is not created here; writers call :func:`ensure_writable_dir`.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve()
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser().resolve()
    return default_data_dir().resolve()


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (with parents) and check that files can be created in it
    (:func:`harness.files.writable_dir_problem`: mkdir succeeding does not prove write
    access on read-only mounts or foreign owners).

    Raises
    ------
    DataDirNotWritable
        Naming the directory, why, and how to choose another one.
    """
    problem = files.writable_dir_problem(path, create=True)
    if problem is not None:
        raise DataDirNotWritable(
            f"the data directory {path} {problem}; choose a writable one with the "
            f"environment variable {ENV_DATA_DIR}=/some/dir "
            "(or the data_dir= argument / --data-dir option)"
        )
    return path


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """:func:`harness.files.atomic_writer` into the data directory.

    The folder is checked first, so an unwritable data directory raises
    :class:`~harness.data.errors.DataDirNotWritable` (which says how to choose another one)
    rather than a bare PermissionError.
    """
    ensure_writable_dir(path.parent)
    with files.atomic_writer(path) as handle:
        yield handle
