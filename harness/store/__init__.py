"""Content-addressed artifact store: atomic writes, one build per key, verified loads.

An artifact is a directory ``<root>/<kind>/<key>/`` holding the builder's files, a
``meta.json`` (the key payload, library versions, creation time, plus whatever the builder put
in its own ``meta.json``) and a ``manifest.json`` with the sha256 of every other file. The key
is the sha256 of a canonical JSON of ``(kind, payload, FORMAT_VERSION)``, so anything that
changes the payload (config, dataset content hash) changes the key.

The store lives in a folder (a local disk or a shared file system) or behind an fsspec URL
(``file:///shared/store``, ``s3://bucket/prefix``, ``gs://bucket/prefix``, ...), so that the
machines of a cluster can share it.

Guarantees, in a folder:

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

Behind a URL, object stores have no rename and no locks, so an artifact is published as
content-addressed blobs and committed by its manifest, written last:

``<url>/<kind>/<key>/blobs/<sha256>``
    Each file's bytes, named by their sha256 (a single PUT each: never seen half-written).
``<url>/<kind>/<key>/manifest.json``
    ``{relative path: sha256}``; its presence is what makes the artifact visible.

* **Nothing half-written is visible.** A reader looks only at committed manifests and checks
  every blob it reads against it; blobs without a manifest are invisible leftovers.
* **One writer wins.** The manifest is written with an exclusive create (``If-None-Match``
  on S3, a hard link on ``file://``); a writer that loses reuses the winner's artifact, which
  is equal in everything but its creation time (builds are pure functions of their key).
* **Built once per machine.** A file lock in the local cache serialises the builders of one
  machine; builders on different machines may both build (the first to commit wins). A
  cluster avoids that by scheduling each artifact once (:mod:`harness.executors`).
* **Local copies.** :meth:`Store.get_or_create` returns a local directory: artifacts are
  downloaded into a verified local cache (``cache_dir``), itself a folder store.
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
    "artifact_key",
    "canonical_json",
    "default_root",
    "is_url",
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
_BLOBS = "blobs"


class StoreError(RuntimeError):
    """The store cannot do what was asked (bad kind, builder misbehaved)."""


class StoreNotWritableError(PermissionError):
    """The store folder cannot be created or written."""


class StoreWarning(UserWarning):
    """A corrupt or partial artifact was found and is being rebuilt."""


class _Corrupt(Exception):
    """A committed remote artifact does not match its manifest (internal)."""


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


def artifact_key(kind: str, key_payload: Mapping[str, Any]) -> str:
    """The key of an artifact: sha256 (hex) of the canonical JSON of
    ``(kind, payload, FORMAT_VERSION)``. The same in every store, folder or URL."""
    _check_kind(kind)
    text = canonical_json({"kind": kind, "payload": key_payload, "format_version": FORMAT_VERSION})
    return hashlib.sha256(text.encode()).hexdigest()


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


def _default_cache(url: str) -> Path:
    """Local cache folder of the URL store ``url``: ``$HARNESS_STORE_CACHE`` or ~/.cache."""
    base = os.environ.get("HARNESS_STORE_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "clusterability-harness"
    return root / "store-cache" / hashlib.sha256(url.encode()).hexdigest()[:16]


class Store:
    """A content-addressed store of artifacts, in a folder or behind an fsspec URL.

    Parameters
    ----------
    root : str or Path, optional
        A folder (local or on a shared file system), or an fsspec URL such as
        ``s3://bucket/prefix`` or ``file:///shared/store``. Default: the ``HARNESS_STORE``
        environment variable, else ``.store/`` in the working directory. A folder is created
        on the first write.
    lock_timeout : float
        Seconds to wait for another process building the same key (default: forever).
    storage_options : mapping, optional
        Keyword arguments of the URL's fsspec file system (``endpoint_url``, ``key``...).
        fsspec also reads them from ``FSSPEC_<PROTOCOL>_<NAME>`` environment variables, which
        worker processes inherit.
    cache_dir : str or Path, optional
        For a URL: the local folder store that holds verified copies of the artifacts read
        (default ``$HARNESS_STORE_CACHE`` or ``~/.cache/clusterability-harness``, one
        sub-folder per URL). Ignored for a folder.

    Examples
    --------
    >>> store = Store("/tmp/my-store")                       # doctest: +SKIP
    >>> path = store.get_or_create("demo", {"n": 3},
    ...                            lambda d: (d / "x.txt").write_text("3"))  # doctest: +SKIP
    >>> Store("s3://bucket/store").get_or_create(...)          # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = -1,
        storage_options: Mapping[str, Any] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        location = root if root is not None else (os.environ.get("HARNESS_STORE") or None)
        self.url: str | None = None
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        if location is not None and is_url(location):
            self.url = os.fspath(location).rstrip("/")
            self.root = Path(cache_dir).expanduser() if cache_dir else _default_cache(self.url)
        else:
            self.root = Path(location).expanduser() if location is not None else default_root()
        self.lock_timeout = lock_timeout
        self._fs_and_base: tuple[Any, str] | None = None

    @property
    def location(self) -> str:
        """The store's URL, or its folder."""
        return self.url if self.url is not None else str(self.root)

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    def __getstate__(self) -> dict[str, Any]:
        # The fsspec file system is rebuilt where the store is unpickled (a Ray worker).
        return {**self.__dict__, "_fs_and_base": None}

    # -- keys and paths -------------------------------------------------------------------

    def key(self, kind: str, key_payload: Mapping[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of ``(kind, payload, FORMAT_VERSION)``."""
        return artifact_key(kind, key_payload)

    def path_for(self, kind: str, key: str) -> Path:
        """Where the artifact ``key`` of ``kind`` lives locally (whether or not it exists).

        For a URL store this is the local cache's copy.
        """
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
            It is called at most once per key across the processes of a machine (for a URL
            store: unless another machine commits the key first), unless the artifact is
            later found corrupt.

        Returns
        -------
        Path
            The artifact directory (for a URL store, its verified local copy). Treat it as
            read-only.

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
        with self._lock(kind_dir, key):
            if self._keep_or_discard(final, kind_dir, key):
                return final
            if self.url is not None:
                files = self._fetch(kind, key, repair=True)
                if files is not None:
                    return self._place(kind_dir, key, files)
            tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=kind_dir))
            try:
                build(tmp)
                self._finalise(tmp, kind, key, key_payload)
                if self.url is not None and not self._publish(kind, key, _read_tree(tmp)):
                    winner = self._fetch(kind, key, repair=False)
                    if winner is not None:  # another writer committed first: use theirs
                        shutil.rmtree(tmp, ignore_errors=True)
                        return self._place(kind_dir, key, winner)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(kind_dir)
        return final

    def export_files(self, path: str | os.PathLike[str]) -> dict[str, bytes]:
        """Every file of the artifact at ``path`` (manifest and meta included), by relative path.

        With :meth:`install_files` this moves a complete artifact between stores, e.g. from
        a cluster worker's scratch store to the driver's.
        """
        path = Path(path)
        problem = self._problem(path)
        if problem is not None:
            raise StoreError(f"cannot export {path}: {problem}")
        return _read_tree(path)

    def install_files(self, kind: str, key: str, files: Mapping[str, bytes]) -> Path:
        """Put a complete artifact (as from :meth:`export_files`) into this store.

        The files are checked against their manifest and their ``meta.json`` against
        ``kind`` and ``key`` first. If a verified artifact of that key is already present it
        is kept and the files are dropped (one writer wins; builds are pure, so both are the
        same result).

        Returns
        -------
        Path
            The local artifact directory.

        Raises
        ------
        StoreError
            The files are not a complete artifact of ``kind`` / ``key``.
        """
        _check_kind(kind)
        problem = _files_problem(files, kind, key)
        if problem is not None:
            raise StoreError(f"cannot install {kind}/{key[:12]}: {problem}")
        final = self.path_for(kind, key)
        if final.is_dir() and self.verify(final):
            return final
        kind_dir = self._writable_kind_dir(kind)
        with self._lock(kind_dir, key):
            if self._keep_or_discard(final, kind_dir, key):
                return final
            if self.url is not None and not self._publish(kind, key, files):
                files = self._fetch(kind, key, repair=False) or files
            return self._place(kind_dir, key, files)

    # -- inspection -----------------------------------------------------------------------

    def exists(self, kind: str, key_payload: Mapping[str, Any]) -> bool:
        """Whether a verified artifact for ``(kind, key_payload)`` is present."""
        key = self.key(kind, key_payload)
        path = self.path_for(kind, key)
        if path.is_dir() and self.verify(path):
            return True
        return self.url is not None and self._fetch(kind, key, repair=False) is not None

    def verify(self, path: str | os.PathLike[str]) -> bool:
        """Whether the artifact at ``path`` matches its manifest (every file, every byte)."""
        return self._problem(Path(path)) is None

    def read_meta(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The artifact's ``meta.json``."""
        with open(Path(path) / _META, encoding="utf-8") as fh:
            meta: dict[str, Any] = json.load(fh)
        return meta

    def artifacts(self, kind: str) -> list[Path]:
        """Visible local artifact directories of ``kind`` (not verified).

        For a URL store these are the local cache's copies; :meth:`keys` lists the store's.
        """
        kind_dir = self.root / kind
        if not kind_dir.is_dir():
            return []
        return sorted(p for p in kind_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    def keys(self, kind: str) -> list[str]:
        """Keys of the visible (committed) artifacts of ``kind``, sorted; not verified."""
        _check_kind(kind)
        if self.url is None:
            return [p.name for p in self.artifacts(kind)]
        fs, base = self._fs()
        try:
            entries = fs.ls(f"{base}/{kind}", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        keys = []
        for entry in entries:
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(".") or not name:
                continue
            if _cat(fs, f"{base}/{kind}/{name}/{_MANIFEST}") is not None:
                keys.append(name)
        return sorted(keys)

    def check_writable(self) -> None:
        """Raise :class:`StoreNotWritableError` (with how to fix it) unless writes can succeed.

        A folder gets a probe file in its nearest existing parent; a URL a probe object,
        removed at once. Nothing else is created.
        """
        if self.url is None:
            existing = self.root
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            try:
                if not existing.is_dir():
                    raise NotADirectoryError(f"{existing} is not a folder")
                with tempfile.TemporaryFile(dir=existing, prefix=".harness-probe-"):
                    pass
            except OSError as exc:
                raise StoreNotWritableError(_not_writable(self.location, exc)) from exc
            return
        fs, base = self._fs()
        probe = f"{base}/.probe-{uuid.uuid4().hex}"
        try:
            self._put_atomic(fs, probe, b"")
            fs.rm_file(probe)
        except Exception as exc:  # any backend error means "not usable"
            raise StoreNotWritableError(_not_writable(self.location, exc)) from exc

    def clean(self, kind: str | None = None) -> int:
        """Remove leftover temporary directories of killed builders; returns how many.

        A temp dir is only removed when its key's lock can be taken at once, so a build in
        progress in another process is never disturbed. For a URL store this cleans the
        local cache; uncommitted blobs on the URL are invisible and left alone.
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

    def lock(self, kind: str, name: str) -> FileLock:
        """A machine-wide lock called ``name`` among ``kind``'s locks, for a unit of work that
        builds several artifacts at once (an ensemble of models); each artifact still goes
        through :meth:`get_or_create`."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a lock name is a plain file name, got {name!r}")
        return self._lock(self._writable_kind_dir(kind), name)

    # -- internals: the local folder ------------------------------------------------------

    def _lock(self, kind_dir: Path, key: str) -> FileLock:
        return FileLock(str(kind_dir / _LOCKS / f"{key}.lock"), timeout=self.lock_timeout)

    def _keep_or_discard(self, final: Path, kind_dir: Path, key: str) -> bool:
        """Under the key's lock: True if ``final`` is a verified artifact; else remove any
        corrupt copy and leftover temporaries (nobody else builds this key now)."""
        if final.is_dir():
            problem = self._problem(final)
            if problem is None:
                return True
            warnings.warn(
                f"artifact {final} is corrupt or incomplete ({problem}); "
                + ("rebuilding it" if self.url is None else "fetching or rebuilding it"),
                StoreWarning,
                stacklevel=3,
            )
            self._discard(final, kind_dir, key)
        self._remove_temps(kind_dir, key)
        return False

    def _place(self, kind_dir: Path, key: str, files: Mapping[str, bytes]) -> Path:
        """Write a complete artifact's files under a temp name and rename it into place."""
        final = kind_dir / key
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{key}-", dir=kind_dir))
        try:
            for name, data in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(kind_dir)
        return final

    def _writable_kind_dir(self, kind: str) -> Path:
        kind_dir = self.root / kind
        try:
            (kind_dir / _LOCKS).mkdir(parents=True, exist_ok=True)
            probe = kind_dir / f".probe-{uuid.uuid4().hex}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            where = "" if self.url is None else f" (the local cache of {self.url})"
            raise StoreNotWritableError(
                f"the artifact store folder {self.root}{where} is not writable "
                f"({exc.strerror or exc}); "
                "set the HARNESS_STORE environment variable to a writable folder, "
                "e.g. HARNESS_STORE=$HOME/.cache/clusterability-store, or pass Store(root=...)"
                + ("" if self.url is None else "; set HARNESS_STORE_CACHE for the cache")
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

    # -- internals: the URL ---------------------------------------------------------------

    def _fs(self) -> tuple[Any, str]:
        """The URL's fsspec file system and the base path in it (built once)."""
        if self._fs_and_base is None:
            assert self.url is not None
            try:
                from fsspec.core import url_to_fs
            except ImportError as exc:  # pragma: no cover - fsspec comes with torch
                raise StoreError(
                    f"a store URL ({self.url}) needs fsspec: pip install fsspec"
                ) from exc
            try:
                fs, base = url_to_fs(self.url, **self.storage_options)
            except ImportError as exc:
                raise StoreError(
                    f"the store URL {self.url} needs a file-system package that is not "
                    f"installed ({exc}); for s3:// install s3fs, e.g. "
                    "pip install 'clusterability-harness[ray]'"
                ) from exc
            except ValueError as exc:  # fsspec: "Protocol not known"
                raise StoreError(
                    f"the store URL {self.url} is not one fsspec knows ({exc}); pass a folder "
                    "or a URL such as s3://bucket/prefix, gs://bucket/prefix, file:///path"
                ) from exc
            self._fs_and_base = (fs, str(base).rstrip("/"))
        return self._fs_and_base

    def _remote_dir(self, kind: str, key: str) -> str:
        return f"{self._fs()[1]}/{kind}/{key}"

    def _fetch(self, kind: str, key: str, *, repair: bool) -> dict[str, bytes] | None:
        """The committed artifact's files, each checked against the manifest; None if the
        key is not committed. A corrupt one gives None too, and with ``repair`` a
        :class:`StoreWarning` and its manifest is withdrawn so that it gets rebuilt."""
        fs, _ = self._fs()
        rdir = self._remote_dir(kind, key)
        raw = _cat(fs, f"{rdir}/{_MANIFEST}")
        if raw is None:
            return None
        try:
            return self._fetch_files(fs, rdir, raw)
        except _Corrupt as exc:
            if repair:
                warnings.warn(
                    f"artifact {self.url}/{kind}/{key} is corrupt or incomplete ({exc}); "
                    "rebuilding it",
                    StoreWarning,
                    stacklevel=3,
                )
                try:
                    fs.rm_file(f"{rdir}/{_MANIFEST}")
                except FileNotFoundError:
                    pass
            return None

    @staticmethod
    def _fetch_files(fs: Any, rdir: str, raw: bytes) -> dict[str, bytes]:
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise _Corrupt("unreadable manifest") from None
        files: Any = manifest.get("files") if isinstance(manifest, dict) else None
        problem = _manifest_problem(files)
        if problem is not None:
            raise _Corrupt(problem)
        out: dict[str, bytes] = {}
        for name, digest in files.items():
            data = _cat(fs, f"{rdir}/{_BLOBS}/{digest}")
            if data is None:
                raise _Corrupt(f"missing file {name}")
            if hashlib.sha256(data).hexdigest() != digest:
                raise _Corrupt(f"checksum mismatch in {name}")
            out[name] = data
        out[_MANIFEST] = raw
        return out

    def _publish(self, kind: str, key: str, files: Mapping[str, bytes]) -> bool:
        """Upload blobs, then commit the manifest; False if another writer committed first."""
        fs, _ = self._fs()
        rdir = self._remote_dir(kind, key)
        listed = json.loads(files[_MANIFEST])["files"]
        for name, digest in sorted(listed.items()):
            # Content-addressed: rewriting a blob another writer also wrote is harmless.
            self._put_atomic(fs, f"{rdir}/{_BLOBS}/{digest}", files[name])
        return self._commit(fs, f"{rdir}/{_MANIFEST}", files[_MANIFEST])

    @staticmethod
    def _is_local(fs: Any) -> bool:
        protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
        return "file" in protocol or "local" in protocol

    def _put_atomic(self, fs: Any, path: str, data: bytes) -> None:
        """Write one object so that no reader sees part of it."""
        if self._is_local(fs):  # a file: temp + rename (an object store's PUT is atomic)
            from harness.files import atomic_write_bytes

            atomic_write_bytes(path, data)
        else:
            fs.pipe_file(path, data)

    def _commit(self, fs: Any, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists (atomically); True if created."""
        if self._is_local(fs):
            # A hard link of a complete temp file: exclusive (fails if the name exists) and
            # atomic (readers see no manifest or all of it).
            parent = os.path.dirname(path)
            os.makedirs(parent, exist_ok=True)
            tmp = os.path.join(parent, f".{_MANIFEST}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
            fsync_dir(parent)
            return True
        try:
            fs.pipe_file(path, data, mode="create")  # S3: If-None-Match: *
            return True
        except FileExistsError:
            return False
        except OSError:
            # s3fs reports a failed If-None-Match (412) as a generic OSError.
            if _cat(fs, path) is not None:
                return False
            raise


def _read_tree(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _cat(fs: Any, path: str) -> bytes | None:
    """Bytes of ``path``, or None if it does not exist (a GET, not a cached listing)."""
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _files_problem(files: Mapping[str, bytes], kind: str, key: str) -> str | None:
    """What keeps ``files`` from being a complete artifact of ``kind`` / ``key``, or None."""
    raw = files.get(_MANIFEST)
    if raw is None:
        return "no manifest"
    try:
        manifest = json.loads(raw)
    except ValueError:
        return "unreadable manifest"
    listed: Any = manifest.get("files") if isinstance(manifest, dict) else None
    problem = _manifest_problem(listed)
    if problem is not None:
        return problem
    extra = sorted(set(files) - set(listed) - {_MANIFEST})
    if extra:
        return f"files not in the manifest: {extra}"
    for name, digest in listed.items():
        if name not in files:
            return f"missing file {name}"
        if hashlib.sha256(files[name]).hexdigest() != digest:
            return f"checksum mismatch in {name}"
    try:
        meta = json.loads(files[_META])
    except ValueError:
        return f"unreadable {_META}"
    if not isinstance(meta, dict) or meta.get("kind") != kind or meta.get("key") != key:
        return f"its {_META} describes another artifact"
    return None


def _not_writable(location: str, exc: BaseException) -> str:
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if is_url(location):
        return (
            f"the artifact store {location} cannot be written ({detail}); check the URL, "
            "that its bucket exists and the credentials (e.g. AWS_ACCESS_KEY_ID, "
            "AWS_ENDPOINT_URL), or pass a writable folder"
        )
    return (
        f"the artifact store folder {location} is not writable ({detail}); set the "
        "HARNESS_STORE environment variable to a writable folder, e.g. "
        "HARNESS_STORE=$HOME/.cache/clusterability-store, or pass --store DIR"
    )


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
