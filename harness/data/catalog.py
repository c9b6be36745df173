"""The catalogue of named datasets: how each is built, cached and loaded.

Every dataset is a deterministic function of ``(name, seed)``. Built datasets are cached in
``<data dir>/derived/`` as ``.npz`` files (``allow_pickle=False``) whose name holds the
dataset name, the seed (for datasets that draw random numbers) and
:data:`GENERATOR_VERSION`; bump that constant whenever a generator's output changes, so
stale caches are never read. Each cache file also stores the content hash, checked on load
(a mismatching file is deleted and rebuilt). Writes are atomic and serialised by a file
lock, so parallel test workers build each dataset once.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

import harness.data.builders as builders
from harness.data.builders import Splits
from harness.data.cifar import ensure_cifar10_archive, read_cifar10_archive
from harness.data.dataset import Dataset
from harness.data.errors import DatasetUnavailable, DataUnavailableError
from harness.data.sources import Say, load_raw, progress_printer, raw_dir
from harness.data.sources import ensure_raw as _ensure_raw
from harness.data.storage import atomic_writer, ensure_writable_dir, resolve_data_dir
from harness.options import check_choice
from harness.seeding import check_seed

__all__ = [
    "CIFAR_DATASETS",
    "DATASETS",
    "DEFAULT_SEED",
    "GENERATOR_VERSION",
    "OFFLINE_DATASETS",
    "cache_path",
    "describe",
    "fetch",
    "is_cached",
    "load_dataset",
]

#: Version of the generators' output; part of every cache key.
GENERATOR_VERSION = 1
#: The paper's seed.
DEFAULT_SEED = 42


@dataclass(frozen=True)
class _Context:
    name: str
    seed: int | None
    data_dir: Path
    cache: bool
    say: Say

    def load(self, name: str) -> Dataset:
        seed = DEFAULT_SEED if self.seed is None else self.seed
        return _load(name, seed, self.data_dir, cache=self.cache, say=self.say)

    def rng(self) -> np.random.Generator:
        return np.random.default_rng(self.seed)


@dataclass(frozen=True)
class _Spec:
    name: str
    build: Callable[[_Context], Dataset]
    seeded: bool  # draws random numbers, so the seed is part of its identity
    cached: bool  # stored as .npz (everything but the raw IDX datasets)
    needs: tuple[str, ...]  # datasets it is built from
    description: str


_SPECS: dict[str, _Spec] = {}


def _register(
    name: str,
    build: Callable[[_Context], Dataset],
    *,
    seeded: bool,
    needs: tuple[str, ...],
    description: str,
    cached: bool = True,
) -> None:
    _SPECS[name] = _Spec(name, build, seeded, cached, needs, description)


def _classification(
    ctx: _Context, splits: Splits, *, channel_axis: int | None = None, check: bool = True
) -> Dataset:
    if check:
        for split in ("train", "test"):
            builders.check_pixel_range(ctx.name, splits.split(split)[0], split)
    return Dataset(
        name=ctx.name,
        seed=ctx.seed,
        x_train=splits.x_train,
        y_train=np.asarray(splits.y_train, dtype=np.int64),
        x_test=splits.x_test,
        y_test=np.asarray(splits.y_test, dtype=np.int64),
        task="classification",
        n_classes=10,
        provenance=splits.provenance,
        channel_axis=channel_axis,
    )


def _as_splits(ds: Dataset) -> Splits:
    return Splits(ds.x_train, ds.y_train, ds.x_test, ds.y_test, {})


# --- base datasets -------------------------------------------------------------------------


def _raw_builder(dataset: str) -> Callable[[_Context], Dataset]:
    def build(ctx: _Context) -> Dataset:
        arrays = load_raw(dataset, data_dir=ctx.data_dir, say=ctx.say)
        return _classification(ctx, Splits(provenance={}, **arrays))

    return build


def _build_cifar10_full(ctx: _Context) -> Dataset:
    archive = ensure_cifar10_archive(ctx.data_dir, say=ctx.say)
    x_train, y_train, x_test, y_test = read_cifar10_archive(archive)
    return _classification(ctx, Splits(x_train, y_train, x_test, y_test, {}), channel_axis=3)


def _build_cifar10(ctx: _Context) -> Dataset:
    full = ctx.load("cifar10_full")
    splits = Splits(
        builders.cifar_grey(full.x_train),
        full.y_train,
        builders.cifar_grey(full.x_test),
        full.y_test,
        {},
    )
    return _classification(ctx, splits)


def _build_small_mnist(ctx: _Context) -> Dataset:
    mnist = ctx.load("mnist")
    splits = Splits(
        builders.small_images(mnist.x_train),
        mnist.y_train,
        builders.small_images(mnist.x_test),
        mnist.y_test,
        {},
    )
    return _classification(ctx, splits)


# --- synthetic -----------------------------------------------------------------------------

_N_TRAIN, _N_TEST = 60000, 10000


def _build_line(ctx: _Context) -> Dataset:
    rng = ctx.rng()
    x_train, y_train = builders.line_images(_N_TRAIN, rng)
    x_test, y_test = builders.line_images(_N_TEST, rng)
    return _classification(ctx, Splits(x_train, y_train, x_test, y_test, {}))


def _build_random(ctx: _Context) -> Dataset:
    rng = ctx.rng()
    x_train, y_train = builders.random_images(_N_TRAIN, rng)
    x_test, y_test = builders.random_images(_N_TEST, rng)
    return _classification(ctx, Splits(x_train, y_train, x_test, y_test, {}))


def _build_poly(ctx: _Context) -> Dataset:
    rng = ctx.rng()
    x_train = rng.standard_normal((_N_TRAIN, 2))
    x_test = rng.standard_normal((_N_TEST, 2))
    return Dataset(
        name=ctx.name,
        seed=ctx.seed,
        x_train=x_train,
        y_train=builders.poly_targets(x_train),
        x_test=x_test,
        y_test=builders.poly_targets(x_test),
        task="regression",
        n_classes=len(builders.POLY_COEFFICIENTS),
    )


# --- composed ------------------------------------------------------------------------------


def _pairs_builder(base: str, *, kind: str, same: bool) -> Callable[[_Context], Dataset]:
    make = builders.halves if kind == "halves" else builders.stacked
    keys = ("left", "right") if kind == "halves" else ("channel0", "channel1")

    def build(ctx: _Context) -> Dataset:
        source = ctx.load(base)
        rng = ctx.rng()
        arrays: dict[str, np.ndarray] = {}
        provenance: dict[str, np.ndarray] = {}
        for split in ("train", "test"):
            x, y = source.split(split)
            arrays[f"x_{split}"], arrays[f"y_{split}"], a, b = make(x, y, rng, same=same)
            provenance[f"{split}_{keys[0]}"], provenance[f"{split}_{keys[1]}"] = a, b
        splits = Splits(provenance=provenance, **arrays)
        return _classification(ctx, splits, channel_axis=1 if kind == "stacked" else None)

    return build


def _mix_builder(first: str, second: str, *, separated: bool) -> Callable[[_Context], Dataset]:
    def build(ctx: _Context) -> Dataset:
        a, b = ctx.load(first), ctx.load(second)
        return _classification(
            ctx, builders.mix(_as_splits(a), _as_splits(b), ctx.rng(), separated=separated)
        )

    return build


def _register_all() -> None:
    _register(
        "mnist",
        _raw_builder("mnist"),
        seeded=False,
        cached=False,
        needs=(),
        description="MNIST digits (verified IDX files)",
    )
    _register(
        "fashion",
        _raw_builder("fashion"),
        seeded=False,
        cached=False,
        needs=(),
        description="Fashion-MNIST (verified IDX files)",
    )
    _register(
        "small_mnist",
        _build_small_mnist,
        seeded=False,
        needs=("mnist",),
        description="MNIST resized to 7x7",
    )
    _register(
        "line",
        _build_line,
        seeded=True,
        needs=(),
        description="1-10 vertical lines, label = count - 1",
    )
    _register(
        "poly",
        _build_poly,
        seeded=True,
        needs=(),
        description="regression: 512 polynomial targets of 2 Gaussian inputs",
    )
    _register(
        "random",
        _build_random,
        seeded=True,
        needs=(),
        description="uniform random pixels and labels",
    )
    for base in ("mnist", "fashion", "cifar10"):
        for kind in ("halves", "stacked"):
            for same in (False, True):
                name = f"{kind}_same_{base}" if same else f"{kind}_{base}"
                what = "same-class pair" if same else "random pair, label (a+b) mod 10"
                _register(
                    name,
                    _pairs_builder(base, kind=kind, same=same),
                    seeded=True,
                    needs=(base,),
                    description=f"{kind} of {base}: {what}",
                )
    for first, second in (
        ("mnist", "fashion"),
        ("line", "mnist"),
        ("mnist", "cifar10"),
        ("fashion", "cifar10"),
        ("line", "cifar10"),
    ):
        for separated in (False, True):
            name = f"{first}-{second}" + ("-separated" if separated else "")
            what = "labels 0-4 of the first, 5-9 of the second" if separated else "all labels"
            _register(
                name,
                _mix_builder(first, second, separated=separated),
                seeded=True,
                needs=(first, second),
                description=f"mix of {first} and {second}: {what}",
            )
    _register(
        "cifar10",
        _build_cifar10,
        seeded=False,
        needs=("cifar10_full",),
        description="CIFAR-10 resized to 28x28 grey",
    )
    _register(
        "cifar10_full",
        _build_cifar10_full,
        seeded=False,
        needs=(),
        description="CIFAR-10 32x32x3, as distributed",
    )


_register_all()


def describe(name: str) -> str:
    """One line on what dataset ``name`` is (for listings)."""
    return _SPECS[name].description


def _needs_cifar(name: str) -> bool:
    spec = _SPECS[name]
    return name == "cifar10_full" or any(_needs_cifar(n) for n in spec.needs)


#: Every known dataset name.
DATASETS: tuple[str, ...] = tuple(_SPECS)  # registration order
#: The datasets that need the CIFAR-10 archive.
CIFAR_DATASETS: tuple[str, ...] = tuple(n for n in DATASETS if _needs_cifar(n))
#: The datasets this project can obtain and build by itself (no CIFAR-10).
OFFLINE_DATASETS: tuple[str, ...] = tuple(n for n in DATASETS if not _needs_cifar(n))


def _spec(name: str) -> _Spec:
    return _SPECS[check_choice("dataset", name, DATASETS)]


def _cache_key(name: str, seed: int | None) -> str:
    if seed is None:
        return f"{name}__v{GENERATOR_VERSION}"
    return f"{name}__seed{seed}__v{GENERATOR_VERSION}"


def cache_path(
    name: str, *, seed: int = DEFAULT_SEED, data_dir: str | PathLike[str] | None = None
) -> Path | None:
    """Where ``load_dataset(name, seed=seed)`` is cached, or None for the raw IDX datasets
    (``mnist``, ``fashion``: their verified files live in ``<data dir>/raw/<name>/``)."""
    spec = _spec(name)
    if not spec.cached:
        return None
    seed_used = check_seed(seed) if spec.seeded else None
    return resolve_data_dir(data_dir) / "derived" / f"{_cache_key(name, seed_used)}.npz"


_META = "__meta__"
_PROV = "prov__"


def _write_npz(path: Path, ds: Dataset) -> None:
    meta = {
        "name": ds.name,
        "seed": ds.seed,
        "task": ds.task,
        "n_classes": ds.n_classes,
        "channel_axis": ds.channel_axis,
        "generator_version": GENERATOR_VERSION,
        "content_hash": ds.content_hash,
    }
    arrays = {
        "x_train": ds.x_train,
        "y_train": ds.y_train,
        "x_test": ds.x_test,
        "y_test": ds.y_test,
        _META: np.array(json.dumps(meta)),
    }
    arrays.update({f"{_PROV}{k}": v for k, v in ds.provenance.items()})
    with atomic_writer(path) as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def _read_npz(path: Path, name: str, seed: int | None) -> Dataset | None:
    """The cached dataset, or None when absent; a stale or corrupt file is deleted."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz[_META]))
            arrays = {k: npz[k] for k in npz.files if k != _META}
        if (
            meta.get("generator_version") != GENERATOR_VERSION
            or meta.get("name") != name
            or meta.get("seed") != seed
        ):
            raise ValueError(f"metadata {meta} does not match {name!r} seed {seed}")
        ds = Dataset(
            name=name,
            seed=seed,
            x_train=arrays.pop("x_train"),
            y_train=arrays.pop("y_train"),
            x_test=arrays.pop("x_test"),
            y_test=arrays.pop("y_test"),
            task=meta["task"],
            n_classes=int(meta["n_classes"]),
            channel_axis=meta["channel_axis"],
            provenance={k.removeprefix(_PROV): v for k, v in arrays.items()},
        )
        if ds.content_hash != meta["content_hash"]:
            raise ValueError("content hash mismatch")
        return ds
    except Exception as exc:  # any unreadable cache file is rebuilt, never trusted
        warnings.warn(f"discarding unreadable cache file {path}: {exc}", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(path)):
        yield


