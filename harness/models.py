"""The networks of the paper in torch: MLP, small CNN and CIFAR-10 VGG, with Keras-like init.

Filan et al. (2021) trained Keras models (reference §2.2-2.4). The torch modules here have
the same layers, activations and dropout placement; differences that do not change what the
clustering sees are documented where they occur:

* Outputs are **logits**; the softmax lives in the loss (``torch.nn.functional.cross_entropy``).
  ``argmax`` of the logits equals ``argmax`` of the Keras softmax.
* Kernels are stored in torch layout (``nn.Linear.weight`` is ``(out, in)``, conv weights
  ``(out, in, kh, kw)``). :func:`weight_matrices` and :func:`conv_kernels` return the Keras
  layout the rest of the project uses: ``(in, out)`` and ``(kh, kw, in, out)``.
* Flatten happens in torch's channel-first order ``(C, H, W)`` rather than Keras'
  ``(H, W, C)``; this permutes the rows of the first dense kernel after the convolutions, which
  the clustering never uses (only conv->conv adjacencies are clustered, §3.3).

Initialisation follows Keras defaults (``glorot_uniform`` kernels, zero biases, BN gamma=1,
beta=0) from an explicit seed, and :func:`clusterable_init_` implements the paper's "modular"
initialisation (§2.7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.options import check_choice
from harness.random_init import CONV_BETWEEN, MLP_BETWEEN, module_multipliers
from harness.seeding import check_seed, stream_seed

__all__ = [
    "MLP",
    "SmallCNN",
    "VGG",
    "VGG_FILTERS",
    "VGG_POOL_AFTER",
    "VGG_DROPOUT",
    "ARCHS",
    "build_model",
    "keras_init_",
    "clusterable_init_",
    "weight_matrices",
    "conv_kernels",
    "kernel_layers",
]

ARCHS = ("mlp", "cnn", "vgg")

# Keras BatchNormalization defaults: momentum 0.99 (torch counts the other way) and eps 1e-3.
_BN_MOMENTUM = 0.01
_BN_EPS = 1e-3

# CIFAR-10 VGG of geifmany/cifar-vgg as used by the paper (§2.4).
VGG_FILTERS: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG_POOL_AFTER: tuple[bool, ...] = tuple(i in (1, 3, 6, 9, 12) for i in range(13))
VGG_DROPOUT: tuple[float, ...] = (0.3, 0.0, 0.4, 0.0, 0.4, 0.4, 0.0, 0.4, 0.4, 0.0, 0.4, 0.4, 0.5)


class MLP(nn.Module):
    """Fully connected ReLU network of §2.2.

    ``Linear(in, w0) -> ReLU -> [Dropout] -> ... -> Linear(w_last, n_out)``: every hidden layer
    is followed by a ReLU and, when ``dropout > 0``, by ``Dropout(dropout)``; there is no dropout
    on the input. The output layer is linear (logits for classification, values for regression).

    Parameters
    ----------
    in_features : int
        Input size (784 for 28x28 images, 49 for small MNIST, 2 for poly).
    widths : sequence of int
        Hidden layer widths, default four layers of 256.
    n_out : int
        Number of outputs (classes, or 512 for poly regression).
    dropout : float
        Dropout rate after every hidden layer, in [0, 1).

    Notes
    -----
    Inputs with more than two dimensions are flattened, so ``(N, 28, 28)`` images work too.
    """

    def __init__(
        self,
        in_features: int = 784,
        widths: Sequence[int] = (256, 256, 256, 256),
        n_out: int = 10,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check_positive("in_features", in_features)
        _check_positive("n_out", n_out)
        widths = tuple(int(w) for w in widths)
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths}")
        _check_rate("dropout", dropout)
        self.in_features = int(in_features)
        self.widths = widths
        self.n_out = int(n_out)
        self.dropout = float(dropout)
        layers: list[nn.Module] = []
        previous = self.in_features
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = width
        layers.append(nn.Linear(previous, self.n_out))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() > 2:
            x = x.flatten(1)
        return self.layers(x)

    def extra_repr(self) -> str:
        sizes = "-".join(str(s) for s in (self.in_features, *self.widths, self.n_out))
        return f"{sizes}, dropout={self.dropout}"


class SmallCNN(nn.Module):
    """The small CNN of §2.3.

    Default: ``Conv64 -> [Drop .25] -> Conv64 -> MaxPool -> [Drop .25] -> Conv64 -> MaxPool
    -> [Drop .25] -> Flatten (64*7*7) -> Dense128 -> [Drop .5] -> Dense(n_classes)``, 3x3
    'same' convolutions with ReLU, 2x2 'valid' max-pooling, no batch norm.

    Parameters
    ----------
    in_shape : (C, H, W)
        Input shape; (1, 28, 28) for MNIST, (2, 28, 28) for the stacked datasets.
    channels : sequence of int
        Filters of each conv layer.
    pool_after : sequence of bool or None
        Max-pool after each conv layer; default: after every layer but the first.
    dense : sequence of int
        Widths of the hidden dense layers.
    n_classes : int
        Output size.
    dropout : bool
        Add the dropout layers (rates ``conv_dropout`` / ``dense_dropout``).
    conv_dropout, dense_dropout : float
        Dropout rates after each conv block and each hidden dense layer.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (1, 28, 28),
        channels: Sequence[int] = (64, 64, 64),
        pool_after: Sequence[bool] | None = None,
        dense: Sequence[int] = (128,),
        n_classes: int = 10,
        dropout: bool = False,
        conv_dropout: float = 0.25,
        dense_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        shape = _check_image_shape(in_shape)
        channels = tuple(int(ch) for ch in channels)
        if not channels or any(ch <= 0 for ch in channels):
            raise ValueError(f"channels must be non-empty positive ints, got {channels}")
        if pool_after is None:
            pool_after = tuple(i > 0 for i in range(len(channels)))
        pool_after = tuple(bool(p) for p in pool_after)
        if len(pool_after) != len(channels):
            raise ValueError(
                f"pool_after has {len(pool_after)} entries but there are {len(channels)} conv layers"
            )
        _check_rate("conv_dropout", conv_dropout)
        _check_rate("dense_dropout", dense_dropout)
        _check_positive("n_classes", n_classes)
        self.in_shape = shape
        self.channels = channels
        self.pool_after = pool_after
        self.dense_widths = tuple(int(d) for d in dense)
        self.n_classes = int(n_classes)
        self.dropout = bool(dropout)
        rates = (float(conv_dropout) if dropout else 0.0,) * len(channels)
        self.features, flat = _conv_blocks(
            self.in_shape, channels, pool_after, rates, batch_norm=False
        )
        head: list[nn.Module] = [nn.Flatten()]
        for width in self.dense_widths:
            head += [nn.Linear(flat, width), nn.ReLU()]
            if dropout and dense_dropout > 0:
                head.append(nn.Dropout(dense_dropout))
            flat = width
        head.append(nn.Linear(flat, self.n_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_as_image_batch(x, self.in_shape)))


