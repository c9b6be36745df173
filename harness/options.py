"""Options a user gives, checked once at the boundary with a message that says how to fix them.

:func:`check_choice` checks a closed set of string options (and lists them);
:func:`check_store` checks the artifact store a command line names, before any work.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

__all__ = ["check_choice", "check_store"]

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


def check_store(option: str | None) -> None:
    """ValueError (one line: where it came from, what is wrong, how to fix it) unless the
    artifact store a command names can be written.

    The store is ``option`` (the value of ``--store``), else ``$HARNESS_STORE``; without
    either (the default ``.store`` folder) nothing is checked. A folder is probed with
    :func:`harness.files.writable_dir_problem` (nothing is created), a URL with
    :meth:`harness.store.Store.check_writable` (a probe object, removed at once; a URL without
    credentials or whose bucket does not exist fails here, not after the first training).
    """
    from harness.store import Store, StoreError, StoreNotWritableError, is_url

    if option:
        source, location = "--store", option
    else:
        source, location = "HARNESS_STORE", os.environ.get("HARNESS_STORE", "")
    if not location:
        return
    if is_url(location):
        try:
            Store(location).check_writable()
        except (StoreNotWritableError, StoreError) as exc:
            raise ValueError(f"{source} {location}: {exc}") from None
        return
    from harness.files import writable_dir_problem

    path = Path(os.path.abspath(Path(location).expanduser()))
    problem = writable_dir_problem(path)
    if problem is not None:
        fix = (
            "pass a writable folder for the artifact store"
            if source == "--store"
            else "set HARNESS_STORE to a writable folder (or pass --store DIR)"
        )
        raise ValueError(f"{source} {path} {problem}; {fix}")