def _load(name: str, seed: int, data_dir: Path, *, cache: bool, say: Say) -> Dataset:
    spec = _spec(name)
    seed_used = seed if spec.seeded else None
    ctx = _Context(name, seed_used, data_dir, cache, say)
    if not spec.cached or not cache:
        return _timed_build(spec, ctx)
    path = data_dir / "derived" / f"{_cache_key(name, seed_used)}.npz"
    ds = _read_npz(path, name, seed_used)
    if ds is not None:
        return ds
    ensure_writable_dir(path.parent)
    with _file_lock(path.with_suffix(".lock")):
        ds = _read_npz(path, name, seed_used)  # another process may have built it meanwhile
        if ds is None:
            ds = _timed_build(spec, ctx)
            _write_npz(path, ds)
            say(f"{name}: cached in {path}")
    return ds


def _timed_build(spec: _Spec, ctx: _Context) -> Dataset:
    start = time.perf_counter()
    if spec.cached:
        seed_txt = "" if ctx.seed is None else f" (seed {ctx.seed})"
        ctx.say(f"{spec.name}: building{seed_txt} ...")
    ds = spec.build(ctx)
    if spec.cached:
        ctx.say(f"{spec.name}: built in {time.perf_counter() - start:.1f} s")
    return ds


def load_dataset(
    name: str,
    *,
    seed: int = DEFAULT_SEED,
    data_dir: str | PathLike[str] | None = None,
    cache: bool = True,
    progress: bool = False,
) -> Dataset:
    """Load (building and caching if needed) the dataset ``name``.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`.
    seed : int, default 42
        Seed of ``np.random.default_rng`` for datasets that draw random numbers, in
        ``[0, 2**32)`` (:func:`harness.seeding.check_seed`; ignored, and recorded as None,
        for those that do not).
    data_dir : path, optional
        Data directory; default ``$HARNESS_DATA_DIR``, else ``<project root>/.data``.
    cache : bool, default True
        Read and write the ``.npz`` cache. ``False`` builds in memory (raw files are still
        fetched into the data directory); used to check determinism.
    progress : bool, default False
        Print what is being fetched and built to stderr.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones) or invalid seed.
    DataUnavailableError
        MNIST / Fashion-MNIST could not be obtained from any source.
    DatasetUnavailable
        A CIFAR-10 dataset was asked for and the archive is not available.
    DataDirNotWritable
        The data directory cannot be written.
    """
    _spec(name)
    return _load(
        name,
        check_seed(seed),
        resolve_data_dir(data_dir),
        cache=cache,
        say=progress_printer(progress),
    )


