"""Reader (and writer) for the IDX format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type code, ``NN`` the
number of dimensions), then ``NN`` big-endian uint32 dimension sizes, then the elements in
C order, big-endian. Files are often distributed gzipped; :func:`parse_idx` detects gzip by
its magic bytes ``1f 8b`` and decompresses first.

Reference: Y. LeCun, C. Cortes, C. Burges, "The MNIST database of handwritten digits"
(file format section).
"""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["IDXError", "decompress_if_gzip", "encode_idx", "is_gzip", "parse_idx", "read_idx"]

GZIP_MAGIC = b"\x1f\x8b"

# Element type codes of the IDX format; multi-byte types are big-endian on disk.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE = {dt.newbyteorder("="): code for code, dt in _CODE_TO_DTYPE.items()}


class IDXError(ValueError):
    """An IDX file (or gzip stream around it) is truncated, corrupt or of an unexpected shape."""


def is_gzip(data: bytes) -> bool:
    """True when ``data`` starts with the gzip magic bytes ``1f 8b``."""
    return data[:2] == GZIP_MAGIC


def decompress_if_gzip(data: bytes, *, source: str = "<bytes>") -> bytes:
    """Return ``data`` decompressed when it is a gzip stream, else unchanged.

    Raises
    ------
    IDXError
        The stream starts like gzip but is truncated or corrupt.
    """
    if not is_gzip(data):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise IDXError(
            f"{source}: corrupt or truncated gzip stream ({exc}); delete the file and fetch it "
            "again (python -m harness data fetch)"
        ) from exc


def parse_idx(
    data: bytes,
    *,
    source: str = "<bytes>",
    expected_shape: Sequence[int] | None = None,
) -> np.ndarray:
    """Decode IDX bytes (gzipped or not) into an array in native byte order.

    Parameters
    ----------
    data : bytes
        The file's content; gzip is detected by its magic bytes.
    source : str
        Name used in error messages (a path or URL).
    expected_shape : sequence of int, optional
        When given, the decoded dimensions must equal it.

    Returns
    -------
    array : ndarray of shape given by the header
        ``uint8`` data is a read-only view on ``data`` (no copy); other types are converted
        to native byte order.

    Raises
    ------
    IDXError
        Wrong magic number, unknown type code, truncated header or body, trailing bytes,
        or a shape other than ``expected_shape``.
    """
    data = decompress_if_gzip(data, source=source)
    refetch = "delete the file and fetch it again (python -m harness data fetch)"
    if len(data) < 4:
        raise IDXError(f"{source}: truncated IDX file: {len(data)} bytes, the header alone is 4")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise IDXError(
            f"{source}: wrong magic number 0x{magic:08x}: an IDX file starts with two zero "
            "bytes, a type code and the number of dimensions (0x00000803 for MNIST images, "
            "0x00000801 for labels); this is not an IDX file"
        )
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02x} ({dt.name})" for c, dt in _CODE_TO_DTYPE.items())
        raise IDXError(f"{source}: unknown IDX type code 0x{code:02x}; known codes: {known}")
    if ndim == 0:
        raise IDXError(f"{source}: IDX header declares 0 dimensions; at least 1 is required")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(
            f"{source}: truncated IDX header: {ndim} dimensions need {header} bytes, "
            f"got {len(data)}; {refetch}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _CODE_TO_DTYPE[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected_len = header + count * dtype.itemsize
    if len(data) < expected_len:
        raise IDXError(
            f"{source}: truncated IDX file: shape {dims} of {dtype.name} needs {expected_len} "
            f"bytes, got {len(data)}; {refetch}"
        )
    if len(data) > expected_len:
        raise IDXError(
            f"{source}: {len(data) - expected_len} unexpected trailing bytes after the IDX data "
            f"of shape {dims} ({expected_len} bytes expected); {refetch}"
        )
    if expected_shape is not None and tuple(dims) != tuple(expected_shape):
        raise IDXError(
            f"{source}: IDX shape {dims} differs from the expected {tuple(expected_shape)}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    if dtype.itemsize > 1:
        array = array.astype(dtype.newbyteorder("="))
    return array


def read_idx(
    path: str | PathLike[str], *, expected_shape: Sequence[int] | None = None
) -> np.ndarray:
    """Read an IDX file (gzipped or not) from disk; see :func:`parse_idx`."""
    path = Path(path)
    return parse_idx(path.read_bytes(), source=str(path), expected_shape=expected_shape)


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (uncompressed); the inverse of :func:`parse_idx`.

    Used to write test fixtures; supports the six IDX element types.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _DTYPE_TO_CODE:
        raise ValueError(
            f"dtype {array.dtype} has no IDX type code; use one of "
            f"{sorted(dt.name for dt in _DTYPE_TO_CODE)}"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    code = _DTYPE_TO_CODE[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body = np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    return header + body
