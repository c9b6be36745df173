"""Array I/O without pickle: named tensors in safetensors files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["load_tensors", "save_tensors"]


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, Any]) -> None:
    """Write named torch tensors or numpy arrays to a safetensors file (contiguous copies)."""
    import torch
    from safetensors.torch import save_file

    plain = {
        name: (t if isinstance(t, torch.Tensor) else torch.as_tensor(t)).detach().cpu().contiguous().clone()
        for name, t in tensors.items()
    }
    save_file(plain, str(path))


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a safetensors file into a dict of CPU torch tensors (no pickle involved)."""
    from safetensors.torch import load_file

    return dict(load_file(str(path)))
