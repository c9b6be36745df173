"""Hidden-unit activations of a network on a dataset (reference §7.1, "activation dump").

The units are the nodes of the network's weight graph that a forward pass can observe:

* an MLP's hidden units: the output of every ``nn.Linear`` but the last, after the
  activation function that follows it (the paper dumped Keras ``Dense(relu)`` outputs);
* a CNN's conv filters: each ``nn.Conv2d`` channel after its ReLU, reduced to one value per
  example by the L2 norm over its spatial map, as the paper did.

Units whose activation does not vary over the examples (dead ReLUs) have no correlation
with anything and are dropped; :attr:`UnitActivations.mask` says which were kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.files import natural_key
from harness.weight_files import STATE_DICT_SUFFIXES, load_npz, read_state_dict, state_dict_kernels

__all__ = ["UnitActivations", "as_module", "record_activations"]

#: Elementwise activation modules whose output is taken as the unit's activation when they
#: directly follow a Linear or Conv2d layer.
_ACTIVATIONS = ("ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh", "SiLU", "Softplus")


@dataclass(frozen=True)
class UnitActivations:
    """Activations of a network's units on a set of examples.

    Attributes
    ----------
    values : ndarray of float32, shape (n_kept, n_examples)
        One row per kept unit (units with spread), in unit order.
    mask : ndarray of bool, shape (n_units,)
        True for the kept units, over all units in order (layer by layer).
    layer_sizes : tuple of int
        Units per layer (hidden layers of an MLP, conv layers of a CNN).
    kind : {"mlp", "conv"}
    """

    values: np.ndarray = field(repr=False, compare=False)
    mask: np.ndarray = field(repr=False, compare=False)
    layer_sizes: tuple[int, ...]
    kind: str

    @property
    def n_units(self) -> int:
        return int(self.mask.shape[0])

    @property
    def n_examples(self) -> int:
        return int(self.values.shape[1])

    @property
    def layers(self) -> np.ndarray:
        """Layer index of every unit (kept or not), shape (n_units,)."""
        return np.repeat(np.arange(len(self.layer_sizes)), self.layer_sizes)

    def to_row(self) -> dict[str, Any]:
        return {
            "n_units": self.n_units,
            "n_units_kept": int(self.mask.sum()),
            "n_examples": self.n_examples,
            "kind": self.kind,
        }

    def __repr__(self) -> str:
        return (
            f"UnitActivations({self.kind}, layers {'-'.join(map(str, self.layer_sizes))}, "
            f"{int(self.mask.sum())} of {self.n_units} units kept, {self.n_examples} examples)"
        )


def _unit_layers(module: Any) -> tuple[list[Any], str]:
    """The modules whose outputs are the units, and the network's kind.

    For each kernel layer, the elementwise activation directly after it (in module order) if
    there is one, else the kernel layer itself.
    """
    from torch import nn

    # Duplicates kept: one ReLU instance reused by several layers must be seen (and refused).
    mods = [m for _, m in module.named_modules(remove_duplicate=False) if not list(m.children())]
    convs = [i for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]
    if convs:
        kind, kernels = "conv", convs
    else:
        kernels = [i for i, m in enumerate(mods) if isinstance(m, nn.Linear)]
        if len(kernels) < 2:
            raise ValueError(
                f"the network has {len(kernels)} Linear layer(s) and no Conv2d: it has no "
                "hidden units to record"
            )
        kind, kernels = "mlp", kernels[:-1]  # the last Linear is the output layer
    out = []
    for i in kernels:
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        out.append(nxt if nxt is not None and type(nxt).__name__ in _ACTIVATIONS else mods[i])
    return out, kind


def record_activations(
    module: Any,
    inputs: Any,
    *,
    batch_size: int = 1000,
    drop_constant: bool = True,
) -> UnitActivations:
    """Record the hidden units' activations of ``module`` on ``inputs``, in eval mode.

    Parameters
    ----------
    module : torch.nn.Module
        An MLP of ``nn.Linear`` layers or a network with ``nn.Conv2d`` layers (see the
        module docstring for which outputs are recorded). Each activation module must be
        its own instance (as in :mod:`harness.models`), not one ReLU reused by every layer.
    inputs : torch.Tensor or ndarray of shape (n_examples, ...)
        What the module's forward takes (flat vectors for an MLP, images for a CNN).
    batch_size : int, default=1000
    drop_constant : bool, default=True
        Drop units whose activation has no spread over the examples.

    Returns
    -------
    UnitActivations
    """
    import torch

    layers, kind = _unit_layers(module)
    if len(set(map(id, layers))) != len(layers):
        raise ValueError(
            "one activation module is shared by several layers; give each layer its own "
            "(e.g. nn.ReLU() per layer) so that their outputs can be told apart"
        )
    x = torch.as_tensor(np.asarray(inputs) if not torch.is_tensor(inputs) else inputs)
    x = x.float()
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 examples to correlate activations, got {x.shape[0]}")
    chunks: list[list[np.ndarray]] = [[] for _ in layers]
    current: dict[int, torch.Tensor] = {}

    def hook(index: int) -> Any:
        def _store(_mod: Any, _inp: Any, out: torch.Tensor) -> None:
            current[index] = out.detach()

        return _store

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(layers)]
    was_training = module.training
    try:
        module.eval()
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                current.clear()
                module(x[start : start + batch_size].to(device))
                for i in range(len(layers)):
                    out = current[i]
                    if kind == "conv":
                        out = out.flatten(2).norm(dim=2)  # L2 norm over each channel's map
                    chunks[i].append(out.float().cpu().numpy())
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    per_layer = [np.concatenate(c, axis=0).T for c in chunks]  # (units, examples)
    values = np.ascontiguousarray(np.concatenate(per_layer, axis=0), dtype=np.float32)
    sizes = tuple(int(a.shape[0]) for a in per_layer)
    if drop_constant:
        mask = values.max(axis=1) > values.min(axis=1)
    else:
        mask = np.ones(values.shape[0], dtype=bool)
    if not mask.any():
        raise ValueError("no unit's activation varies over the examples: nothing to correlate")
    return UnitActivations(values=values[mask], mask=mask, layer_sizes=sizes, kind=kind)


# ----------------------------------------------------------------------------------------------
# a user's network as a module


def _mlp_from_matrices(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray | None]) -> Any:
    """``Linear -> ReLU -> ... -> Linear`` with the given (n_in, n_out) kernels and biases."""
    import torch
    from torch import nn

    layers: list[Any] = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        lin = nn.Linear(w.shape[0], w.shape[1], bias=True)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.asarray(w, dtype=np.float32).T))
            lin.bias.copy_(
                torch.as_tensor(
                    np.zeros(w.shape[1]) if b is None else np.array(b), dtype=torch.float32
                )
            )
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


def _pair_biases(arrays: Sequence[np.ndarray], names: Sequence[str]) -> tuple[list, list]:
    """Split 2-D kernels and the 1-D biases that follow them."""
    weights: list[np.ndarray] = []
    biases: list[np.ndarray | None] = []
    for arr, name in zip(arrays, names, strict=True):
        if arr.ndim == 2:
            weights.append(arr)
            biases.append(None)
        elif (
            arr.ndim == 1
            and weights
            and biases[-1] is None
            and arr.shape[0] == weights[-1].shape[1]
        ):
            biases[-1] = arr
        else:
            raise ValueError(
                f"{name} has shape {arr.shape}; expected (n_in, n_out) weight matrices, each "
                "optionally followed by its (n_out,) bias"
            )
    return weights, biases


def _small_cnn_from_state(state: dict[str, Any], path: Path) -> Any:
    """The harness's SmallCNN with the shapes of ``state`` (its own state dict layout)."""
    from harness.models import SmallCNN

    convs = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
    dense = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    try:
        model = SmallCNN(
            in_shape=(int(convs[0].shape[1]), 28, 28),
            channels=[int(c.shape[0]) for c in convs],
            dense=[int(d.shape[0]) for d in dense[:-1]],
            n_classes=int(dense[-1].shape[0]) if dense else 10,
        )
        model.load_state_dict(state)
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"{path} is a conv state dict that does not fit the harness's SmallCNN "
            f"({str(exc).splitlines()[0]}); pass the torch module itself to the library"
        ) from None
    return model.eval()


