"""Datasets of "Clusterability in Neural Networks" (Filan et al. 2021), reference section 1.

Raw MNIST and Fashion-MNIST come from verified sources (sha256 of the decompressed IDX
bytes; see :mod:`harness.data.sources`); every other dataset is built from them (or from
the CIFAR-10 archive, when present) by a vectorised, seeded generator and cached as
``.npz`` in the data directory (``$HARNESS_DATA_DIR``, default ``<project root>/.data``).

>>> from harness.data import load_dataset, as_torch
>>> ds = load_dataset("halves_mnist", seed=42)          # doctest: +SKIP
>>> x, y = as_torch(ds, "train", flatten=True)           # doctest: +SKIP

Command line: ``python -m harness data fetch [NAME ...]`` and ``python -m harness data list``.
"""

from __future__ import annotations

from harness.data.catalog import (
    CIFAR_DATASETS,
    DATASETS,
    DEFAULT_SEED,
    GENERATOR_VERSION,
    OFFLINE_DATASETS,
    cache_path,
    describe,
    fetch,
    is_cached,
    load_dataset,
)
from harness.data.dataset import Dataset
from harness.data.errors import DataDirNotWritable, DatasetUnavailable, DataUnavailableError
from harness.data.idx import IDXError, parse_idx, read_idx
from harness.data.storage import ENV_DATA_DIR, resolve_data_dir
from harness.data.torch_io import as_torch, input_shape, input_size

__all__ = [
    "CIFAR_DATASETS",
    "DATASETS",
    "DEFAULT_SEED",
    "ENV_DATA_DIR",
    "GENERATOR_VERSION",
    "OFFLINE_DATASETS",
    "DataDirNotWritable",
    "DataUnavailableError",
    "Dataset",
    "DatasetUnavailable",
    "IDXError",
    "as_torch",
    "cache_path",
    "describe",
    "fetch",
    "input_shape",
    "input_size",
    "is_cached",
    "load_dataset",
    "parse_idx",
    "read_idx",
    "resolve_data_dir",
]