class VGG(nn.Module):
    """The CIFAR-10 VGG of §2.4 (after geifmany/cifar-vgg).

    Each block is ``Conv3x3('same') -> ReLU -> [MaxPool 2x2] -> BatchNorm -> [Dropout]``; the
    head is ``Flatten -> Dense512 -> ReLU -> BN -> [Drop .5] -> Dense512 -> ReLU -> [Drop 0]
    -> Dense(n_classes)``. Without ``dropout`` there are no dropout layers at all. BN uses the
    Keras defaults (momentum 0.99, eps 1e-3).

    Parameters
    ----------
    in_shape : (C, H, W)
        Input shape, (3, 32, 32) for CIFAR-10.
    filters, pool_after, conv_dropout : sequences of equal length
        Per conv layer: filters, max-pool after it, dropout rate after it (when ``dropout``).
    dense : sequence of int
        Hidden dense widths; BN follows the first one only, as in the original.
    dense_dropout : float
        Dropout after the first hidden dense layer (the second one gets rate 0, as in §2.4).
    n_classes : int
        Output size.
    dropout : bool
        Add the dropout layers.
    """

    def __init__(
        self,
        in_shape: Sequence[int] = (3, 32, 32),
        filters: Sequence[int] = VGG_FILTERS,
        pool_after: Sequence[bool] = VGG_POOL_AFTER,
        conv_dropout: Sequence[float] = VGG_DROPOUT,
        dense: Sequence[int] = (512, 512),
        dense_dropout: float = 0.5,
        n_classes: int = 10,
        dropout: bool = False,
    ) -> None:
        super().__init__()
        shape = _check_image_shape(in_shape)
        filters = tuple(int(f) for f in filters)
        pool_after = tuple(bool(p) for p in pool_after)
        conv_dropout = tuple(float(r) for r in conv_dropout)
        if not (len(filters) == len(pool_after) == len(conv_dropout)) or not filters:
            raise ValueError(
                "filters, pool_after and conv_dropout must be non-empty and of equal length, got "
                f"{len(filters)}, {len(pool_after)}, {len(conv_dropout)}"
            )
        for rate in (*conv_dropout, dense_dropout):
            _check_rate("dropout rate", rate)
        self.in_shape = shape
        self.channels = filters
        self.n_classes = int(n_classes)
        self.dropout = bool(dropout)
        rates = conv_dropout if dropout else (0.0,) * len(filters)
        self.features, flat = _conv_blocks(self.in_shape, filters, pool_after, rates, batch_norm=True)
        head: list[nn.Module] = [nn.Flatten()]
        for i, width in enumerate(dense):
            head += [nn.Linear(flat, int(width)), nn.ReLU()]
            if i == 0:
                head.append(nn.BatchNorm1d(int(width), eps=_BN_EPS, momentum=_BN_MOMENTUM))
                if dropout and dense_dropout > 0:
                    head.append(nn.Dropout(dense_dropout))
            flat = int(width)
        head.append(nn.Linear(flat, self.n_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(_as_image_batch(x, self.in_shape)))


def _conv_blocks(
    in_shape: tuple[int, int, int],
    channels: Sequence[int],
    pool_after: Sequence[bool],
    dropout: Sequence[float],
    *,
    batch_norm: bool,
) -> tuple[nn.Sequential, int]:
    """The conv blocks of the CNNs and the size of their flattened output.

    Per conv layer: ``Conv3x3('same') -> ReLU -> [MaxPool 2x2] -> [BatchNorm] -> [Dropout]``,
    the dropout only where its rate is positive.
    """
    _, h, w = in_shape
    blocks: list[nn.Module] = []
    previous = in_shape[0]
    for ch, pool, rate in zip(channels, pool_after, dropout, strict=True):
        blocks += [nn.Conv2d(previous, ch, 3, padding=1), nn.ReLU()]
        if pool:
            blocks.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        if batch_norm:
            blocks.append(nn.BatchNorm2d(ch, eps=_BN_EPS, momentum=_BN_MOMENTUM))
        if rate > 0:
            blocks.append(nn.Dropout(rate))
        previous = ch
    if h == 0 or w == 0:
        raise ValueError(f"input {tuple(in_shape)} is too small for {sum(pool_after)} pools")
    return nn.Sequential(*blocks), previous * h * w


# ----------------------------------------------------------------------------------------------
# Building and initialising


def build_model(
    config: Any,
    *,
    input_shape: Sequence[int] | None = None,
    n_out: int | None = None,
    init: bool = True,
) -> nn.Module:
    """Build the initialised network described by a training config.

    Parameters
    ----------
    config : harness.configs.TrainConfig
        Uses ``arch``, ``widths``, ``dense_widths``, ``dropout``, ``conv_dropout``,
        ``init_modules``, ``seed`` and, unless given here, ``input_shape`` / ``n_out``
        (filled in by ``TrainConfig.resolved(dataset)``).
    input_shape : sequence of int, optional
        Per-example input shape, ``(in_features,)`` for an MLP or ``(C, H, W)`` for a CNN.
    n_out : int, optional
        Number of outputs.
    init : bool
        Apply the seeded init below. False skips it (for loading a state dict right after);
        the parameters then hold torch's default init.

    Returns
    -------
    torch.nn.Module
        On the CPU, in training mode, with Keras-like init from ``stream_seed(config.seed, 0)``
        and, when ``config.init_modules > 0``, the clusterable init of §2.7 with modules drawn
        from ``stream_seed(config.seed, 1)``. The global torch RNG is left untouched.
    """
    arch = str(config.arch)
    check_choice("arch", arch, ARCHS)
    shape = tuple(input_shape if input_shape is not None else (config.input_shape or ()))
    n = n_out if n_out is not None else config.n_out
    if not shape or n is None:
        raise ValueError(
            "the model's input shape and output size are unknown: call "
            "config.resolved(dataset) first or pass input_shape= and n_out="
        )
    widths = tuple(config.widths) if config.widths is not None else None
    dense = tuple(config.dense_widths) if getattr(config, "dense_widths", None) is not None else None
    dropout = float(config.dropout)
    # Module construction draws torch's default init from the global RNG; fork it so building a
    # model never changes the caller's random state (our init below overwrites all of it).
    with torch.random.fork_rng(devices=[]):
        model: nn.Module
        if arch == "mlp":
            in_features = math.prod(shape)
            model = MLP(in_features, widths or (256,) * 4, int(n), dropout)
        elif arch == "cnn":
            model = SmallCNN(
                _image_shape(shape),
                channels=widths or (64, 64, 64),
                dense=dense if dense is not None else (128,),
                n_classes=int(n),
                dropout=dropout > 0,
                conv_dropout=float(getattr(config, "conv_dropout", 0.25)),
                dense_dropout=dropout,
            )
        else:
            model = VGG(
                _image_shape(shape),
                filters=widths or VGG_FILTERS,
                pool_after=_vgg_pools(widths),
                conv_dropout=_vgg_dropout(widths),
                dense=dense if dense is not None else (512, 512),
                dense_dropout=dropout,
                n_classes=int(n),
                dropout=dropout > 0,
            )
    if not init:
        return model
    keras_init_(model, seed=stream_seed(check_seed(config.seed), 0))
    n_modules = int(getattr(config, "init_modules", 0) or 0)
    if n_modules > 0:
        clusterable_init_(model, n_modules=n_modules, seed=stream_seed(check_seed(config.seed), 1))
    return model


def keras_init_(model: nn.Module, *, seed: int) -> nn.Module:
    """Keras default init in place: glorot-uniform kernels, zero biases, BN gamma=1, beta=0.

    Glorot uniform draws from U(-a, a) with ``a = sqrt(6 / (fan_in + fan_out))``; for a conv
    kernel the fans are channels x kh x kw, which is what ``nn.init.xavier_uniform_`` computes.
    Layers are initialised in module order from one ``torch.Generator`` seeded with ``seed``.
    """
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                # Draw on the CPU then copy, so the values do not depend on the device.
                kernel = torch.empty(module.weight.shape)
                nn.init.xavier_uniform_(kernel, generator=generator)
                module.weight.copy_(kernel)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.reset_parameters()
    return model


def clusterable_init_(model: nn.Module, *, n_modules: int = 10, seed: int) -> list[np.ndarray]:
    """Rescale weights in place so the network starts out modular (§2.7).

    Every unit (MLP) or filter (CNN/VGG) gets a module uniformly at random in
    ``0..n_modules-1``. A kernel entry connecting two units of the same module is multiplied by
    ``up``, other entries by ``down``, with ``up = 1 + (1 - down)(n_modules - 1)`` so that the
    expected multiplier ``up / M + down (M - 1) / M`` is exactly 1.

    * MLP: ``down = 0.6`` (``up = 4.6`` for 10 modules). Units of the input and every hidden
      layer get random modules; output units get module = class index when
      ``n_out <= n_modules`` (random otherwise). The first Linear (input -> h1) is left alone.
    * CNN / VGG: ``down = 0.8`` (``up = 2.8``). Random module per filter of each conv layer; conv
      layers after the first are rescaled per ``(in filter, out filter)`` slice; dense layers
      are left alone.

    Parameters
    ----------
    model : MLP, SmallCNN or VGG
    n_modules : int
        Number of modules M (the paper uses 10).
    seed : int
        Seed of the module draw.

    Returns
    -------
    list of ndarray of int
        MLP: one array per layer of units (input, hidden..., output), lengths
        ``(n_in, w_1, ..., n_out)``. CNN/VGG: one array per conv layer, of length its filters.
    """
    if int(n_modules) < 1:
        raise ValueError(f"n_modules must be >= 1, got {n_modules}")
    m = int(n_modules)
    rng = np.random.default_rng(seed)
    if isinstance(model, MLP):
        linears = [layer for layer in model.layers if isinstance(layer, nn.Linear)]
        sizes = [linears[0].in_features] + [layer.out_features for layer in linears]
        modules = [rng.integers(0, m, size=s) for s in sizes[:-1]]
        n_out = sizes[-1]
        modules.append(np.arange(n_out) if n_out <= m else rng.integers(0, m, size=n_out))
        up, down = module_multipliers(m, between=MLP_BETWEEN)
        with torch.no_grad():
            for k, layer in enumerate(linears):
                if k == 0:
                    continue
                same = modules[k][:, None] == modules[k + 1][None, :]  # (in, out)
                multiplier = np.where(same, up, down).T  # torch layout (out, in)
                layer.weight.mul_(torch.as_tensor(multiplier, dtype=layer.weight.dtype,
                                                  device=layer.weight.device))
        return modules
    if isinstance(model, (SmallCNN, VGG)):
        convs = [layer for layer in model.features if isinstance(layer, nn.Conv2d)]
        modules = [rng.integers(0, m, size=conv.out_channels) for conv in convs]
        up, down = module_multipliers(m, between=CONV_BETWEEN)
        with torch.no_grad():
            for c in range(1, len(convs)):
                same = modules[c][:, None] == modules[c - 1][None, :]  # (out, in)
                factor = torch.as_tensor(np.where(same, up, down), dtype=convs[c].weight.dtype,
                                         device=convs[c].weight.device)
                convs[c].weight.mul_(factor[:, :, None, None])
        return modules
    raise TypeError(f"clusterable_init_ supports MLP, SmallCNN and VGG, got {type(model).__name__}")


# ----------------------------------------------------------------------------------------------
# Weights in the project's (Keras) layout


def kernel_layers(model: nn.Module) -> list[nn.Linear | nn.Conv2d]:
    """All ``nn.Linear`` and ``nn.Conv2d`` layers in forward order (the prunable kernels)."""
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def weight_matrices(model: nn.Module) -> list[np.ndarray]:
    """Dense kernels in forward order, in the project's ``(n_in, n_out)`` layout.

    Returns
    -------
    list of ndarray, float32
        ``W_l`` of shape ``(n_l, n_{l+1})`` (the transpose of ``nn.Linear.weight``); copies,
        so editing them does not change the model. For an MLP this is the whole network; for a
        CNN only the dense part (see :func:`conv_kernels`).
    """
    return [
        np.ascontiguousarray(m.weight.detach().cpu().numpy().T)
        for m in model.modules()
        if isinstance(m, nn.Linear)
    ]


def conv_kernels(model: nn.Module) -> list[np.ndarray]:
    """Conv kernels in forward order, in Keras layout ``(kh, kw, in_channels, out_channels)``.

    Returns
    -------
    list of ndarray, float32
        Copies of ``conv.weight`` (torch ``(out, in, kh, kw)``) permuted to ``(kh, kw, in, out)``,
        the layout the filters-as-units graph (§3.3) indexes.
    """
    return [
        np.ascontiguousarray(m.weight.detach().cpu().numpy().transpose(2, 3, 1, 0))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]


# ----------------------------------------------------------------------------------------------
# Helpers


def _check_positive(name: str, value: int) -> None:
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def _check_image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"in_shape must be (channels, height, width), got {shape}")
    return shape[0], shape[1], shape[2]


