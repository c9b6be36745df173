"""What a result row is: builtin values, keyed by the test's canonical node id, study and cell.

Rows, claims and figure stems travel from the tests to the controller as the test report's
``user_properties``, under the keys defined here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CLAIM_KEY",
    "FIGURE_KEY",
    "ROW_KEY",
    "canonical_nodeid",
    "cell_of",
    "study_of",
    "to_builtin",
]

ROW_KEY = "harness_row"
CLAIM_KEY = "harness_claim"
FIGURE_KEY = "harness_figure"


def to_builtin(value: Any, *, where: str = "value") -> Any:
    """Convert a row value to builtin Python types; reject arrays and other objects.

    numpy scalars become ``int``/``float``/``bool``; tuples become lists. Rows must be plain
    data because xdist ships them between processes and the report writers format them.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [to_builtin(v, where=where) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_builtin(v, where=f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(
        f"{where} has type {type(value).__name__}; result rows hold builtin types only "
        "(str, int, float, bool, None, lists and dicts of those). Convert arrays to "
        "summary numbers, or use a result's to_row()."
    )


def canonical_nodeid(nodeid: str) -> str:
    """The node id without xdist's ``@group`` suffix (added under ``--dist loadgroup``).

    Seeds and report keys use this form so that they do not depend on how tests were
    scheduled. Parameter ids in this project never contain ``@``.
    """
    return nodeid.split("@", 1)[0]


def study_of(nodeid: str) -> str:
    """``experiments/test_clustering.py::test_x[...]`` -> ``clustering``."""
    module = nodeid.split("::", 1)[0]
    stem = Path(module).stem
    return stem.removeprefix("test_")


def cell_of(item: Any) -> str:
    """The configuration a test's rows belong to: its function and every parameter but
    ``instance``, e.g. ``test_factor[tag=MNIST, phase=pruned]``.

    Rows of one cell are instances of one configuration (their mean is what the drift check
    compares), so every parameter that tells variants apart (``isolation``, ``bn``, ...)
    is part of it without being listed anywhere.
    """
    params = getattr(getattr(item, "callspec", None), "params", {})
    name = getattr(item, "originalname", None) or str(getattr(item, "name", "")).split("[")[0]
    inner = ", ".join(f"{k}={v}" for k, v in params.items() if k != "instance")
    return f"{name}[{inner}]" if inner else name