def as_module(source: Any) -> Any:
    """A user's network as a torch module whose forward pass can be recorded.

    Parameters
    ----------
    source : torch.nn.Module, sequence of arrays, or path
        * a module: returned as is;
        * (n_in, n_out) weight matrices (a sequence or a ``.npz``), each optionally followed
          by its 1-D bias (zero biases otherwise): a ReLU MLP, as the paper's;
        * a torch state dict (``.pt``, ``.pth``, ``.safetensors``): of 2-D ``*.weight`` and
          ``*.bias`` tensors (a ReLU MLP; layers in the file's order, or for ``.safetensors``,
          which sorts its keys, in the natural order of their module paths), or of the
          harness's :class:`~harness.models.SmallCNN` (28 x 28 inputs).

    Returns
    -------
    torch.nn.Module in eval mode
    """
    import torch

    if isinstance(source, torch.nn.Module):
        return source
    if isinstance(source, (str, Path)) or hasattr(source, "__fspath__"):
        path = Path(source)
        if path.suffix.lower() in STATE_DICT_SUFFIXES:
            state = read_state_dict(path)
            state_dict_kernels(state, path)  # the same checks and messages as `harness cluster`
            if any(v.dim() == 4 for v in state.values() if hasattr(v, "dim")):
                return _small_cnn_from_state(state, path)
            keys = [k for k, v in state.items() if hasattr(v, "dim") and v.dim() in (1, 2)]
            if path.suffix.lower() == ".safetensors":
                # safetensors stores keys sorted by name: restore layer order (natural order
                # of the module path, layers.2 before layers.10) and weight before bias.
                def layer_order(key: str) -> tuple[Any, bool]:
                    prefix, _, leaf = key.rpartition(".")
                    return natural_key(prefix), leaf != "weight"

                keys.sort(key=layer_order)
            arrays = [
                state[k].detach().cpu().numpy().T
                if state[k].dim() == 2
                else state[k].detach().cpu().numpy()
                for k in keys
            ]
            return _mlp_from_matrices(*_pair_biases(arrays, keys))
        arrays, names = load_npz(path)
    elif isinstance(source, Sequence) and not isinstance(source, str):
        arrays = [np.asarray(a) for a in source]
        names = [f"array {i}" for i in range(len(arrays))]
    else:
        raise TypeError(
            f"cannot build a network from {type(source).__name__}; pass a torch module, weight "
            "matrices, a .npz of them or a torch state dict"
        )
    if any(a.ndim == 4 for a in arrays):
        raise ValueError(
            "conv kernels alone do not define a forward pass (pooling, dense head); pass the "
            "torch module or its state dict (.pt) instead"
        )
    weights, biases = _pair_biases(arrays, names)
    for i in range(1, len(weights)):
        if weights[i - 1].shape[1] != weights[i].shape[0]:
            raise ValueError(
                f"weight {i - 1} has shape {weights[i - 1].shape} but weight {i} has shape "
                f"{weights[i].shape}: the layers do not chain"
            )
    return _mlp_from_matrices(weights, biases)
