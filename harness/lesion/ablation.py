"""Ablation (§6.2): silence units by zeroing their incoming weights and biases.

Layer ``l`` of a network is the output of its ``l``-th Linear/Conv module in
``model.modules()`` order (layer 0 is the input). The units of a Linear layer are its output
features; the units of a conv layer are its filters (output channels, "filters as units",
§3.3). Lesioning unit ``u`` of layer ``l`` zeroes row ``u`` of that module's weight (for a
conv module the whole filter ``K[:, :, :, u]`` in Keras layout, ``weight[u]`` in torch's) and
entry ``u`` of its bias, so the module's output ``u`` is exactly 0 and a ReLU unit outputs
``relu(0) = 0``. :func:`lesioned` does so in place and restores the exact original tensors in
``finally``.

**Batch norm** (``ablation``). When a batch norm follows the module (the CIFAR-10 VGG:
``Conv -> ReLU -> [MaxPool] -> BatchNorm``), a zeroed filter is *not* silent: at inference
its normalised output is the constant ``beta - gamma * mean / sqrt(var + eps)`` (reference
§6.2 and §11 item 10). Two ablations are offered:

``"output"`` (default, the correct lesion)
    zero the kernel and bias *and* the batch norm's ``gamma`` and ``beta`` of the unit, so
    its output after the batch norm is exactly 0, as for a network without batch norm.
``"kernel"`` (the paper's code, a documented quirk)
    zero the kernel and bias only; the batch norm's shift remains.

Both are the same lesion for networks without batch norm (MLPs, the small CNN).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from numpy.typing import ArrayLike

from harness.lesion.specs import check_lesion, normalize_lesion
from harness.options import check_choice

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = [
    "ABLATIONS",
    "conv_layers",
    "effective_parameter",
    "layer_widths",
    "leaf_modules",
    "lesioned",
    "unit_norms",
    "weighted_modules",
    "writable_parameter",
]

#: How a lesion silences a unit that a batch norm follows (module docstring).
ABLATIONS = ("output", "kernel")


def weighted_modules(model: nn.Module) -> list[nn.Module]:
    """Linear and conv modules in ``model.modules()`` order: module ``l - 1`` feeds layer ``l``."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [m for m in model.modules() if isinstance(m, kinds)]


def leaf_modules(model: nn.Module) -> list[nn.Module]:
    """Modules without children in ``model.modules()`` order (the forward order of a chain)."""
    return [m for m in model.modules() if next(m.children(), None) is None]


def conv_layers(model: nn.Module) -> list[int]:
    """Ids of the layers whose units are conv filters (outputs of conv modules), ascending."""
    from torch import nn

    kinds = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [k for k, m in enumerate(weighted_modules(model), start=1) if isinstance(m, kinds)]


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


def unit_norms(model: nn.Module) -> dict[int, nn.Module]:
    """Layer id -> the batch norm that normalises its units, for layers that have one.

    The batch norm of layer ``l`` is the first ``BatchNorm1d/2d/3d`` among the leaf modules
    after the ``l``-th weighted module and before the next one (VGG: ``Conv -> ReLU ->
    [MaxPool] -> BatchNorm``), provided it has as many features as the layer has units.
    """
    from torch import nn

    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    weighted = {id(m): layer for layer, m in enumerate(weighted_modules(model), start=1)}
    widths = layer_widths(model)
    out: dict[int, nn.Module] = {}
    current: int | None = None
    for m in leaf_modules(model):
        if id(m) in weighted:
            current = weighted[id(m)]
        elif isinstance(m, norms) and current is not None and current not in out:
            if int(m.num_features) == widths[current]:
                out[current] = m
    return out


@contextmanager
def lesioned(
    model: nn.Module, lesion: Mapping[int, ArrayLike], *, ablation: str = "output"
) -> Iterator[nn.Module]:
    """Silence units in place; restore the exact original tensors on exit.

    Layer ``l`` is the output of the ``l``-th Linear/Conv module in ``model.modules()`` order
    (layer 0 is the input). Lesioning unit ``u`` of layer ``l`` zeroes row ``u`` of that
    module's weight (its incoming weights; for a conv module, filter ``u``: torch's
    ``weight[u]``, Keras' ``K[:, :, :, u]``) and its bias, so a ReLU unit outputs exactly 0
    (§6.2). With ``ablation="output"`` the ``gamma`` and ``beta`` of a batch norm that
    follows the unit (:func:`unit_norms`) are zeroed too, so the unit is silent after its
    batch norm; ``"kernel"`` leaves the batch norm alone, as the paper's code did (its output
    is then the constant ``beta - gamma * mean / sqrt(var + eps)``; reference §11 item 10).
    Restoration happens in ``finally``, so the model is bitwise unchanged after the block,
    also when the block raises.

    Parameters
    ----------
    model : torch.nn.Module
    lesion : mapping of int to array-like of int
        ``{layer_id: unit indices within the layer}``.
    ablation : {"output", "kernel"}
        See the module docstring; the same for layers without a batch norm.

    Yields
    ------
    model : torch.nn.Module
        The same (lesioned) model.

    Raises
    ------
    ValueError
        Unknown layer or unit, or ``ablation="output"`` for a unit whose batch norm has no
        affine parameters to zero.

    Examples
    --------
    >>> with lesioned(model, {1: [0, 5], 3: [7]}):  # doctest: +SKIP
    ...     logits = model(x)
    """
    import torch

    check_choice("ablation", ablation, ABLATIONS)
    modules = weighted_modules(model)
    spec = normalize_lesion(lesion)
    check_lesion(spec, layer_widths(model), "the model's weighted")
    norms = unit_norms(model) if ablation == "output" else {}
    # (module, units): the weighted module of every lesioned layer, then its batch norm.
    targets: list[tuple[nn.Module, ArrayLike]] = []
    for layer, units in spec.items():
        targets.append((modules[layer - 1], units))
        if layer in norms:
            if writable_parameter(norms[layer], "weight") is None:
                raise ValueError(
                    f"layer {layer} is followed by a batch norm without affine parameters; "
                    "ablation='output' cannot silence it by zeroing them (use ablation='kernel')"
                )
            targets.append((norms[layer], units))
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for module, rows in targets:
                for name in ("weight", "bias"):
                    tensor = writable_parameter(module, name)
                    if tensor is None:
                        continue
                    saved.append((tensor, tensor.detach().clone()))
                    tensor[torch.as_tensor(rows, device=tensor.device)] = 0
        yield model
    finally:
        with torch.no_grad():
            for tensor, original in reversed(saved):
                tensor.copy_(original)
