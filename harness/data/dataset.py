"""The :class:`Dataset` container and its content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from harness.options import check_choice

__all__ = ["SPLITS", "TASKS", "Dataset", "content_hash"]

TASKS = ("classification", "regression")
SPLITS = ("train", "test")
_SPLIT_FIELDS = ("x_train", "y_train", "x_test", "y_test")


def content_hash(arrays: Mapping[str, np.ndarray], *, task: str, n_classes: int) -> str:
    """sha256 (hex) over the task, the number of classes, and each array's name, dtype,
    shape and bytes, in a fixed order.

    Byte order is normalised to little-endian first, so the hash is the same on every
    machine and in every process for the same content.
    """
    h = hashlib.sha256()
    h.update(json.dumps({"task": task, "n_classes": int(n_classes)}).encode())
    for key in _SPLIT_FIELDS:
        arr = arrays[key]
        canonical = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
        h.update(json.dumps([key, canonical.dtype.str, list(canonical.shape)]).encode())
        h.update(canonical.data.cast("B"))
    return h.hexdigest()


def _freeze(arr: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype == object:
        raise ValueError(f"{what} has dtype object; datasets hold numeric arrays only")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A dataset with its train and test splits, as numpy arrays.

    Attributes
    ----------
    name : str
        One of :data:`harness.data.DATASETS`.
    seed : int or None
        The seed it was generated with; None for datasets that involve no randomness
        (``mnist``, ``fashion``, ``small_mnist``, ``cifar10``, ``cifar10_full``).
    x_train, x_test : ndarray
        Inputs in their natural shape: ``(N, 28, 28)`` images, ``(N, 2, 28, 28)`` for
        ``stacked_*`` (channels first), ``(N, 7, 7)`` for ``small_mnist``,
        ``(N, 32, 32, 3)`` for ``cifar10_full`` (channels last, as distributed), ``(N, 2)``
        for ``poly``. Image values are on the 0..255 scale (``uint8`` where they are
        integers, ``float32`` for the resized ``small_mnist`` and ``cifar10``).
    y_train, y_test : ndarray
        ``int64`` class labels of shape ``(N,)``, or ``float64`` targets of shape
        ``(N, 512)`` for ``poly``.
    task : {"classification", "regression"}
    n_classes : int
        10 for classification; the number of outputs (512) for ``poly``.
    provenance : dict of str to ndarray
        Where each example came from. ``halves_*``: ``train_left``/``train_right`` (and
        ``test_*``) source indices; ``stacked_*``: ``train_channel0``/``train_channel1``;
        mixes: ``train_from_second`` (bool) and ``train_source_index``. Empty for the rest.
    channel_axis : int or None
        Axis of the channels in ``x_*``: None for single-channel images and non-images,
        1 for ``stacked_*``, 3 for ``cifar10_full``.
    content_hash : str
        sha256 over task, n_classes and the four split arrays (not the provenance); see
        :func:`content_hash`. Computed on construction.

    All arrays are made read-only, so the hash stays true.
    """

    name: str
    seed: int | None
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    task: Literal["classification", "regression"]
    n_classes: int
    provenance: Mapping[str, np.ndarray] = field(default_factory=dict)
    channel_axis: int | None = None
    content_hash: str = field(init=False)

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        for key in _SPLIT_FIELDS:
            object.__setattr__(self, key, _freeze(getattr(self, key), key))
        for split in SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"{self.name}: x_{split} has {len(x)} rows, y_{split} {len(y)}")
        prov = {str(k): _freeze(v, f"provenance[{k!r}]") for k, v in self.provenance.items()}
        object.__setattr__(self, "provenance", prov)
        arrays = {key: getattr(self, key) for key in _SPLIT_FIELDS}
        object.__setattr__(
            self, "content_hash", content_hash(arrays, task=self.task, n_classes=self.n_classes)
        )

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_test(self) -> int:
        return len(self.x_test)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``split`` ("train" or "test")."""
        check_choice("split", split, SPLITS)
        return getattr(self, f"x_{split}"), getattr(self, f"y_{split}")

    def to_row(self) -> dict[str, Any]:
        """Builtin-typed summary for report rows."""
        return {
            "dataset": self.name,
            "seed": self.seed,
            "task": self.task,
            "n_classes": int(self.n_classes),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "x_shape": list(self.x_train.shape[1:]),
            "x_dtype": str(self.x_train.dtype),
            "content_hash": self.content_hash,
        }

    def __repr__(self) -> str:
        def shape(a: np.ndarray) -> str:
            return "x".join(str(d) for d in a.shape) + f" {a.dtype}"

        return (
            f"Dataset({self.name!r}, seed={self.seed}, train={shape(self.x_train)}, "
            f"test={shape(self.x_test)}, {self.task}/{self.n_classes}, "
            f"hash={self.content_hash[:12]})"
        )
