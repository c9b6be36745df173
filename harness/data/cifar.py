"""CIFAR-10 from its official "python version" archive ``cifar-10-python.tar.gz``.

The archive holds six pickled batches (``data_batch_1..5``, ``test_batch``), each a dict with
``b'data'`` (uint8 array, 10000 x 3072, channel-major 3 x 32 x 32) and ``b'labels'`` (list of
ints). Pickle is used *only* because it is the official format, and through a restricted
unpickler that can construct nothing but numpy arrays and dtypes (plus the builtin dicts,
lists, strings and numbers that pickle's opcodes create without a global lookup): a
tampered batch that references any other callable is refused. The archive itself is also
verified by its sha256 before anything in it is read.

The archive is looked for in the data directory, else downloaded from the canonical URL
(internet access needed). When neither works, :class:`DatasetUnavailable` says exactly
which file to put where.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.errors import DatasetUnavailable
from harness.data.storage import atomic_writer

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_SHA256",
    "CIFAR10_SIZE",
    "CIFAR10_URLS",
    "ensure_cifar10_archive",
    "read_cifar10_archive",
    "restricted_loads",
]

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
#: sha256 of the official archive (the value Keras's loader pins, too); 170,498,071 bytes,
#: MD5 c58f30108f718f92721af3b95e74349a as published on the CIFAR page.
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
CIFAR10_SIZE = 170_498_071
CIFAR10_CANONICAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Tried in order when the archive is not in the data directory.
CIFAR10_URLS: tuple[str, ...] = (CIFAR10_CANONICAL_URL,)
HTTP_TIMEOUT = 60.0

_TRAIN_BATCHES = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "cifar-10-batches-py/test_batch"


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    allowed: dict[tuple[str, str], Any] = {}
    # Pickles written by numpy 1.x (and the official Python 2 batches) name numpy.core;
    # numpy >= 2 names numpy._core. Both map to the same harmless constructors.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    return allowed


class _NumpyOnlyUnpickler(pickle.Unpickler):
    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to unpickle {module}.{name}: a CIFAR-10 batch holds only numpy "
                "arrays, lists and dicts; this file is not the official archive's"
            ) from None


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` allowing only numpy arrays/dtypes and builtin containers.

    Python 2 strings are decoded as bytes (``encoding="bytes"``), as the official batches
    need.
    """
    return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _unavailable(path: Path, reasons: Sequence[str]) -> DatasetUnavailable:
    tried = "\n".join(f"  - {r}" for r in reasons)
    return DatasetUnavailable(
        f"CIFAR-10 is not available. Put the official archive {CIFAR10_ARCHIVE} "
        f"({CIFAR10_SIZE:,} bytes, sha256 {CIFAR10_SHA256}) at {path} -- e.g. "
        f"`curl -fL -o {path} {CIFAR10_CANONICAL_URL}` on a machine with internet access -- or "
        f"set HARNESS_DATA_DIR to a directory that holds it.\nTried:\n{tried}"
    )


def ensure_cifar10_archive(
    data_dir: Path,
    *,
    urls: Sequence[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Path of the verified official archive in ``data_dir``, downloading it if possible.

    ``urls`` defaults to :data:`CIFAR10_URLS` (read at call time). A file that fails
    verification is removed (it is never used).

    Raises
    ------
    DatasetUnavailable
        The archive is absent (or invalid) and could not be downloaded.
    """
    say = say or (lambda _msg: None)
    path = data_dir / CIFAR10_ARCHIVE
    reasons = []
    if path.is_file():
        if path.stat().st_size == CIFAR10_SIZE and _sha256_file(path) == CIFAR10_SHA256:
            return path
        path.unlink()
        reasons.append(f"{path} failed sha256 verification and was removed")
    else:
        reasons.append(f"{path} does not exist")
    for url in CIFAR10_URLS if urls is None else urls:
        say(f"cifar10: GET {url}")
        try:
            h = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as response:
                total = int(response.headers.get("Content-Length") or CIFAR10_SIZE)
                done, next_report = 0, 0.1
                with atomic_writer(path) as handle:
                    while block := response.read(1 << 22):
                        h.update(block)
                        handle.write(block)
                        done += len(block)
                        if done / total >= next_report:
                            say(f"  {100 * done / total:.0f}% of {total / 1e6:.0f} MB")
                            next_report += 0.1
                    if h.hexdigest() != CIFAR10_SHA256:
                        # Raising inside the writer discards the temporary file.
                        raise ValueError(f"download from {url} failed sha256 verification")
            return path
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
    raise _unavailable(path, reasons)


def _read_batch(archive: tarfile.TarFile, member: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        handle = archive.extractfile(member)
    except KeyError:
        raise ValueError(f"the archive has no {member}") from None
    if handle is None:
        raise ValueError(f"{member} in the archive is not a regular file")
    batch = restricted_loads(handle.read())
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise ValueError(f"{member} is not a CIFAR-10 batch (no b'data'/b'labels' keys)")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{member}: data has shape {data.shape} {data.dtype}, expected (N, 3072) uint8"
        )
    if len(labels) != len(data) or labels.min(initial=0) < 0 or labels.max(initial=0) > 9:
        raise ValueError(f"{member}: labels do not match the data (or lie outside 0..9)")
    # Rows are channel-major (3 x 32 x 32); the distributed layout is channels last.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10_archive(
    path: Path, *, verify: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read ``cifar-10-python.tar.gz``.

    Parameters
    ----------
    path : Path
    verify : bool
        Check the archive's sha256 first (turn off only for crafted test archives).

    Returns
    -------
    x_train : ndarray of uint8, shape (50000, 32, 32, 3)
    y_train : ndarray of int64, shape (50000,)
    x_test : ndarray of uint8, shape (10000, 32, 32, 3)
    y_test : ndarray of int64, shape (10000,)
    """
    if verify and _sha256_file(path) != CIFAR10_SHA256:
        raise ValueError(f"{path} is not the official {CIFAR10_ARCHIVE} (sha256 mismatch)")
    with tarfile.open(path, mode="r:gz") as archive:
        train = [_read_batch(archive, m) for m in _TRAIN_BATCHES]
        x_test, y_test = _read_batch(archive, _TEST_BATCH)
    x_train = np.ascontiguousarray(np.concatenate([b[0] for b in train]))
    y_train = np.concatenate([b[1] for b in train])
    return x_train, y_train, np.ascontiguousarray(x_test), y_test
