"""Content-addressed artifact store: atomic writes, one build per key, verified loads.

An artifact is a directory ``<root>/<kind>/<key>/`` holding the builder's files, a
``meta.json`` (the key payload, library versions, creation time, plus whatever the builder put
in its own ``meta.json``) and a ``manifest.json`` with the sha256 of every other file. The key
is the sha256 of a canonical JSON of ``(kind, payload, FORMAT_VERSION)``, so anything that
changes the payload (config, dataset content hash) changes the key.

Guarantees:

* **Atomic.** The builder writes into a hidden temporary directory in the same folder, which is
  ``os.rename``-d into place only once complete. A killed or interrupted build leaves at most a
  hidden ``.tmp-*`` directory, never a visible artifact; it is removed by the next build of
  that key (or :meth:`Store.clean`).
* **Built once.** A ``filelock.FileLock`` per key serialises builders across processes (and
  pytest-xdist workers): the first one builds, the others wait and then read.
* **Verified.** Every :meth:`Store.get_or_create` checks the manifest; a corrupt or partial
  artifact is rebuilt with a :class:`StoreWarning`.
* **No pickle.** Arrays are written with safetensors (:func:`save_tensors`,
  :func:`load_tensors`), metadata as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.files import atomic_write_text, fsync_dir, fsync_file

__all__ = [
    "FORMAT_VERSION",
    "Store",
    "StoreError",
    "StoreNotWritableError",
    "StoreWarning",
    "canonical_json",
    "default_root",
    "save_tensors",
    "load_tensors",
    "library_versions",
]

#: Bump when the layout of artifacts changes; old artifacts then get new keys and are rebuilt.
FORMAT_VERSION = 1

_MANIFEST = "manifest.json"
_META = "meta.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_LOCKS = ".locks"


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad kind, builder misbehaved)."""


class StoreNotWritableError(PermissionError):
    """The store folder cannot be created or written."""


class StoreWarning(UserWarning):
    """A corrupt or partial artifact was found and is being rebuilt."""


def default_root() -> Path:
    """``$HARNESS_STORE`` if set, else ``.store`` in the working directory.

    Never a path derived from the package's location: an installed copy of the harness
    must not write into site-packages.
    """
    env = os.environ.get("HARNESS_STORE")
    if env:
        return Path(env).expanduser()
    return Path.cwd() / ".store"


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace; tuples become lists, NaN is rejected.

    Two payloads that mean the same thing give the same string, so the same key.
    """
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def library_versions() -> dict[str, str]:
    """Versions of Python and the numerical libraries, recorded in every artifact's meta."""
    versions = {"python": platform.python_version()}
    for name in ("numpy", "torch", "scipy", "sklearn", "safetensors"):
        try:
            module = __import__(name)
        except ImportError:  # pragma: no cover - all are dependencies
            continue
        versions[name] = str(getattr(module, "__version__", "?"))
    try:
        from harness import __version__

        versions["harness"] = __version__
    except ImportError:  # pragma: no cover
        pass
    return versions


