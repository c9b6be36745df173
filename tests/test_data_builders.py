"""Generators and the resize, on small inputs (no real data needed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from harness.data import builders
from harness.data.builders import Splits
from harness.data.dataset import Dataset
from harness.data.resize import resize_images


def _skimage_like_resize(img: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    """Independent reference: scikit-image's n-d resize path written with ndimage
    (Gaussian sigma max(0, (s-1)/2) in 'mirror' mode, then map_coordinates order 1 at
    s * (j + 0.5) - 0.5, mode 'mirror'), in float64."""
    factors = np.array(img.shape, float) / np.array(out_shape, float)
    sigma = np.maximum(0, (factors - 1) / 2)
    smoothed = ndimage.gaussian_filter(img.astype(np.float64), sigma, mode="mirror")
    coords = np.meshgrid(
        *[f * (np.arange(d) + 0.5) - 0.5 for f, d in zip(factors, out_shape, strict=True)],
        indexing="ij",
    )
    return ndimage.map_coordinates(smoothed, np.array(coords), order=1, mode="mirror")


@pytest.mark.parametrize("out_hw", [(28, 14), (7, 7), (14, 28), (28, 28), (5, 9)])
def test_resize_matches_ndimage_reference(out_hw: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 28, 28)).astype(np.uint8)
    ours = resize_images(images, out_hw, chunk=2)
    for i in range(len(images)):
        ref = _skimage_like_resize(images[i], out_hw)
        np.testing.assert_allclose(ours[i], ref, rtol=0, atol=1e-9)


def test_resize_rgb_channels_untouched() -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)
    ours = resize_images(images, (28, 28))
    assert ours.shape == (3, 28, 28, 3)
    for i in range(3):
        ref = _skimage_like_resize(images[i], (28, 28, 3))
        np.testing.assert_allclose(ours[i], ref, rtol=0, atol=1e-9)


def test_halves_resize_is_gaussian_then_pair_average() -> None:
    # 28 -> 14 along the width samples at 2j + 0.5: the mean of columns 2j, 2j+1 of the
    # width-smoothed (sigma 0.5) image; the height is untouched.
    rng = np.random.default_rng(3)
    img = rng.random((4, 28, 28)) * 255
    g = ndimage.gaussian_filter1d(img, 0.5, axis=2, mode="mirror")
    np.testing.assert_allclose(
        resize_images(img, (28, 14)), 0.5 * (g[..., ::2] + g[..., 1::2]), atol=1e-9
    )


def test_line_images_invariants() -> None:
    x, y = builders.line_images(2000, np.random.default_rng(0))
    assert x.shape == (2000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert set(np.unique(x)) <= {0, 255}
    # Every column is all-on or all-off (full-height vertical lines) ...
    on = x.max(axis=1) == 255
    assert np.array_equal(x.min(axis=1) == 255, on)
    # ... and the label is the number of distinct lines minus one.
    np.testing.assert_array_equal(on.sum(axis=1) - 1, y)
    assert set(np.unique(y)) == set(range(10))


def test_random_images_ranges() -> None:
    x, y = builders.random_images(500, np.random.default_rng(0))
    assert x.dtype == np.uint8 and x.shape == (500, 28, 28)
    assert x.min() == 0 and x.max() == 255
    assert set(np.unique(y)) == set(range(10))


def test_poly_targets_match_the_formula() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 2))
    y = builders.poly_targets(x)
    assert y.shape == (7, 512) and y.dtype == np.float64
    exps = list(itertools.product(range(3), repeat=2))
    coefs = list(itertools.product((0, 1), repeat=9))
    for i in range(7):
        for k in (0, 1, 2, 100, 257, 511):
            expected = sum(
                c * x[i, 0] ** e0 * x[i, 1] ** e1
                for c, (e0, e1) in zip(coefs[k], exps, strict=True)
            )
            assert y[i, k] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    np.testing.assert_array_equal(y[:, 0], 0.0)
    # Output 1 is coefficient vector (0,...,0,1): the last term x0**2 * x1**2.
    np.testing.assert_allclose(y[:, 1], x[:, 0] ** 2 * x[:, 1] ** 2)


def test_poly_targets_block_boundaries_do_not_matter() -> None:
    x = np.random.default_rng(6).standard_normal((4100, 2))  # spans several row blocks
    y = builders.poly_targets(x)
    np.testing.assert_array_equal(y[2040:2060], builders.poly_targets(x[2040:2060]))


def _toy(n: int, seed: int, dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28)).astype(dtype)
    x[:, 10:14, 10:14] = 255
    y = np.arange(n) % 10
    rng.shuffle(y)
    return x, y


def test_halves_labels_and_halves() -> None:
    x, y = _toy(50, 0)
    out, labels, left, right = builders.halves(x, y, np.random.default_rng(1), same=False)
    pool = builders.halves_pool(x)
    assert pool.dtype == np.uint8 and pool.max() == 255
    np.testing.assert_array_equal(out[:, :, :14], pool[left])
    np.testing.assert_array_equal(out[:, :, 14:], pool[right])
    np.testing.assert_array_equal(labels, (y[left] + y[right]) % 10)


def test_halves_same_right_half_is_same_class_among_first_n_class_min() -> None:
    x, y = _toy(53, 0)  # class sizes 6 and 5: n_class_min = 5
    out, labels, left, right = builders.halves(x, y, np.random.default_rng(2), same=True)
    np.testing.assert_array_equal(left, np.arange(53))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_array_equal(y[right], y)
    n_class_min = np.bincount(y).min()
    rank_in_class = np.array([np.flatnonzero(y == y[r]).tolist().index(r) for r in right])
    assert rank_in_class.max() < n_class_min
    pool = builders.halves_pool(x)
    np.testing.assert_array_equal(out[:, :, 14:], pool[right])


def test_stacked_channels() -> None:
    x, y = _toy(40, 3)
    out, labels, c0, c1 = builders.stacked(x, y, np.random.default_rng(4), same=False)
    assert out.shape == (40, 2, 28, 28) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, 0], x[c0])
    np.testing.assert_array_equal(out[:, 1], x[c1])
    np.testing.assert_array_equal(labels, (y[c0] + y[c1]) % 10)
    out, labels, c0, c1 = builders.stacked(x, y, np.random.default_rng(4), same=True)
    np.testing.assert_array_equal(c0, np.arange(40))
    np.testing.assert_array_equal(y[c1], y)


def _splits(seed: int, n_train: int, n_test: int, dtype: type = np.uint8) -> Splits:
    xa, ya = _toy(n_train, seed, dtype)
    xb, yb = _toy(n_test, seed + 100, dtype)
    return Splits(xa, ya, xb, yb, {})


@pytest.mark.parametrize("separated", [False, True])
def test_mix_provenance(separated: bool) -> None:
    a, b = _splits(0, 60, 20), _splits(1, 40, 30, np.float32)
    m = builders.mix(a, b, np.random.default_rng(0), separated=separated)
    for split in ("train", "test"):
        x, y = m.split(split)
        second = m.provenance[f"{split}_from_second"]
        index = m.provenance[f"{split}_source_index"]
        assert x.dtype == np.float32  # uint8 with float32 promotes
        xa, ya = a.split(split)
        xb, yb = b.split(split)
        np.testing.assert_array_equal(x[~second], xa[index[~second]])
        np.testing.assert_array_equal(x[second], xb[index[second]])
        np.testing.assert_array_equal(y[~second], ya[index[~second]])
        np.testing.assert_array_equal(y[second], yb[index[second]])
        if separated:
            assert (y[~second] < 5).all() and (y[second] >= 5).all()
            assert (~second).sum() == (ya < 5).sum() and second.sum() == (yb >= 5).sum()
        else:
            assert len(x) == len(xa) + len(xb)
        assert not np.array_equal(second, np.sort(second))  # shuffled


def test_check_pixel_range() -> None:
    builders.check_pixel_range("ok", np.array([0, 250]), "train")
    with pytest.raises(ValueError, match="maximum 1.0, expected 250..255"):
        builders.check_pixel_range("scaled", np.array([0.0, 1.0]), "train")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_generators_are_functions_of_the_seed(seed: int) -> None:
    a = builders.line_images(50, np.random.default_rng(seed))
    b = builders.line_images(50, np.random.default_rng(seed))
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_dataset_container() -> None:
    x, y = _toy(10, 0)
    ds = Dataset(
        name="toy",
        seed=1,
        x_train=x,
        y_train=y,
        x_test=x[:4],
        y_test=y[:4],
        task="classification",
        n_classes=10,
        provenance={"p": np.arange(3)},
    )
    assert not ds.x_train.flags.writeable and not ds.provenance["p"].flags.writeable
    assert repr(ds).startswith("Dataset('toy', seed=1, train=10x28x28 uint8, test=4x28x28 uint8")
    row = ds.to_row()
    assert row["n_train"] == 10 and row["content_hash"] == ds.content_hash
    assert all(type(v) in (str, int, list, type(None)) for v in row.values())
    same = Dataset(
        name="other",
        seed=None,
        x_train=x.copy(),
        y_train=y.copy(),
        x_test=x[:4].copy(),
        y_test=y[:4].copy(),
        task="classification",
        n_classes=10,
    )
    assert same.content_hash == ds.content_hash  # content only, not name or provenance
    changed = x.copy()
    changed[0, 0, 0] ^= 1
    other = Dataset(
        name="toy",
        seed=1,
        x_train=changed,
        y_train=y,
        x_test=x[:4],
        y_test=y[:4],
        task="classification",
        n_classes=10,
    )
    assert other.content_hash != ds.content_hash
    big_endian = Dataset(
        name="be",
        seed=None,
        x_train=x,
        y_train=y.astype(">i8"),
        x_test=x[:4],
        y_test=y[:4].astype(">i8"),
        task="classification",
        n_classes=10,
    )
    assert (
        big_endian.content_hash
        == Dataset(
            name="le",
            seed=None,
            x_train=x,
            y_train=y.astype("<i8"),
            x_test=x[:4],
            y_test=y[:4].astype("<i8"),
            task="classification",
            n_classes=10,
        ).content_hash
    )
    with pytest.raises(ValueError, match="task must be one of"):
        Dataset(
            name="t",
            seed=None,
            x_train=x,
            y_train=y,
            x_test=x,
            y_test=y,
            task="ranking",
            n_classes=10,
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x_train has 10 rows, y_train 9"):
        Dataset(
            name="t",
            seed=None,
            x_train=x,
            y_train=y[:9],
            x_test=x,
            y_test=y,
            task="classification",
            n_classes=10,
        )
