"""``run.json``: what a run records about itself (profile, seed, versions, wall time, ...).

The plugin writes it at the end of a run with :func:`write_run_info`; the page shows it and
:func:`harness.report.drift.compare_runs` compares two runs' with :func:`read_run_info`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.files import atomic_write_text

__all__ = ["RUN_INFO_FILE", "read_run_info", "write_run_info"]

RUN_INFO_FILE = "run.json"


def write_run_info(run_info: Mapping[str, object], reports_dir: str | os.PathLike[str]) -> Path:
    """Write ``run_info`` to ``<reports_dir>/run.json`` (sorted keys, atomic).

    Values that JSON cannot hold are written as their ``str``.
    """
    text = json.dumps(dict(run_info), indent=2, sort_keys=True, default=str) + "\n"
    return atomic_write_text(Path(reports_dir) / RUN_INFO_FILE, text)


def read_run_info(reports_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run information in ``<reports_dir>/run.json``, or ``{}`` if there is none.

    Raises
    ------
    ValueError
        If the file exists but is not a JSON object.
    """
    path = Path(reports_dir) / RUN_INFO_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path} is not valid JSON ({exc}); delete it or rerun the experiments"
        ) from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a {type(data).__name__}, expected a JSON object")
    return data