def is_cached(
    name: str, *, seed: int = DEFAULT_SEED, data_dir: str | PathLike[str] | None = None
) -> bool:
    """Whether ``name`` can be loaded without fetching or building (files are present;
    their integrity is checked on load)."""
    spec = _spec(name)
    data_dir = resolve_data_dir(data_dir)
    path = cache_path(name, seed=seed, data_dir=data_dir)
    if path is not None:
        return path.is_file()
    from harness.data.sources import RAW_FILES

    return all((raw_dir(spec.name, data_dir) / f.name).is_file() for f in RAW_FILES[spec.name])


def fetch(
    names: Sequence[str] | None = None,
    *,
    data_dir: str | PathLike[str] | None = None,
    progress: bool = True,
    seed: int = DEFAULT_SEED,
) -> dict[str, Path]:
    """Fetch and verify raw datasets, and build and cache derived ones. Idempotent.

    Parameters
    ----------
    names : sequence of str, optional
        Dataset names; default ``("mnist", "fashion")``.
    data_dir : path, optional
        See :func:`load_dataset`.
    progress : bool, default True
        Print progress to stderr.
    seed : int, default 42
        Seed of the derived datasets to build.

    Returns
    -------
    paths : dict
        Name -> where it is stored (a directory of IDX files for ``mnist``/``fashion``, the
        ``.npz`` cache file otherwise).

    Raises
    ------
    DataUnavailableError
        After every name was tried, if some could not be obtained; the message holds each
        one's sources, reasons and fixes.
    """
    names = ("mnist", "fashion") if names is None else tuple(names)
    for name in names:
        _spec(name)  # validate every name before doing any work
    seed = check_seed(seed)
    data_dir_path = resolve_data_dir(data_dir)
    say = progress_printer(progress)
    out: dict[str, Path] = {}
    failures: list[DataUnavailableError] = []
    for name in names:
        spec = _spec(name)
        start = time.perf_counter()
        try:
            if not spec.cached:
                _ensure_raw(name, data_dir=data_dir_path, say=say)
                out[name] = raw_dir(name, data_dir_path)
            else:
                _load(name, seed, data_dir_path, cache=True, say=say)
                path = cache_path(name, seed=seed, data_dir=data_dir_path)
                assert path is not None
                out[name] = path
        except DataUnavailableError as exc:
            # Keep going: one missing dataset should not stop the others from being fetched.
            say(f"{name}: NOT AVAILABLE")
            failures.append(exc)
            continue
        say(f"{name}: ready ({time.perf_counter() - start:.1f} s) -> {out[name]}")
    if failures:
        if len(failures) == 1:
            raise failures[0]
        error_type = (
            DatasetUnavailable
            if all(isinstance(f, DatasetUnavailable) for f in failures)
            else DataUnavailableError
        )
        raise error_type("\n\n".join(str(f) for f in failures))
    return out
