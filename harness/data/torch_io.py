"""Turning a :class:`Dataset` into torch tensors, and the input geometry models need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from harness.data.dataset import Dataset

if TYPE_CHECKING:
    import torch

__all__ = ["as_torch", "input_shape", "input_size"]


def input_shape(dataset: Dataset) -> tuple[int, ...]:
    """Shape of one input example, channels first.

    ``(1, 28, 28)`` for greyscale images, ``(2, 28, 28)`` for ``stacked_*``, ``(1, 7, 7)``
    for ``small_mnist``, ``(3, 32, 32)`` for ``cifar10_full``, ``(2,)`` for ``poly``.
    """
    shape = dataset.x_train.shape[1:]
    if dataset.task == "regression" or len(shape) == 1:
        return tuple(int(d) for d in shape)
    if dataset.channel_axis is None:
        return (1, *(int(d) for d in shape))
    if dataset.channel_axis == 1:
        return tuple(int(d) for d in shape)
    if dataset.channel_axis in (3, -1):
        return (int(shape[2]), int(shape[0]), int(shape[1]))
    raise ValueError(f"{dataset.name}: unsupported channel_axis {dataset.channel_axis}")


def input_size(dataset: Dataset) -> int:
    """Number of input features of one flattened example (784, 49, 1568, 3072 or 2)."""
    return int(np.prod(input_shape(dataset)))


def _check_pixels(dataset: Dataset, x: np.ndarray, split: str) -> None:
    # Reference section 1.4: the original loader refuses data not on the 0..255 scale.
    low, high = float(x.min()), float(x.max())
    if low != 0 or not 250 <= high <= 255:
        raise ValueError(
            f"{dataset.name} ({split}) has pixel values in [{low:g}, {high:g}]; image "
            "classification inputs must have minimum 0 and maximum in [250, 255] (the 0..255 "
            "scale, which as_torch divides by 255). Pass the raw dataset, not rescaled arrays."
        )


def as_torch(
    dataset: Dataset,
    split: str = "train",
    *,
    flatten: bool = True,
    subset: int | None = None,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``split`` of ``dataset`` as ``(inputs, targets)`` tensors.

    Parameters
    ----------
    dataset : Dataset
    split : {"train", "test"}
    flatten : bool, default True
        ``True``: inputs of shape ``(N, input_size(dataset))``, the flattening of the
        channels-first image (so ``x.view(N, C, H, W)`` recovers it; for ``cifar10_full``
        this is C-H-W order, whereas the original flattened H-W-C). ``False``: shape
        ``(N, *input_shape(dataset))``, channels first. ``poly`` is ``(N, 2)`` either way.
    subset : int, optional
        Keep only the first ``subset`` examples (deterministic; the splits are already in
        random order for the synthetic and mixed datasets, and in the publisher's order for
        MNIST/Fashion).
    device : str or torch.device, optional
        Where to put the tensors; default CPU.

    Returns
    -------
    x : torch.Tensor of float32
        Image classification: pixel values / 255, in [0, 1] (the 0..255 range is checked
        first, as the original loader does). ``poly``: raw values, as float32.
    y : torch.Tensor
        int64 class labels of shape ``(N,)``, or float32 targets of shape ``(N, 512)``.
    """
    import torch

    x, y = dataset.split(split)  # checks the split's name
    n = len(x)
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
            raise ValueError(f"subset must be a positive int, got {subset!r}")
        if subset > n:
            raise ValueError(
                f"subset={subset} exceeds the {n} examples of {dataset.name} ({split})"
            )
        n = int(subset)
    if dataset.task == "regression":
        # Copies (np.array) so torch gets writable memory of its own.
        xs = np.array(x[:n], dtype=np.float32)
        ys = torch.from_numpy(np.array(y[:n], dtype=np.float32))
    else:
        _check_pixels(dataset, x, split)
        xs = np.array(x[:n], dtype=np.float32)
        xs /= np.float32(255.0)
        if dataset.channel_axis in (3, -1):
            xs = np.ascontiguousarray(xs.transpose(0, 3, 1, 2))
        xs = xs.reshape(n, *input_shape(dataset))
        ys = torch.from_numpy(np.array(y[:n], dtype=np.int64))
    if flatten:
        xs = xs.reshape(n, -1)
    xt = torch.from_numpy(xs)
    if device is not None:
        xt, ys = xt.to(device), ys.to(device)
    return xt, ys
