"""The store's folder: per-key locks, hidden temporary directories renamed into place.

Layout of a folder store (also the local cache of a URL store)::

    <root>/<kind>/<key>/                 a complete artifact (files, meta.json, manifest.json)
    <root>/<kind>/.tmp-<key>-<random>/   a build in progress, or left by a killed one
    <root>/<kind>/.trash-<key>-<random>/ a corrupt artifact being deleted
    <root>/<kind>/.locks/<key>.lock      the key's file lock

Only ``os.rename`` of a complete directory makes an artifact visible, so a reader never sees
part of one; everything hidden (``.tmp-``, ``.trash-``) is removed under the key's lock.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from harness.files import fsync_dir, writable_dir_problem
from harness.store.errors import StoreNotWritableError, StoreWarning
from harness.store.manifest import artifact_problem

__all__ = [
    "LOCKS",
    "TMP_PREFIX",
    "TRASH_PREFIX",
    "clean_kind",
    "key_lock",
    "keep_or_discard",
    "new_temp_dir",
    "place",
    "writable_kind_dir",
]

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
LOCKS = ".locks"


def key_lock(kind_dir: Path, name: str, timeout: float) -> FileLock:
    """The machine-wide lock ``name`` (a key) among the locks of ``kind_dir``."""
    return FileLock(str(kind_dir / LOCKS / f"{name}.lock"), timeout=timeout)


def writable_kind_dir(root: Path, kind: str, *, cache_of: str | None = None) -> Path:
    """``root/kind``, created with its locks folder, once both are known to be writable.

    Parameters
    ----------
    cache_of : str, optional
        The URL whose local cache ``root`` is, named in the error.

    Raises
    ------
    StoreNotWritableError
        Naming the folder, why, and how to choose another one.
    """
    kind_dir = root / kind
    folder = kind_dir / LOCKS
    problem = writable_dir_problem(folder, create=True)
    if problem is None:
        folder = kind_dir
        problem = writable_dir_problem(folder)
    if problem is not None:
        where = "" if cache_of is None else f" (the local cache of {cache_of})"
        raise StoreNotWritableError(
            f"the artifact store folder {root}{where} is not usable: {folder} {problem}; "
            "set the HARNESS_STORE environment variable to a writable folder, "
            "e.g. HARNESS_STORE=$HOME/.cache/clusterability-store, or pass Store(root=...)"
            + ("" if cache_of is None else "; set HARNESS_STORE_CACHE for the cache")
        )
    return kind_dir


def keep_or_discard(final: Path, kind_dir: Path, key: str, *, refetch: bool = False) -> bool:
    """Under the key's lock: True if ``final`` is a verified artifact; else remove any
    corrupt copy (with a :class:`StoreWarning`) and leftover temporaries, since nobody else
    builds this key now. ``refetch``: the warning says the artifact may be fetched again."""
    if final.is_dir():
        problem = artifact_problem(final)
        if problem is None:
            return True
        warnings.warn(
            f"artifact {final} is corrupt or incomplete ({problem}); "
            + ("fetching or rebuilding it" if refetch else "rebuilding it"),
            StoreWarning,
            stacklevel=4,  # the caller of Store.get_or_create
        )
        _discard(final, kind_dir, key)
    _remove_temps(kind_dir, key)
    return False


def new_temp_dir(kind_dir: Path, key: str) -> Path:
    """An empty hidden directory in ``kind_dir`` for the files of ``key``."""
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{key}-", dir=kind_dir))


def place(kind_dir: Path, key: str, files: Mapping[str, bytes]) -> Path:
    """Write a complete artifact's files under a temp name and rename it into place."""
    final = kind_dir / key
    tmp = new_temp_dir(kind_dir, key)
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


def clean_kind(kind_dir: Path) -> int:
    """Remove the temporary and trash directories of ``kind_dir`` whose key's lock is free
    at once (so a build in progress is never disturbed); returns how many."""
    removed = 0
    for tmp in list(kind_dir.iterdir()):
        name = tmp.name
        if not name.startswith((TMP_PREFIX, TRASH_PREFIX)):
            continue
        key = name.split("-", 2)[1] if name.count("-") >= 2 else ""
        try:
            with key_lock(kind_dir, key, 0):
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        except TimeoutError:
            continue
    return removed


def _discard(final: Path, kind_dir: Path, key: str) -> None:
    # Rename first (atomic) so no reader sees a half-deleted artifact, then delete.
    trash = kind_dir / f"{TRASH_PREFIX}{key}-{uuid.uuid4().hex}"
    os.rename(final, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _remove_temps(kind_dir: Path, key: str) -> None:
    for prefix in (TMP_PREFIX, TRASH_PREFIX):
        for stale in kind_dir.glob(f"{prefix}{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
