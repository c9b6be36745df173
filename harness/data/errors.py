"""Exceptions raised by :mod:`harness.data`.

They subclass built-in exceptions that the CLI (``python -m harness``) already reports as a
one-line error, so a missing dataset never surfaces as a traceback.
"""

from __future__ import annotations


class DataUnavailableError(FileNotFoundError):
    """A dataset's files could not be obtained from any source.

    The message lists every source that was tried, why each failed, and the exact commands
    that would fix it.
    """


class DatasetUnavailable(DataUnavailableError):
    """A dataset needs files this project cannot fetch by itself here (CIFAR-10 offline).

    Test fixtures turn it into ``pytest.skip(str(exc))``; its message says exactly which
    file to put where.
    """


class DataDirNotWritable(PermissionError):
    """The data directory (``HARNESS_DATA_DIR``) cannot be created or written to."""


class SourceFailed(Exception):
    """One source could not provide the requested files (internal; collected into a
    :class:`DataUnavailableError`)."""
