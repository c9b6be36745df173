"""What a claim observed, as ``claims.csv`` writes it, and read back.

A claim's :class:`~harness.claims.model.Outcome` carries the numbers it looked at (a mapping
of names to numbers or lists of numbers). :func:`format_observed` writes them into the
``observed`` column of ``claims.csv`` (``p=[0.01961, 1], z=[-9.947, 3.475]``, four
significant digits); :func:`parse_observed` reads that text back into a mapping, so a
calibration can measure each claim's margins (:class:`harness.claims.model.Measured`) from
the runs it keeps, without running them again.

Imports nothing beyond the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["format_observed", "parse_observed"]


def format_observed(value: Any) -> str:
    """``value`` as the ``observed`` column writes it: floats to 4 significant digits, lists
    in brackets, a mapping as ``name=value, name=value``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_observed(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_observed(v) for v in value) + "]"
    return str(value)


def _split_top(text: str) -> list[str]:
    """``text`` split on the ``", "`` that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _value(text: str) -> Any:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("[") and text.endswith("]"):
        return [_value(part) for part in _split_top(text[1:-1])]
    try:
        return float(text)
    except ValueError:
        return text


def parse_observed(text: str) -> dict[str, Any]:
    """The mapping :func:`format_observed` wrote: numbers as floats (``nan`` included),
    booleans as booleans, lists as lists, anything else as its text. A name may hold ``=`` (``MNIST pruned K=12 layer``);
    its value never does. Text that is not such a mapping gives ``{}``."""
    out: dict[str, Any] = {}
    for part in _split_top(str(text or "")):
        name, sep, value = part.rpartition("=")
        if not sep or not name:
            return {}
        out[name.strip()] = _value(value)
    return out
