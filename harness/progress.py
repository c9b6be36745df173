"""Progress bars of long runs: shown on a terminal, silent otherwise.

A bar (tqdm on stderr) shows only where someone watches: not in a pipe or a file, not under
pytest's capture, not inside an xdist worker, and not with ``HARNESS_PROGRESS=0``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from harness.workers import xdist_worker_index

__all__ = ["Progress", "progress_wanted"]


def progress_wanted(enabled: bool | None = None) -> bool:
    """Whether to draw a progress bar: ``enabled`` if given, else only on a terminal.

    Off when stderr is not a terminal (a pipe, a file, pytest's capture), inside an xdist
    worker, and when ``HARNESS_PROGRESS=0``.
    """
    if enabled is not None:
        return bool(enabled)
    if os.environ.get("HARNESS_PROGRESS", "").strip() in {"0", "false", "no", "off"}:
        return False
    return bool(sys.stderr.isatty()) and xdist_worker_index() is None


class Progress:
    """A progress bar (tqdm on stderr) of ``total`` steps that is silent unless wanted.

    ``with Progress(100, "null samples") as bar: bar.update(5)``; see :func:`progress_wanted`
    for when it shows. It shows done / total, the rate and an estimate of the time left.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool | None = None) -> None:
        self._bar: Any = None
        if progress_wanted(enabled) and total > 0:
            import shutil

            from tqdm import tqdm

            # A terminal that reports no size (a fresh pseudo-terminal) would get no bar at all.
            width = shutil.get_terminal_size((0, 0)).columns or 80
            self._bar = tqdm(
                total=total, desc=desc, unit="sample", file=sys.stderr, leave=False, ncols=width
            )

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
