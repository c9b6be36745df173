"""CIFAR-10 loading on a crafted archive with the official layout (the real archive is not
available offline), the restricted unpickler, and the DatasetUnavailable message."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import (
    CIFAR_DATASETS,
    DatasetUnavailable,
    DataUnavailableError,
    as_torch,
    cifar,
    input_shape,
    load_dataset,
)

PER_BATCH = 20


def _batch(rng: np.random.Generator, n: int) -> dict[bytes, object]:
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    images = data.reshape(n, 3, 32, 32)
    images[:, :, 4:9, 4:9] = 255  # a white patch and a black one survive the resize to 28x28
    images[:, :, 20:25, 20:25] = 0
    labels = [int(v) for v in np.arange(n) % 10]
    return {
        b"batch_label": b"crafted",
        b"labels": labels,
        b"data": data,
        b"filenames": [b"x.png"] * n,
    }


def _archive(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            # Protocol 4: bytes and numpy arrays pickle without helper globals (the official
            # Python-2 pickles use STRING opcodes, which encoding="bytes" also turns into bytes).
            blob = pickle.dumps(_batch(rng, PER_BATCH), protocol=4)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.fixture
def crafted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir holding a crafted archive that the loader accepts as official."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = _archive(data_dir / cifar.CIFAR10_ARCHIVE)
    monkeypatch.setattr(cifar, "CIFAR10_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.setattr(cifar, "CIFAR10_SIZE", path.stat().st_size)
    monkeypatch.setattr(cifar, "CIFAR10_URLS", ())
    return data_dir


def test_read_archive_layout(tmp_path: Path) -> None:
    path = _archive(tmp_path / "a.tar.gz")
    x_train, y_train, x_test, y_test = cifar.read_cifar10_archive(path, verify=False)
    assert x_train.shape == (5 * PER_BATCH, 32, 32, 3) and x_train.dtype == np.uint8
    assert x_test.shape == (PER_BATCH, 32, 32, 3) and y_test.dtype == np.int64
    rng = np.random.default_rng(0)
    first = _batch(rng, PER_BATCH)
    data = first[b"data"]
    assert isinstance(data, np.ndarray)
    # Rows are channel-major: channel c, row r, column q at c * 1024 + r * 32 + q.
    for i, r, q, c in [(0, 0, 0, 0), (3, 5, 31, 2), (19, 31, 7, 1)]:
        assert x_train[i, r, q, c] == data[i, c * 1024 + r * 32 + q]
    assert y_train[:PER_BATCH].tolist() == first[b"labels"]
    with pytest.raises(ValueError, match="sha256 mismatch"):
        cifar.read_cifar10_archive(path, verify=True)


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_other_globals() -> None:
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle (posix|os).system"):
        cifar.restricted_loads(pickle.dumps({b"data": _Evil()}, protocol=4))
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = cifar.restricted_loads(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=2 + 2))
    np.testing.assert_array_equal(out[b"data"], arr)


def test_missing_archive_says_what_to_put_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cifar, "CIFAR10_URLS", ("http://127.0.0.1:9/cifar-10-python.tar.gz",))
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("halves_cifar10", data_dir=tmp_path)
    msg = str(info.value)
    assert isinstance(info.value, DataUnavailableError)
    assert "Put the official archive cifar-10-python.tar.gz (170,498,071 bytes" in msg
    assert f"at {tmp_path / 'cifar-10-python.tar.gz'}" in msg
    assert cifar.CIFAR10_SHA256 in msg
    assert "does not exist" in msg and "http://127.0.0.1:9/cifar-10-python.tar.gz:" in msg


def test_invalid_archive_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cifar, "CIFAR10_URLS", ())
    path = _archive(tmp_path / cifar.CIFAR10_ARCHIVE)
    with pytest.raises(DatasetUnavailable, match="failed sha256 verification and was removed"):
        load_dataset("cifar10_full", data_dir=tmp_path)
    assert not path.exists()


def test_cifar_datasets_from_crafted_archive(crafted: Path) -> None:
    full = load_dataset("cifar10_full", data_dir=crafted)
    assert full.seed is None and full.channel_axis == 3
    assert full.x_train.shape == (100, 32, 32, 3) and input_shape(full) == (3, 32, 32)
    x, y = as_torch(full, "test", flatten=False)
    assert x.shape == (PER_BATCH, 3, 32, 32) and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), full.x_test.transpose(0, 3, 1, 2) / np.float32(255))
    assert as_torch(full, "test")[0].shape == (PER_BATCH, 3072)

    grey = load_dataset("cifar10", data_dir=crafted)
    assert grey.x_train.shape == (100, 28, 28) and grey.x_train.dtype == np.float32
    rgb = full.x_test.astype(np.float64)
    expected = np.stack([rgb[..., 0], rgb[..., 1], rgb[..., 2]], -1) @ [0.2125, 0.7154, 0.0721]
    # 32 -> 28 has sigma 1/14: its 4-sigma kernel radius is 0, so the resize is pure bilinear.
    from harness.data.resize import resize_images

    np.testing.assert_allclose(grey.x_test, resize_images(expected, (28, 28)), rtol=1e-6)

    halves = load_dataset("halves_cifar10", data_dir=crafted)
    left, right = halves.provenance["train_left"], halves.provenance["train_right"]
    assert halves.x_train.shape == (100, 28, 28)  # train size = size of the pool (50000 real)
    np.testing.assert_array_equal(halves.y_train, (grey.y_train[left] + grey.y_train[right]) % 10)

    stacked = load_dataset("stacked_same_cifar10", data_dir=crafted)
    assert stacked.x_train.shape == (100, 2, 28, 28) and stacked.x_train.dtype == np.float32
    c1 = stacked.provenance["train_channel1"]
    np.testing.assert_array_equal(grey.y_train[c1], grey.y_train)

    mixed = load_dataset("line-cifar10-separated", data_dir=crafted)
    second = mixed.provenance["test_from_second"]
    assert mixed.x_test.dtype == np.float32
    assert (mixed.y_test[second] >= 5).all() and (mixed.y_test[~second] < 5).all()
    assert second.sum() == (grey.y_test >= 5).sum()


def test_cifar_names() -> None:
    assert set(CIFAR_DATASETS) == {
        "cifar10",
        "cifar10_full",
        "halves_cifar10",
        "halves_same_cifar10",
        "stacked_cifar10",
        "stacked_same_cifar10",
        "mnist-cifar10",
        "mnist-cifar10-separated",
        "fashion-cifar10",
        "fashion-cifar10-separated",
        "line-cifar10",
        "line-cifar10-separated",
    }
