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

One module per part: :mod:`~harness.store.keys` (keys, canonical JSON),
:mod:`~harness.store.manifest` (manifest and meta, verification),
:mod:`~harness.store.folder` (locks, temporary directories, rename into place),
:mod:`~harness.store.remote` (the fsspec URL), :mod:`~harness.store.store` (the
:class:`Store` that puts them together), :mod:`~harness.store.tensors` (safetensors I/O) and
:mod:`~harness.store.errors`.
"""

from __future__ import annotations

from harness.store.errors import StoreError, StoreNotWritableError, StoreWarning
from harness.store.keys import (
    FORMAT_VERSION,
    artifact_key,
    canonical_json,
    default_root,
    is_url,
    library_versions,
)
from harness.store.store import Store
from harness.store.tensors import load_tensors, save_tensors

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
