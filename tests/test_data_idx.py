"""The IDX reader on crafted good and corrupt bytes, gzipped and raw."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from harness.data.idx import IDXError, decompress_if_gzip, encode_idx, parse_idx, read_idx


def _images() -> np.ndarray:
    return np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_roundtrip_uint8(compress: bool) -> None:
    data = encode_idx(_images())
    assert data[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", data[4:16]) == (2, 3, 4)
    if compress:
        data = gzip.compress(data)
    out = parse_idx(data, expected_shape=(2, 3, 4))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, _images())


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_roundtrip_multibyte_types_are_big_endian_on_disk(dtype: str) -> None:
    arr = (np.arange(6) - 3).astype(dtype).reshape(3, 2)
    data = encode_idx(arr)
    body = data[4 + 8 :]
    assert body == arr.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    out = parse_idx(data)
    assert out.dtype == np.dtype(dtype)  # native byte order after reading
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_labels_1d(tmp_path) -> None:
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(labels)))
    np.testing.assert_array_equal(read_idx(path), labels)


def test_uint8_result_is_read_only_view() -> None:
    out = parse_idx(encode_idx(_images()))
    assert not out.flags.writeable


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_truncated_body(compress: bool) -> None:
    data = encode_idx(_images())[:-1]
    if compress:
        data = gzip.compress(data)
    with pytest.raises(IDXError, match="truncated IDX file.*needs 40 bytes, got 39"):
        parse_idx(data, source="x")


def test_truncated_header() -> None:
    with pytest.raises(IDXError, match="truncated IDX header: 3 dimensions need 16 bytes"):
        parse_idx(encode_idx(_images())[:10])
    with pytest.raises(IDXError, match="header alone is 4"):
        parse_idx(b"\x00\x00")


def test_trailing_bytes() -> None:
    with pytest.raises(IDXError, match="2 unexpected trailing bytes"):
        parse_idx(encode_idx(_images()) + b"\x00\x00")


def test_wrong_magic_number() -> None:
    data = bytearray(encode_idx(_images()))
    data[0] = 0x42
    with pytest.raises(IDXError, match="wrong magic number 0x42000803"):
        parse_idx(bytes(data), source="f")


def test_unknown_type_code() -> None:
    data = bytearray(encode_idx(_images()))
    data[2] = 0x07
    with pytest.raises(IDXError, match="unknown IDX type code 0x07"):
        parse_idx(bytes(data))


def test_zero_dimensions() -> None:
    with pytest.raises(IDXError, match="0 dimensions"):
        parse_idx(b"\x00\x00\x08\x00")


def test_expected_shape_mismatch() -> None:
    with pytest.raises(IDXError, match=r"differs from the expected \(2, 4, 3\)"):
        parse_idx(encode_idx(_images()), expected_shape=(2, 4, 3))


def test_corrupt_gzip_stream() -> None:
    gz = gzip.compress(encode_idx(_images()))
    with pytest.raises(IDXError, match="corrupt or truncated gzip stream"):
        parse_idx(gz[: len(gz) // 2], source="half.gz")
    flipped = bytearray(gz)
    flipped[-6] ^= 0xFF  # damages the CRC32 trailer
    with pytest.raises(IDXError, match="corrupt or truncated gzip"):
        parse_idx(bytes(flipped))


def test_decompress_if_gzip_passes_plain_bytes_through() -> None:
    assert decompress_if_gzip(b"\x00\x00\x08\x01") == b"\x00\x00\x08\x01"


def test_encode_rejects_unsupported_dtype() -> None:
    with pytest.raises(ValueError, match="no IDX type code"):
        encode_idx(np.zeros(3, dtype=np.uint16))
