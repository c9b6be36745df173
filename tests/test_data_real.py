"""The real datasets and every derived dataset that needs no CIFAR-10.

These use the real MNIST / Fashion-MNIST files in the data directory (``make data`` fetches
them; if they are absent the loader tries its sources and, failing that, these tests fail
with the DataUnavailableError message -- they never skip). Derived datasets are built once
and cached in the data directory, so later runs only load them.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import (
    DATASETS,
    OFFLINE_DATASETS,
    Dataset,
    as_torch,
    builders,
    cache_path,
    input_shape,
    input_size,
    load_dataset,
)
from harness.workers import pin_threads

ROOT = Path(__file__).resolve().parents[1]

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    pin_threads(1)


_CACHE: dict[str, Dataset] = {}


def ds(name: str) -> Dataset:
    """Load once per test process (seed 42, the default cache)."""
    if name not in _CACHE:
        _CACHE[name] = load_dataset(name)
    return _CACHE[name]


# --- raw datasets ---------------------------------------------------------------------------


def test_mnist_is_the_real_mnist() -> None:
    m = ds("mnist")
    assert m.seed is None and m.task == "classification" and m.n_classes == 10
    assert m.x_train.shape == (60000, 28, 28) and m.x_train.dtype == np.uint8
    assert m.x_test.shape == (10000, 28, 28) and m.y_train.dtype == np.int64
    assert np.bincount(m.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(m.y_test).tolist() == MNIST_TEST_COUNTS
    assert m.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert m.x_train.min() == 0 and m.x_train.max() == 255


def test_fashion_is_the_real_fashion_mnist() -> None:
    f = ds("fashion")
    assert f.x_train.shape == (60000, 28, 28) and f.x_test.shape == (10000, 28, 28)
    assert np.bincount(f.y_train).tolist() == [6000] * 10
    assert np.bincount(f.y_test).tolist() == [1000] * 10
    assert f.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


# --- synthetic ------------------------------------------------------------------------------


def test_line_labels_count_distinct_vertical_lines() -> None:
    d = ds("line")
    for x, y in (d.split("train"), d.split("test")):
        assert x.dtype == np.uint8 and set(np.unique(x[:500])) == {0, 255}
        on = x.max(axis=1) == 255
        np.testing.assert_array_equal(x.min(axis=1) == 255, on)  # full-height lines only
        np.testing.assert_array_equal(on.sum(axis=1) - 1, y)
    counts = np.bincount(d.y_train, minlength=10)
    assert counts.min() > 5500 and counts.max() < 6500  # uniform over 1..10 lines


def test_poly_targets_follow_the_formula() -> None:
    d = ds("poly")
    assert d.task == "regression" and d.n_classes == 512
    assert d.x_train.shape == (60000, 2) and d.y_train.shape == (60000, 512)
    assert d.x_test.shape == (10000, 2) and d.y_test.shape == (10000, 512)
    assert d.y_train.dtype == np.float64
    assert abs(d.x_train.mean()) < 0.02 and abs(d.x_train.std() - 1) < 0.02
    exps = list(itertools.product(range(3), repeat=2))
    coefs = list(itertools.product((0, 1), repeat=9))
    rows = np.random.default_rng(0).choice(60000, size=20, replace=False)
    for i in rows:
        x0, x1 = d.x_train[i]
        for k in range(0, 512, 37):
            expected = sum(c * x0**e0 * x1**e1 for c, (e0, e1) in zip(coefs[k], exps, strict=True))
            assert d.y_train[i, k] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_random_dataset() -> None:
    d = ds("random")
    assert d.x_train.shape == (60000, 28, 28) and d.x_train.dtype == np.uint8
    assert d.x_train.min() == 0 and d.x_train.max() == 255
    assert set(np.unique(d.y_test)) == set(range(10))


def test_small_mnist_is_mnist_resized_to_7x7() -> None:
    s, m = ds("small_mnist"), ds("mnist")
    assert s.seed is None
    assert s.x_train.shape == (60000, 7, 7) and s.x_test.shape == (10000, 7, 7)
    assert s.x_train.dtype == np.float32
    np.testing.assert_array_equal(s.y_train, m.y_train)
    np.testing.assert_allclose(s.x_test[:50], builders.small_images(m.x_test[:50]))
    assert 250 <= s.x_train.max() <= 255 and s.x_train.min() >= 0


# --- halves and stacked ---------------------------------------------------------------------


@pytest.mark.parametrize("base", ["mnist", "fashion"])
def test_halves_labels_are_sum_mod_10_via_provenance(base: str) -> None:
    d, src = ds(f"halves_{base}"), ds(base)
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = d.split(split)
        sx, sy = src.split(split)
        left, right = d.provenance[f"{split}_left"], d.provenance[f"{split}_right"]
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        np.testing.assert_array_equal(y, (sy[left] + sy[right]) % 10)
        pool = builders.halves_pool(sx)
        np.testing.assert_array_equal(x[:, :, :14], pool[left])
        np.testing.assert_array_equal(x[:, :, 14:], pool[right])
        assert x.max() == 255


@pytest.mark.parametrize("base", ["mnist", "fashion"])
def test_halves_same_right_half_comes_from_the_same_class(base: str) -> None:
    d, src = ds(f"halves_same_{base}"), ds(base)
    for split in ("train", "test"):
        y = d.split(split)[1]
        sy = src.split(split)[1]
        left, right = d.provenance[f"{split}_left"], d.provenance[f"{split}_right"]
        np.testing.assert_array_equal(left, np.arange(len(sy)))
        np.testing.assert_array_equal(y, sy)
        np.testing.assert_array_equal(sy[right], sy)
        # Drawn from the first n_class_min members of the class, as the original does.
        counts = np.bincount(sy)
        rank = np.empty(len(sy), np.int64)
        order = np.argsort(sy, kind="stable")
        rank[order] = np.arange(len(sy)) - np.repeat(np.cumsum(counts) - counts, counts)
        assert rank[right].max() < counts.min()
        pool = builders.halves_pool(src.split(split)[0])
        np.testing.assert_array_equal(d.split(split)[0][:, :, 14:], pool[right])


@pytest.mark.parametrize("same", [False, True], ids=["diff", "same"])
@pytest.mark.parametrize("base", ["mnist", "fashion"])
def test_stacked(base: str, same: bool) -> None:
    d = ds(f"stacked_same_{base}" if same else f"stacked_{base}")
    src = ds(base)
    assert d.channel_axis == 1 and input_shape(d) == (2, 28, 28) and input_size(d) == 1568
    for split, n in (("train", 60000), ("test", 10000)):
        x, y = d.split(split)
        sx, sy = src.split(split)
        c0, c1 = d.provenance[f"{split}_channel0"], d.provenance[f"{split}_channel1"]
        assert x.shape == (n, 2, 28, 28)
        np.testing.assert_array_equal(x[:, 0], sx[c0])
        np.testing.assert_array_equal(x[:, 1], sx[c1])
        if same:
            np.testing.assert_array_equal(c0, np.arange(n))
            np.testing.assert_array_equal(sy[c1], sy)
            np.testing.assert_array_equal(y, sy)
        else:
            np.testing.assert_array_equal(y, (sy[c0] + sy[c1]) % 10)


# --- mixes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "first", "second", "sizes"),
    [
        ("mnist-fashion", "mnist", "fashion", (120000, 20000)),
        ("mnist-fashion-separated", "mnist", "fashion", (30596 + 30000, 5139 + 5000)),
        ("line-mnist", "line", "mnist", (120000, 20000)),
        ("line-mnist-separated", "line", "mnist", (None, None)),
    ],
)
def test_mixes(name: str, first: str, second: str, sizes: tuple[int | None, int | None]) -> None:
    d, a, b = ds(name), ds(first), ds(second)
    separated = name.endswith("-separated")
    for split, size in zip(("train", "test"), sizes, strict=True):
        x, y = d.split(split)
        ax, ay = a.split(split)
        bx, by = b.split(split)
        second_mask = d.provenance[f"{split}_from_second"]
        index = d.provenance[f"{split}_source_index"]
        if size is not None:
            assert len(x) == size
        np.testing.assert_array_equal(x[~second_mask], ax[index[~second_mask]])
        np.testing.assert_array_equal(x[second_mask], bx[index[second_mask]])
        np.testing.assert_array_equal(y[~second_mask], ay[index[~second_mask]])
        np.testing.assert_array_equal(y[second_mask], by[index[second_mask]])
        if separated:
            # Labels 0-4 from the first set, 5-9 from the second, and all of them.
            assert (y[~second_mask] < 5).all() and (y[second_mask] >= 5).all()
            assert (~second_mask).sum() == (ay < 5).sum()
            assert second_mask.sum() == (by >= 5).sum()
        else:
            assert (~second_mask).sum() == len(ax) and second_mask.sum() == len(bx)
            assert sorted(index[second_mask].tolist()) == list(range(len(bx)))


# --- determinism and caching ----------------------------------------------------------------

# Golden hashes of integer-only datasets (no float rounding involved). A failure means a
# generator or numpy's Generator streams changed: bump GENERATOR_VERSION (stale caches must
# not be read) and update these values.
GOLDEN = {
    "line": "c61c1e096ce1",
    "random": "99016a848b92",
    "stacked_mnist": "9a65513e5299",
    "mnist-fashion-separated": "0105e6486191",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_content_hashes(name: str) -> None:
    assert ds(name).content_hash[:12] == GOLDEN[name]


@pytest.mark.integration
def test_same_seed_same_hash_in_another_process_other_seed_differs() -> None:
    names = ["line", "poly", "halves_same_fashion"]
    code = (
        "import json, sys\n"
        "from harness.data import load_dataset\n"
        "names = json.loads(sys.argv[1])\n"
        "print(json.dumps({f'{n}/{s}': load_dataset(n, seed=s, cache=False).content_hash "
        "for n in names for s in (42, 43)}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(names)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    other = json.loads(result.stdout.strip().splitlines()[-1])
    for name in names:
        here = load_dataset(name, seed=42, cache=False).content_hash
        assert other[f"{name}/42"] == here, name
        assert ds(name).content_hash == here  # the cached copy is the same content
        assert other[f"{name}/43"] != here, name


def test_corrupt_cache_file_is_discarded_and_rebuilt(tmp_path: Path) -> None:
    first = load_dataset("random", seed=7, data_dir=tmp_path)
    path = cache_path("random", seed=7, data_dir=tmp_path)
    assert path is not None and path.name == "random__seed7__v1.npz" and path.is_file()
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    with pytest.warns(UserWarning, match="discarding unreadable cache file"):
        again = load_dataset("random", seed=7, data_dir=tmp_path)
    assert again.content_hash == first.content_hash
    assert [p.name for p in path.parent.glob("*.tmp")] == []


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError) as info:
        load_dataset("mnsit")
    assert "dataset must be one of" in str(info.value) and "got 'mnsit'" in str(info.value)
    for name in DATASETS:
        assert name in str(info.value)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        load_dataset("line", seed=-1)


def test_offline_names_are_the_brief_list() -> None:
    assert set(OFFLINE_DATASETS) == {
        "mnist",
        "fashion",
        "small_mnist",
        "line",
        "poly",
        "random",
        "halves_mnist",
        "halves_fashion",
        "halves_same_mnist",
        "halves_same_fashion",
        "stacked_mnist",
        "stacked_fashion",
        "stacked_same_mnist",
        "stacked_same_fashion",
        "mnist-fashion",
        "mnist-fashion-separated",
        "line-mnist",
        "line-mnist-separated",
    }


# --- torch ----------------------------------------------------------------------------------


def test_as_torch_images() -> None:
    m = ds("mnist")
    x, y = as_torch(m, "test")
    assert x.shape == (10000, 784) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    np.testing.assert_array_equal(x[:3].numpy(), (m.x_test[:3].reshape(3, -1) / np.float32(255)))
    xs, ys = as_torch(m, "train", flatten=False, subset=100, device="cpu")
    assert xs.shape == (100, 1, 28, 28) and ys.tolist() == m.y_train[:100].tolist()
    assert torch.equal(xs.reshape(100, -1), as_torch(m, "train", subset=100)[0])
    assert input_shape(m) == (1, 28, 28) and input_size(m) == 784
    xs[0, 0, 0, 0] = 5.0  # tensors own their memory; the dataset stays untouched
    assert m.x_train[0, 0, 0] == 0


def test_as_torch_stacked_small_and_poly() -> None:
    st = ds("stacked_mnist")
    x, _ = as_torch(st, "test", flatten=False, subset=10)
    assert x.shape == (10, 2, 28, 28)
    np.testing.assert_array_equal(x.numpy(), st.x_test[:10] / np.float32(255))
    assert as_torch(st, "test", subset=10)[0].shape == (10, 1568)
    sm = ds("small_mnist")
    assert input_size(sm) == 49 and as_torch(sm, "test", subset=5)[0].shape == (5, 49)
    p = ds("poly")
    xp, yp = as_torch(p, "test", subset=20)
    assert xp.shape == (20, 2) and xp.dtype == torch.float32
    assert yp.shape == (20, 512) and yp.dtype == torch.float32
    np.testing.assert_array_equal(xp.numpy(), p.x_test[:20].astype(np.float32))
    assert input_shape(p) == (2,) and input_size(p) == 2


def test_as_torch_rejects_bad_input() -> None:
    m = ds("mnist")
    with pytest.raises(ValueError, match="subset=70000 exceeds the 60000 examples"):
        as_torch(m, "train", subset=70000)
    with pytest.raises(ValueError, match="subset must be a positive int"):
        as_torch(m, "train", subset=0)
    with pytest.raises(ValueError, match="split must be one of"):
        as_torch(m, "validation")
    scaled = Dataset(
        name="scaled",
        seed=None,
        x_train=m.x_test[:10] / 255.0,
        y_train=m.y_test[:10],
        x_test=m.x_test[:10] / 255.0,
        y_test=m.y_test[:10],
        task="classification",
        n_classes=10,
    )
    with pytest.raises(
        ValueError, match=r"pixel values in \[0, 1\].*minimum 0 and maximum in \[250, 255\]"
    ):
        as_torch(scaled)


@pytest.mark.integration
def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    """Two processes asking for the same uncached dataset: one builds, the other waits for
    the file lock and loads the result (as parallel test workers do)."""
    code = (
        "import sys\n"
        "from harness.data import load_dataset\n"
        "print(load_dataset('poly', seed=5, data_dir=sys.argv[1], progress=True).content_hash)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outputs]
    hashes = {out.strip() for out, _ in outputs}
    assert len(hashes) == 1
    assert sum(err.count("poly: building (seed 5)") for _, err in outputs) == 1
    files = sorted(p.name for p in (tmp_path / "derived").iterdir())
    assert files == ["poly__seed5__v1.lock", "poly__seed5__v1.npz"]
