"""The torch device a process trains and evaluates on."""

from __future__ import annotations

import os
from typing import Any

from harness.workers import xdist_worker_index

__all__ = ["pick_device"]


def pick_device(prefer: str | None = None) -> Any:
    """The torch device for this process: CUDA when present, else CPU.

    Under xdist, worker ``i`` uses GPU ``i mod n_gpus``. ``prefer`` ("cpu", "cuda",
    "cuda:1") overrides the choice; the environment variable ``HARNESS_DEVICE`` does too.
    """
    import torch

    choice = prefer or os.environ.get("HARNESS_DEVICE")
    if choice:
        if choice.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(
                f"device {choice!r} requested but CUDA is not available; "
                "use 'cpu' or unset HARNESS_DEVICE"
            )
        return torch.device(choice)
    if torch.cuda.is_available():
        n_gpus = torch.cuda.device_count()
        index = (xdist_worker_index() or 0) % n_gpus
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")
