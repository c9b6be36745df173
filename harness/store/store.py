"""The :class:`Store`: one artifact per key, built once, verified on every read.

The mechanics live one module each: keys (:mod:`~harness.store.keys`), the manifest
(:mod:`~harness.store.manifest`), the folder with its locks and temporary directories
(:mod:`~harness.store.folder`) and the fsspec URL (:mod:`~harness.store.remote`). This module
puts them together: every write goes through :meth:`Store._once`, the one place where the
fast path, the key's lock and the keep-or-discard step are written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness.files import fsync_dir, writable_dir_problem
from harness.store.errors import StoreError, StoreNotWritableError, not_writable_message
from harness.store.folder import (
    clean_kind,
    keep_or_discard,
    key_lock,
    new_temp_dir,
    place,
    writable_kind_dir,
)
from harness.store.keys import artifact_key, check_kind, default_root, is_url
from harness.store.manifest import (
    META,
    artifact_problem,
    files_problem,
    read_tree,
    write_meta_and_manifest,
)
from harness.store.remote import RemoteArtifacts, default_cache_dir

__all__ = ["Store"]


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
        self._remote: RemoteArtifacts | None = None
        if location is not None and is_url(location):
            self.url = os.fspath(location).rstrip("/")
            self.root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(self.url)
            self._remote = RemoteArtifacts(self.url, self.storage_options)
        else:
            self.root = Path(location).expanduser() if location is not None else default_root()
        self.lock_timeout = lock_timeout

    @property
    def location(self) -> str:
        """The store's URL, or its folder."""
        return self.url if self.url is not None else str(self.root)

    def __repr__(self) -> str:
        return f"Store({self.location!r})"

    # -- keys and paths -------------------------------------------------------------------

    def key(self, kind: str, key_payload: Mapping[str, Any]) -> str:
        """sha256 (hex) of the canonical JSON of ``(kind, payload, FORMAT_VERSION)``."""
        return artifact_key(kind, key_payload)

    def path_for(self, kind: str, key: str) -> Path:
        """Where the artifact ``key`` of ``kind`` lives locally (whether or not it exists).

        For a URL store this is the local cache's copy.
        """
        check_kind(kind)
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
        return self._once(
            kind, key, lambda kind_dir: self._fetch_or_build(kind_dir, kind, key, key_payload, build)
        )

    def export_files(self, path: str | os.PathLike[str]) -> dict[str, bytes]:
        """Every file of the artifact at ``path`` (manifest and meta included), by relative path.

        With :meth:`install_files` this moves a complete artifact between stores, e.g. from
        a cluster worker's scratch store to the driver's.
        """
        path = Path(path)
        problem = artifact_problem(path)
        if problem is not None:
            raise StoreError(f"cannot export {path}: {problem}")
        return read_tree(path)

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
        check_kind(kind)
        problem = files_problem(files, kind, key)
        if problem is not None:
            raise StoreError(f"cannot install {kind}/{key[:12]}: {problem}")
        return self._once(kind, key, lambda kind_dir: self._install(kind_dir, kind, key, files))

    # -- inspection -----------------------------------------------------------------------

    def exists(self, kind: str, key_payload: Mapping[str, Any]) -> bool:
        """Whether a verified artifact for ``(kind, key_payload)`` is present."""
        key = self.key(kind, key_payload)
        path = self.path_for(kind, key)
        if path.is_dir() and self.verify(path):
            return True
        return self._remote is not None and self._remote.fetch(kind, key, repair=False) is not None

    def verify(self, path: str | os.PathLike[str]) -> bool:
        """Whether the artifact at ``path`` matches its manifest (every file, every byte)."""
        return artifact_problem(Path(path)) is None

    def read_meta(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """The artifact's ``meta.json``."""
        with open(Path(path) / META, encoding="utf-8") as fh:
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
        check_kind(kind)
        if self._remote is None:
            return [p.name for p in self.artifacts(kind)]
        return self._remote.keys(kind)

    def check_writable(self) -> None:
        """Raise :class:`StoreNotWritableError` (with how to fix it) unless writes can succeed.

        A folder gets a probe file in its nearest existing parent
        (:func:`harness.files.writable_dir_problem`); a URL a probe object, removed at once.
        Nothing else is created.
        """
        if self._remote is not None:
            self._remote.check_writable()
            return
        problem = writable_dir_problem(self.root)
        if problem is not None:
            raise StoreNotWritableError(not_writable_message(self.location, problem))

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
        kind_dirs = [self.root / k for k in kinds]
        return sum(clean_kind(d) for d in kind_dirs if d.is_dir())

    def lock(self, kind: str, name: str) -> FileLock:
        """A machine-wide lock called ``name`` among ``kind``'s locks, for a unit of work that
        builds several artifacts at once (an ensemble of models); each artifact still goes
        through :meth:`get_or_create`."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a lock name is a plain file name, got {name!r}")
        return key_lock(self._writable_kind_dir(kind), name, self.lock_timeout)

    # -- internals ------------------------------------------------------------------------

    def _writable_kind_dir(self, kind: str) -> Path:
        return writable_kind_dir(self.root, kind, cache_of=self.url)

    def _once(self, kind: str, key: str, make: Callable[[Path], Path]) -> Path:
        """The verified local artifact ``kind``/``key``, else ``make(kind_dir)``'s.

        ``make`` runs under the key's lock, after any corrupt copy and leftover temporaries
        are removed, and returns the artifact directory it placed in ``kind_dir``.
        """
        final = self.path_for(kind, key)
        # Fast path without the lock: a complete artifact is immutable once renamed in.
        if final.is_dir() and self.verify(final):
            return final
        kind_dir = self._writable_kind_dir(kind)
        with key_lock(kind_dir, key, self.lock_timeout):
            if keep_or_discard(final, kind_dir, key, refetch=self._remote is not None):
                return final
            return make(kind_dir)

    def _fetch_or_build(
        self,
        kind_dir: Path,
        kind: str,
        key: str,
        key_payload: Mapping[str, Any],
        build: Callable[[Path], None],
    ) -> Path:
        """Under the key's lock: the URL's committed artifact, else ``build``'s (published)."""
        if self._remote is not None:
            files = self._remote.fetch(kind, key, repair=True)
            if files is not None:
                return place(kind_dir, key, files)
        final = kind_dir / key
        tmp = new_temp_dir(kind_dir, key)
        try:
            build(tmp)
            write_meta_and_manifest(tmp, kind, key, key_payload)
            if self._remote is not None and not self._remote.publish(kind, key, read_tree(tmp)):
                winner = self._remote.fetch(kind, key, repair=False)
                if winner is not None:  # another writer committed first: use theirs
                    shutil.rmtree(tmp, ignore_errors=True)
                    return place(kind_dir, key, winner)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(kind_dir)
        return final

    def _install(self, kind_dir: Path, kind: str, key: str, files: Mapping[str, bytes]) -> Path:
        """Under the key's lock: publish ``files`` (or take the URL's winner) and place them."""
        if self._remote is not None and not self._remote.publish(kind, key, files):
            files = self._remote.fetch(kind, key, repair=False) or files
        return place(kind_dir, key, files)
