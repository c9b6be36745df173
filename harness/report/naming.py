"""Where report files go and what they are called: one rule, deterministic names."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

__all__ = ["FIGURES_DIR", "SUMMARY_ID", "check_name", "figure_stem", "slug"]

#: Folder of the figures inside a reports folder: ``<reports>/figures/<study>/``.
FIGURES_DIR = "figures"

#: The test id under which a study's summary figures are filed (``summary-<crc32>__<name>``).
SUMMARY_ID = "summary"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


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
        The pytest node id of the test that draws the figure (:data:`SUMMARY_ID` for the
        study's summary figures).
    name : str
        What the figure shows, e.g. ``"null"`` or ``"lesion-accuracy"``.
    """
    check_name(study, "study")
    check_name(name, "figure")
    return Path(reports_dir) / FIGURES_DIR / study / f"{slug(test_id)}__{name}"