def _image_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Accept (H, W) or (C, H, W) per-example shapes for the CNNs."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        return (1, *shape)
    return _check_image_shape(shape)


def _as_image_batch(x: torch.Tensor, in_shape: tuple[int, int, int]) -> torch.Tensor:
    """Reshape a batch to ``(N, C, H, W)``: accepts flat, ``(N, H, W)`` and channel-last input."""
    c, h, w = in_shape
    if x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w):
        return x
    if x.dim() == 4 and tuple(x.shape[1:]) == (h, w, c):
        return x.permute(0, 3, 1, 2)
    if x.dim() in (2, 3) and math.prod(x.shape[1:]) == c * h * w:
        return x.reshape(x.shape[0], c, h, w)
    raise ValueError(f"expected a batch of {in_shape} images, got shape {tuple(x.shape)}")


def _vgg_pools(widths: Sequence[int] | None) -> tuple[bool, ...]:
    if widths is None or len(widths) == len(VGG_FILTERS):
        return VGG_POOL_AFTER
    raise ValueError(
        f"a VGG with {len(widths)} conv layers needs its own pool/dropout pattern; "
        f"build harness.models.VGG directly or use the default {len(VGG_FILTERS)} layers"
    )


def _vgg_dropout(widths: Sequence[int] | None) -> tuple[float, ...]:
    _vgg_pools(widths)
    return VGG_DROPOUT
