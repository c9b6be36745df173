"""What both trainers (:mod:`harness.training`, :mod:`harness.ensemble`) share about a run.

The random streams a network draws from its seed, the CPU thread count of training, the
memory layout of a network and its inputs, whether to show a progress bar, the error raised
when the loss diverges, and the dataset of a config.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from harness.configs import TrainConfig
from harness.workers import xdist_worker_index

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = [
    "DROPOUT_STREAM",
    "SHUFFLE_STREAM",
    "TRAIN_THREADS",
    "TrainingDivergedError",
    "dataset_for",
    "memory_format",
    "training_threads",
    "use_progress",
]

# Independent random streams derived from ``config.seed`` (see harness.seeding.stream_seed):
# 0 = kernel init, 1 = clusterable-init modules (both in build_model), 2 = example order,
# 3 = dropout and augmentation.
#: The stream of a network's example order.
SHUFFLE_STREAM = 2
#: The stream of a network's dropout masks and augmentation.
DROPOUT_STREAM = 3

#: Intra-op threads of CPU training, whatever the worker count or executor. torch's CPU
#: kernels split reductions by thread, so the thread count changes the float order, and after
#: a few thousand Adam steps the weights are another realisation (measured: the ci profile's
#: MNIST+DROPOUT pruned n-cut 8.976 with ``-n 1``, 9.286 with ``-n 2``). One thread makes a
#: model's weights a function of its config, data and machine only: ``-n 1``, ``-n 2``,
#: ``-n auto`` and Ray tasks store the same weights under one key. Processes, not threads,
#: spread training over cores (xdist workers, Ray tasks). Analyses keep cores/workers threads:
#: their results do not depend on it (tests/test_determinism.py).
TRAIN_THREADS = 1


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; nothing is stored."""

    def __init__(self, message: str, *, epoch: int, phase: str) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.phase = phase


@contextlib.contextmanager
def training_threads(dev: torch.device) -> Iterator[None]:
    """Run the block with :data:`TRAIN_THREADS` torch threads on the CPU, restored after."""
    if dev.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def memory_format(arch: str) -> torch.memory_format:
    """The memory layout :func:`harness.training.train` keeps a network and its inputs in.

    Conv nets (``"cnn"``, ``"vgg"``) train channels-last (NHWC): oneDNN's CPU convolutions
    run faster on it (``python -m bench train --case cnn`` measures it), and it is the
    layout of cuDNN's tensor-core convolutions (TF32, on by default for convolutions). MLPs
    keep the default layout. Training stays deterministic for a given device and thread
    count, but its numbers are not those of the default NCHW layout: without dropout they
    differ by float rounding (another summation order in the convolutions, ~1e-8 after a
    few steps); with dropout the masks differ, because torch draws them in memory order, so
    the network is another, equally likely, realisation of the same training run.
    ``torch.compile`` was measured too (``--compile``): minutes of compilation on two cores
    and no faster training steps on the CPU, so it is not used.
    """
    return torch.contiguous_format if arch == "mlp" else torch.channels_last


def use_progress(progress: bool | None) -> bool:
    """Whether to show a tqdm bar: ``progress`` when given, else only on an interactive
    terminal outside xdist workers and CI."""
    if progress is not None:
        return bool(progress)
    return (
        sys.stderr.isatty()
        and xdist_worker_index() is None
        and not os.environ.get("CI")
    )


def dataset_for(config: TrainConfig) -> Dataset:
    """The dataset ``config`` trains on: ``harness.data.load_dataset(config.dataset,
    seed=config.data_seed)`` (its errors, e.g. ``DataUnavailableError``, propagate)."""
    from harness.data import load_dataset

    return load_dataset(config.dataset, seed=config.data_seed)
