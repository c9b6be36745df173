"""An artifact's ``manifest.json`` and ``meta.json``: what they hold and how files are checked.

The manifest is ``{"format_version": FORMAT_VERSION, "files": {relative POSIX path: sha256}}``
and lists every file of the artifact, ``meta.json`` included, but not itself. An artifact is
complete and intact exactly when every listed file is present with its digest.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.files import atomic_write_text, fsync_file
from harness.store.errors import StoreError
from harness.store.keys import FORMAT_VERSION, json_text, library_versions, plain

__all__ = [
    "MANIFEST",
    "META",
    "artifact_problem",
    "files_problem",
    "manifest_problem",
    "read_tree",
    "sha256_file",
    "write_meta_and_manifest",
]

MANIFEST = "manifest.json"
META = "meta.json"

_HEX = frozenset("0123456789abcdef")


def sha256_file(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path``, by relative POSIX path."""
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def manifest_problem(files: Any) -> str | None:
    """What is wrong with a manifest's ``files`` entry, or None.

    The store writes ``{relative POSIX path: sha256 hex}`` for every file, ``meta.json``
    included; anything else (a list, an empty mapping, non-string digests, paths leaving the
    artifact) is corruption, not an artifact with nothing to check.
    """
    if not isinstance(files, dict):
        return "manifest has no mapping of files"
    if META not in files:
        return f"manifest does not list {META}"
    for name, digest in files.items():
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):  # "" also catches "/abs" and "a//b"
            return f"manifest lists a path outside the artifact: {name!r}"
        if name == MANIFEST:
            return "manifest lists itself"
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in _HEX for c in digest)):
            return f"manifest has no sha256 for {name}"
    return None


def artifact_problem(path: Path) -> str | None:
    """What keeps the artifact directory ``path`` from matching its manifest, or None."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return "no manifest"
    try:
        with open(manifest_path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError):
        return "unreadable manifest"
    files: Any = manifest.get("files") if isinstance(manifest, dict) else None
    problem = manifest_problem(files)
    if problem is not None:
        return problem
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            return f"missing file {name}"
        if sha256_file(file) != digest:
            return f"checksum mismatch in {name}"
    return None


def files_problem(files: Mapping[str, bytes], kind: str, key: str) -> str | None:
    """What keeps ``files`` from being a complete artifact of ``kind`` / ``key``, or None."""
    raw = files.get(MANIFEST)
    if raw is None:
        return "no manifest"
    try:
        manifest = json.loads(raw)
    except ValueError:
        return "unreadable manifest"
    listed: Any = manifest.get("files") if isinstance(manifest, dict) else None
    problem = manifest_problem(listed)
    if problem is not None:
        return problem
    extra = sorted(set(files) - set(listed) - {MANIFEST})
    if extra:
        return f"files not in the manifest: {extra}"
    for name, digest in listed.items():
        if name not in files:
            return f"missing file {name}"
        if hashlib.sha256(files[name]).hexdigest() != digest:
            return f"checksum mismatch in {name}"
    try:
        meta = json.loads(files[META])
    except ValueError:
        return f"unreadable {META}"
    if not isinstance(meta, dict) or meta.get("kind") != kind or meta.get("key") != key:
        return f"its {META} describes another artifact"
    return None


def write_meta_and_manifest(
    tmp: Path, kind: str, key: str, key_payload: Mapping[str, Any]
) -> None:
    """Complete a builder's directory ``tmp``: add the store's fields to ``meta.json``, fsync
    every file and write the manifest last.

    Raises
    ------
    StoreError
        The builder wrote a manifest, or a ``meta.json`` that is not a JSON object.
    """
    if (tmp / MANIFEST).exists():
        raise StoreError(f"builders must not write {MANIFEST}; the store writes it")
    meta: dict[str, Any] = {}
    if (tmp / META).exists():
        with open(tmp / META, encoding="utf-8") as fh:
            meta = json.load(fh)
        if not isinstance(meta, dict):
            raise StoreError(f"the builder's {META} must hold a JSON object")
    meta.update(
        kind=kind,
        key=key,
        key_payload=plain(key_payload),
        format_version=FORMAT_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        versions=library_versions(),
    )
    atomic_write_text(tmp / META, json_text(meta))
    files = sorted(p for p in tmp.rglob("*") if p.is_file())
    manifest = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in files}
    for p in files:
        fsync_file(p)
    atomic_write_text(
        tmp / MANIFEST, json_text({"format_version": FORMAT_VERSION, "files": manifest})
    )