class Store:
    """A content-addressed directory of artifacts.

    Parameters
    ----------
    root : str or Path, optional
        Folder of the store. Default: the ``HARNESS_STORE`` environment variable, else
        ``<project root>/.store/``. It is created on the first write.
    lock_timeout : float
        Seconds to wait for another process building the same key (default: forever).

    Examples
    --------
    >>> store = Store("/tmp/my-store")                       # doctest: +SKIP
    >>> path = store.get_or_create("demo", {"n": 3},
    ...                            lambda d: (d / "x.txt").write_text("3"))  # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 lock_timeout: float = -1) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # -- keys and paths -------------------------------------------------------------------

    def key(self, kind: str, key_payload: Mapping[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of ``(kind, payload, FORMAT_VERSION)``."""
        _check_kind(kind)
        text = canonical_json(
            {"kind": kind, "payload": key_payload, "format_version": FORMAT_VERSION}
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def path_for(self, kind: str, key: str) -> Path:
        """Where the artifact ``key`` of ``kind`` lives (whether or not it exists)."""
        _check_kind(kind)
        return self.root / kind / key

    # -- the main entry point ---------------------------------------------------------------

    def get_or_create(
        self,
        kind: str,
        key_payload: Mapping[str, Any],
        build: Callable[[Path], None],
    ) -> Path:
        """Path of the verified artifact for ``(kind, key_payload)``, building it if needed.

        Parameters
        ----------
        kind : str
            Artifact family, a folder name (``"model"``, ``"null"``...).
        key_payload : mapping
            JSON-serialisable description of everything that determines the artifact.
        build : callable
            ``build(tmp_dir)`` writes the artifact's files into ``tmp_dir`` (an empty
            directory). It may write a ``meta.json`` object; the store adds its own fields.
            It is called at most once per key across processes, unless the artifact is later
            found corrupt.

        Returns
        -------
        Path
            The artifact directory. Treat it as read-only.

        Raises
        ------
        StoreNotWritableError
            The store folder cannot be written (set ``HARNESS_STORE`` to a writable folder).
        """
        key = self.key(kind, key_payload)
        final = self.path_for(kind, key)
        # Fast path without the lock: a complete artifact is immutable once renamed in.
        if final.is_dir() and self.verify(final):
            return final
        kind_dir = self._writable_kind_dir(kind)
        lock = FileLock(str(kind_dir / _LOCKS / f"{key}.lock"), timeout=self.lock_timeout)
        with lock:
            if final.is_dir():
                problem = self._problem(final)
                if problem is None:
                    return final
                warnings.warn(
                    f"artifact {final} is corrupt or incomplete ({problem}); rebuilding it",
                    StoreWarning,
                    stacklevel=2,
                )
                self._discard(final, kind_dir, key)
            # Under the lock nobody else builds this key, so its temp dirs are leftovers of
            # killed builders.
            self._remove_temps(kind_dir, key)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=kind_dir))
            try:
                build(tmp)
                self._finalise(tmp, kind, key, key_payload)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(kind_dir)
        return final

    # -- inspection -----------------------------------------------------------------------

    def exists(self, kind: str, key_payload: Mapping[str, Any]) -> bool:
        """Whether a verified artifact for ``(kind, key_payload)`` is present."""
        path = self.path_for(kind, self.key(kind, key_payload))
        return path.is_dir() and self.verify(path)

    def verify(self, path: str | os.PathLike[str]) -> bool:
        """Whether the artifact at ``path`` matches its manifest (every file, every byte)."""
        return self._problem(Path(path)) is None

    def read_meta(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The artifact's ``meta.json``."""
        with open(Path(path) / _META, encoding="utf-8") as fh:
            meta: dict[str, Any] = json.load(fh)
        return meta

    def artifacts(self, kind: str) -> list[Path]:
        """Visible artifact directories of ``kind`` (not verified)."""
        kind_dir = self.root / kind
        if not kind_dir.is_dir():
            return []
        return sorted(p for p in kind_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def clean(self, kind: str | None = None) -> int:
        """Remove leftover temporary directories of killed builders; returns how many.

        A temp dir is only removed when its key's lock can be taken at once, so a build in
        progress in another process is never disturbed.
        """
        if kind is not None:
            kinds = [kind]
        elif self.root.is_dir():
            kinds = [p.name for p in self.root.iterdir() if p.is_dir()]
        else:
            kinds = []
        removed = 0
        for k in kinds:
            kind_dir = self.root / k
            if not kind_dir.is_dir():
                continue
            for tmp in list(kind_dir.iterdir()):
                name = tmp.name
                if not name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                    continue
                key = name.split("-", 2)[1] if name.count("-") >= 2 else ""
                lock = FileLock(str(kind_dir / _LOCKS / f"{key}.lock"), timeout=0)
                try:
                    with lock:
                        shutil.rmtree(tmp, ignore_errors=True)
                        removed += 1
                except TimeoutError:
                    continue
        return removed

    # -- internals ------------------------------------------------------------------------

    def _writable_kind_dir(self, kind: str) -> Path:
        kind_dir = self.root / kind
        try:
            (kind_dir / _LOCKS).mkdir(parents=True, exist_ok=True)
            probe = kind_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreNotWritableError(
                f"the artifact store folder {self.root} is not writable ({exc.strerror or exc}); "
                "set the HARNESS_STORE environment variable to a writable folder, "
                "e.g. HARNESS_STORE=$HOME/.cache/clusterability-store, or pass Store(root=...)"
            ) from exc
        return kind_dir

    def _finalise(self, tmp: Path, kind: str, key: str, key_payload: Mapping[str, Any]) -> None:
        if (tmp / _MANIFEST).exists():
            raise StoreError(f"builders must not write {_MANIFEST}; the store writes it")
        meta: dict[str, Any] = {}
        if (tmp / _META).exists():
            with open(tmp / _META, encoding="utf-8") as fh:
                meta = json.load(fh)
            if not isinstance(meta, dict):
                raise StoreError(f"the builder's {_META} must hold a JSON object")
        meta.update(
            kind=kind,
            key=key,
            key_payload=_plain(key_payload),
            format_version=FORMAT_VERSION,
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            versions=library_versions(),
        )
        atomic_write_text(tmp / _META, _json_text(meta))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {p.relative_to(tmp).as_posix(): _sha256(p) for p in files}
        for p in files:
            fsync_file(p)
        atomic_write_text(
            tmp / _MANIFEST, _json_text({"format_version": FORMAT_VERSION, "files": manifest})
        )

    def _problem(self, path: Path) -> str | None:
        manifest_path = path / _MANIFEST
        if not manifest_path.is_file():
            return "no manifest"
        try:
            with open(manifest_path, encoding="utf-8") as fh:
                manifest = json.load(fh)
        except (OSError, ValueError):
            return "unreadable manifest"
        files: Any = manifest.get("files") if isinstance(manifest, dict) else None
        problem = _manifest_problem(files)
        if problem is not None:
            return problem
        for name, digest in files.items():
            file = path / name
            if not file.is_file():
                return f"missing file {name}"
            if _sha256(file) != digest:
                return f"checksum mismatch in {name}"
        return None

    def _discard(self, final: Path, kind_dir: Path, key: str) -> None:
        # Rename first (atomic) so no reader sees a half-deleted artifact, then delete.
        trash = kind_dir / f"{_TRASH_PREFIX}{key}-{uuid.uuid4().hex}"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_temps(self, kind_dir: Path, key: str) -> None:
        for prefix in (_TMP_PREFIX, _TRASH_PREFIX):
            for stale in kind_dir.glob(f"{prefix}{key}-*"):
                shutil.rmtree(stale, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Array I/O without pickle


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Any]) -> None:
    """Write named torch tensors or numpy arrays to a safetensors file (contiguous copies)."""
    import torch
    from safetensors.torch import save_file

    plain = {
        name: (t if isinstance(t, torch.Tensor) else torch.as_tensor(t)).detach().cpu().contiguous().clone()
        for name, t in tensors.items()
    }
    save_file(plain, str(path))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a safetensors file into a dict of CPU torch tensors (no pickle involved)."""
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


# ----------------------------------------------------------------------------------------------
# Helpers


def _check_kind(kind: str) -> None:
    if not kind or not all(c.isalnum() or c in "_-" for c in kind) or kind.startswith(("-", ".")):
        raise ValueError(
            f"kind must be a simple folder name (letters, digits, '_' or '-'), got {kind!r}"
        )


def _plain(obj: Any, *, finite: bool = True) -> Any:
    """Convert to JSON-able builtins: tuples -> lists, numpy scalars -> Python, Paths -> str.

    With ``finite`` (keys), NaN and infinities are rejected: they would make equal payloads
    compare unequal.
    """
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"key payload keys must be strings, got {k!r}")
            out[k] = _plain(v, finite=finite)
        return out
    if isinstance(obj, (list, tuple)):
        return [_plain(v, finite=finite) for v in obj]
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
        return _plain(item(), finite=finite)
    raise TypeError(f"cannot put {type(obj).__name__} into an artifact key or meta: {obj!r}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_text(obj: Any) -> str:
    """Indented JSON of ``obj`` for meta and manifest files (NaN allowed: metrics may be NaN)."""
    return json.dumps(_plain(obj, finite=False), indent=1, sort_keys=True, allow_nan=True) + "\n"


_HEX = frozenset("0123456789abcdef")


def _manifest_problem(files: Any) -> str | None:
    """What is wrong with a manifest's ``files`` entry, or None.

    The store writes ``{relative POSIX path: sha256 hex}`` for every file, ``meta.json``
    included; anything else (a list, an empty mapping, non-string digests, paths leaving the
    artifact) is corruption, not an artifact with nothing to check.
    """
    if not isinstance(files, dict):
        return "manifest has no mapping of files"
    if _META not in files:
        return f"manifest does not list {_META}"
    for name, digest in files.items():
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):  # "" also catches "/abs" and "a//b"
            return f"manifest lists a path outside the artifact: {name!r}"
        if name == _MANIFEST:
            return "manifest lists itself"
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in _HEX for c in digest)):
            return f"manifest has no sha256 for {name}"
    return None
