"""Closed sets of string options, checked once at the boundary with a message that lists them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

__all__ = ["check_choice"]

T = TypeVar("T")


def check_choice(name: str, value: T, allowed: Iterable[T]) -> T:
    """Return ``value`` if it is one of ``allowed``; ValueError listing them otherwise.

    >>> check_choice("null", "layer", ("layer", "layer_nonzero"))
    'layer'
    >>> check_choice("null", "lyer", ("layer", "layer_nonzero"))
    Traceback (most recent call last):
    ...
    ValueError: null must be one of 'layer', 'layer_nonzero'; got 'lyer'
    """
    options = tuple(allowed)
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value
