"""Artifact keys: the canonical JSON of ``(kind, payload, FORMAT_VERSION)`` and its sha256.

A key is the same in every store, folder or URL, and on every machine: two payloads that
mean the same thing (a tuple and a list, a numpy scalar and a float) give the same key.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "artifact_key",
    "canonical_json",
    "check_kind",
    "default_root",
    "is_url",
    "json_text",
    "library_versions",
    "plain",
]

#: Bump when the layout of artifacts changes; old artifacts then get new keys and are rebuilt.
FORMAT_VERSION = 1


def default_root() -> Path:
    """``$HARNESS_STORE`` if set, else ``.store`` in the working directory.

    Never a path derived from the package's location: an installed copy of the harness
    must not write into site-packages.
    """
    env = os.environ.get("HARNESS_STORE")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / ".store"


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is an fsspec URL (``scheme://...``) rather than a folder path."""
    text = os.fspath(location)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def check_kind(kind: str) -> None:
    """Raise ValueError unless ``kind`` is a simple folder name (letters, digits, '_', '-')."""
    if not kind or not all(c.isalnum() or c in "_-" for c in kind) or kind.startswith(("-", ".")):
        raise ValueError(
            f"kind must be a simple folder name (letters, digits, '_' or '-'), got {kind!r}"
        )


def artifact_key(kind: str, key_payload: Mapping[str, Any]) -> str:
    """The key of an artifact: sha256 (hex) of the canonical JSON of
    ``(kind, payload, FORMAT_VERSION)``. The same in every store, folder or URL."""
    check_kind(kind)
    text = canonical_json({"kind": kind, "payload": key_payload, "format_version": FORMAT_VERSION})
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; tuples become lists, NaN is rejected.

    Two payloads that mean the same thing give the same string, so the same key.
    """
    return json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def json_text(obj: Any) -> str:
    """Indented JSON of ``obj`` for meta and manifest files (NaN allowed: metrics may be NaN)."""
    return json.dumps(plain(obj, finite=False), indent=1, sort_keys=True, allow_nan=True) + "\n"


def plain(obj: Any, *, finite: bool = True) -> Any:
    """Convert to JSON-able builtins: tuples -> lists, numpy scalars -> Python, Paths -> str.

    With ``finite`` (keys), NaN and infinities are rejected: they would make equal payloads
    compare unequal.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"key payload keys must be strings, got {k!r}")
            out[k] = plain(v, finite=finite)
        return out
    if isinstance(obj, (list, tuple)):
        return [plain(v, finite=finite) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if finite and not math.isfinite(obj):
            raise ValueError(f"key payload values must be finite, got {obj}")
        return float(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return plain(item(), finite=finite)
    raise TypeError(f"cannot put {type(obj).__name__} into an artifact key or meta: {obj!r}")


#: The numerical libraries whose versions every artifact records: module name, distribution.
_LIBRARIES = (
    ("numpy", "numpy"),
    ("torch", "torch"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("safetensors", "safetensors"),
)


def library_versions() -> dict[str, str]:
    """Versions of Python and the numerical libraries, recorded in every artifact's meta.

    A module already imported gives its own ``__version__``; one that is not is looked up in
    the installed distributions' metadata, so that a run that never needed torch does not
    import it (about 2 s) to write its run.json; a module without metadata (a source tree on
    ``PYTHONPATH``) is imported."""
    versions = {"python": platform.python_version()}
    for name, dist in _LIBRARIES:
        if name in sys.modules:
            versions[name] = str(getattr(sys.modules[name], "__version__", "?"))
            continue
        try:
            versions[name] = importlib.metadata.version(dist)
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        try:
            module = importlib.import_module(name)
        except ImportError:  # pragma: no cover - all are dependencies
            continue
        versions[name] = str(getattr(module, "__version__", "?"))
    try:
        from harness import __version__

        versions["harness"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return versions
