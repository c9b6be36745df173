"""The store behind an fsspec URL: content-addressed blobs, committed by their manifest.

Object stores have no rename and no locks, so an artifact is laid out as::

    <url>/<kind>/<key>/blobs/<sha256>     each file's bytes (a single PUT: never half-written)
    <url>/<kind>/<key>/manifest.json      {relative path: sha256}; written last, exclusively

A reader looks only at committed manifests and checks every blob it reads against it. The
manifest is created exclusively (``If-None-Match`` on S3, a hard link on ``file://``), so of
two writers of a key one wins and the other reuses its artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.files import atomic_write_bytes, fsync_dir
from harness.store.errors import (
    StoreError,
    StoreNotWritableError,
    StoreWarning,
    not_writable_message,
)
from harness.store.keys import check_kind
from harness.store.manifest import MANIFEST, manifest_problem

__all__ = ["BLOBS", "RemoteArtifacts", "default_cache_dir"]

BLOBS = "blobs"


class _Corrupt(Exception):
    """A committed remote artifact does not match its manifest."""


def default_cache_dir(url: str) -> Path:
    """Local cache folder of the URL store ``url``: ``$HARNESS_STORE_CACHE`` or ~/.cache."""
    base = os.environ.get("HARNESS_STORE_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "clusterability-harness"
    return root / "store-cache" / hashlib.sha256(url.encode()).hexdigest()[:16]


class RemoteArtifacts:
    """The artifacts committed under ``url``, read and written through fsspec.

    Parameters
    ----------
    url : str
        ``s3://bucket/prefix``, ``file:///shared/store``... (no trailing slash).
    storage_options : mapping
        Keyword arguments of the URL's fsspec file system.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any]) -> None:
        self.url = url
        self.storage_options = storage_options
        self._fs_and_base: tuple[Any, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # The fsspec file system is rebuilt where this is unpickled (a Ray worker).
        return {**self.__dict__, "_fs_and_base": None}

    def fs(self) -> tuple[Any, str]:
        """The URL's fsspec file system and the base path in it (built once).

        Raises
        ------
        StoreError
            fsspec, or the package of the URL's protocol, is missing, or the URL is unknown.
        """
        if self._fs_and_base is None:
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

    def _dir(self, kind: str, key: str) -> str:
        return f"{self.fs()[1]}/{kind}/{key}"

    def fetch(self, kind: str, key: str, *, repair: bool) -> dict[str, bytes] | None:
        """The committed artifact's files, each checked against the manifest; None if the
        key is not committed. A corrupt one gives None too, and with ``repair`` a
        :class:`StoreWarning` and its manifest is withdrawn so that it gets rebuilt."""
        fs, _ = self.fs()
        rdir = self._dir(kind, key)
        raw = _cat(fs, f"{rdir}/{MANIFEST}")
        if raw is None:
            return None
        try:
            return _checked_files(fs, rdir, raw)
        except _Corrupt as exc:
            if repair:
                warnings.warn(
                    f"artifact {self.url}/{kind}/{key} is corrupt or incomplete ({exc}); "
                    "rebuilding it",
                    StoreWarning,
                    stacklevel=6,  # the caller of Store.get_or_create
                )
                try:
                    fs.rm_file(f"{rdir}/{MANIFEST}")
                except FileNotFoundError:
                    pass
            return None

    def publish(self, kind: str, key: str, files: Mapping[str, bytes]) -> bool:
        """Upload blobs, then commit the manifest; False if another writer committed first."""
        fs, _ = self.fs()
        rdir = self._dir(kind, key)
        listed = json.loads(files[MANIFEST])["files"]
        for name, digest in sorted(listed.items()):
            # Content-addressed: rewriting a blob another writer also wrote is harmless.
            _put_atomic(fs, f"{rdir}/{BLOBS}/{digest}", files[name])
        return _commit(fs, f"{rdir}/{MANIFEST}", files[MANIFEST])

    def keys(self, kind: str) -> list[str]:
        """Keys of the committed artifacts of ``kind``, sorted; not verified."""
        check_kind(kind)
        fs, base = self.fs()
        try:
            entries = fs.ls(f"{base}/{kind}", detail=False, refresh=True)
        except FileNotFoundError:
            return []
        keys = []
        for entry in entries:
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            if name.startswith(".") or not name:
                continue
            if _cat(fs, f"{base}/{kind}/{name}/{MANIFEST}") is not None:
                keys.append(name)
        return sorted(keys)

    def check_writable(self) -> None:
        """Write and remove a probe object.

        Raises
        ------
        StoreNotWritableError
            On any backend error, saying what to check.
        """
        fs, base = self.fs()
        probe = f"{base}/.probe-{uuid.uuid4().hex}"
        try:
            _put_atomic(fs, probe, b"")
            fs.rm_file(probe)
        except Exception as exc:  # any backend error means "not usable"
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise StoreNotWritableError(not_writable_message(self.url, detail)) from exc


def _checked_files(fs: Any, rdir: str, raw: bytes) -> dict[str, bytes]:
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise _Corrupt("unreadable manifest") from None
    files: Any = manifest.get("files") if isinstance(manifest, dict) else None
    problem = manifest_problem(files)
    if problem is not None:
        raise _Corrupt(problem)
    out: dict[str, bytes] = {}
    for name, digest in files.items():
        data = _cat(fs, f"{rdir}/{BLOBS}/{digest}")
        if data is None:
            raise _Corrupt(f"missing file {name}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise _Corrupt(f"checksum mismatch in {name}")
        out[name] = data
    out[MANIFEST] = raw
    return out


def _cat(fs: Any, path: str) -> bytes | None:
    """Bytes of ``path``, or None if it does not exist (a GET, not a cached listing)."""
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def _put_atomic(fs: Any, path: str, data: bytes) -> None:
    """Write one object so that no reader sees part of it."""
    if _is_local(fs):  # a file: temp + rename (an object store's PUT is atomic)
        atomic_write_bytes(path, data)
    else:
        fs.pipe_file(path, data)


def _commit(fs: Any, path: str, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists (atomically); True if created."""
    if _is_local(fs):
        # A hard link of a complete temp file: exclusive (fails if the name exists) and
        # atomic (readers see no manifest or all of it).
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{MANIFEST}.{uuid.uuid4().hex}.tmp")
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
