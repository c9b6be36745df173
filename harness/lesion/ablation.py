"""Ablation (§6.2): silence units by zeroing their incoming weights and biases.

Layer ``l`` of a network is the output of its ``l``-th Linear/Conv module in
``model.modules()`` order (layer 0 is the input). Lesioning unit ``u`` of layer ``l`` zeroes
row ``u`` of that module's weight and entry ``u`` of its bias, so a ReLU unit outputs exactly
``relu(0) = 0``. :func:`lesioned` does so in place and restores the exact original tensors in
``finally``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

from harness.lesion.specs import check_lesion, normalize_lesion

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = [
    "effective_parameter",
    "layer_widths",
    "lesioned",
    "weighted_modules",
    "writable_parameter",
]


def weighted_modules(model: nn.Module) -> list[nn.Module]:
    """Linear and conv modules in ``model.modules()`` order: module ``l - 1`` feeds layer ``l``."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def writable_parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """The tensor to write to for parameter ``name`` (None if the module has none).

    ``torch.nn.utils.prune`` keeps the trainable tensor in ``<name>_orig`` and recomputes
    ``<name> = <name>_orig * <name>_mask`` before every forward, so this is the original.
    """
    orig = getattr(module, name + "_orig", None)
    return orig if orig is not None else getattr(module, name, None)


def effective_parameter(module: nn.Module, name: str) -> torch.Tensor | None:
    """The value parameter ``name`` has in the forward pass (pruning mask applied), detached."""
    orig = getattr(module, name + "_orig", None)
    if orig is not None:
        return (orig * getattr(module, name + "_mask")).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def layer_widths(model: nn.Module) -> dict[int, int]:
    """Layer id (1..L) -> number of units (output features or filters of its module)."""
    widths = {}
    for layer, module in enumerate(weighted_modules(model), start=1):
        weight = writable_parameter(module, "weight")
        assert weight is not None
        widths[layer] = int(weight.shape[0])
    return widths


@contextmanager
def lesioned(model: nn.Module, lesion: Mapping[int, ArrayLike]) -> Iterator[nn.Module]:
    """Silence units in place; restore the exact original tensors on exit.

    Layer ``l`` is the output of the ``l``-th Linear/Conv module in ``model.modules()`` order
    (layer 0 is the input). Lesioning unit ``u`` of layer ``l`` zeroes row ``u`` of that
    module's weight (its incoming weights; for a conv module, filter ``u``) and its bias, so
    a ReLU unit outputs exactly 0 (§6.2). Restoration happens in ``finally``, so the model is
    bitwise unchanged after the block, also when the block raises.

    Parameters
    ----------
    model : torch.nn.Module
    lesion : mapping of int to array-like of int
        ``{layer_id: unit indices within the layer}``.

    Yields
    ------
    model : torch.nn.Module
        The same (lesioned) model.

    Examples
    --------
    >>> with lesioned(model, {1: [0, 5], 3: [7]}):  # doctest: +SKIP
    ...     logits = model(x)
    """
    import torch

    modules = weighted_modules(model)
    spec = normalize_lesion(lesion)
    check_lesion(spec, layer_widths(model), "the model's weighted")
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer, units in spec.items():
                module = modules[layer - 1]
                for name in ("weight", "bias"):
                    tensor = writable_parameter(module, name)
                    if tensor is None:
                        continue
                    saved.append((tensor, tensor.detach().clone()))
                    tensor[torch.as_tensor(units, device=tensor.device)] = 0
        yield model
    finally:
        with torch.no_grad():
            for tensor, original in reversed(saved):
                tensor.copy_(original)
