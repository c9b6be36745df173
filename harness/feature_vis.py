"""Feature visualisation of sub-clusters against random unit sets (reference §7.5, Table N).

For every sub-cluster of a layer (the units of one K = 12 cluster in one hidden layer, or the
filters of one cluster in one conv layer; :func:`harness.lesion.sub_clusters`) whose size is
above ``min_size`` (5) and below ``max_fraction`` (80%) of the layer, an input image is
optimised to maximise the summed activation of its units, and the same is done for
``n_random`` (9) random same-size sets of the layer's units (:func:`harness.lesion.random_units`).
Each image is scored by the **objective** it reached and by the **entropy** of the network's
softmax output on it. If sub-clusters are "about one thing", their images should be more
class-like (lower entropy) and easier to excite (higher objective) than random sets'. Per
sub-cluster the true image gets a permutation p-value among its random controls (entropy:
left side, :func:`harness.stats.pvalue`; objective: right side); over the network the
p-values are combined with the chi-square rank test and Fisher's method of §6.5
(:func:`harness.stats.chi2_rank_test`, :func:`harness.stats.fisher_combined`), and the effect
factors are ``mean(random) / true``, averaged over sub-clusters.

The optimisation (:func:`visualise`) follows lucid's defaults as the paper ran them
(``render_vis`` with ``param.image``): the image is parameterised in Fourier space with
``1/f`` scaled frequencies (``decay_power = 1``), initialised at SD 0.01, divided by 4 and
squashed into [0, 1] by a sigmoid, the input range the networks were trained on; Adam with
learning rate 0.05 runs 256 steps. The objective of a unit is its post-ReLU activation (a
conv filter's averaged over positions, as lucid's ``channel`` objective); a unit set's is
the sum over its units. As in lucid, the gradient of that ReLU is redirected while none of
an image's units is active (otherwise a set that is silent on the grey start image never
moves). All images of one layer are optimised together as one batch, and the
forward pass stops at that layer.

Differences from the paper's run:

* lucid's random transformations (jitter, scale, rotate: its "standard transforms", padded
  by 12 pixels) are not applied: they were designed for 224-pixel ImageNet inputs and would
  move a 28-pixel MNIST digit by half its width.
* The paper's ``+LUCID`` MLPs and CNNs were trained on a pixel-scrambled 3-channel copy of
  MNIST (reference §1.4, bug 16) only so that lucid's RGB parameterisation applied; here the
  plain MNIST networks are visualised with a one-channel image.

Why no library: torch-lucent 0.1.8, the torch port of lucid (last release 2021), requires
``torchvision`` and ``kornia<=0.4.1`` (which pull another torch than the pinned 2.13.0) and
lists pytest and coveralls as run-time dependencies; captum's optimisation module
(``captum.optim``) was never released (captum 0.9.0 on PyPI has no ``optim`` package). Both
parameterise RGB images for ImageNet models. The few functions needed are below.

References
----------
Olah, Mordvintsev & Schubert (2017), "Feature Visualization", Distill.
Filan et al. (2021), "Clusterability in Neural Networks", §5 (feature visualisation).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import nn

from harness import stats
from harness.lesion.units import SubCluster, layer_pool, random_units, sub_clusters
from harness.models import kernel_layers

__all__ = [
    "FeatureVisResult",
    "MAX_FRACTION",
    "MIN_SIZE",
    "N_RANDOM",
    "STEPS",
    "feature_vis_test",
    "fft_image",
    "visualise",
]

#: Sub-clusters of at most this many units are skipped (the paper's ``min_size``).
MIN_SIZE = 5
#: ... and so are those of at least this fraction of their layer.
MAX_FRACTION = 0.8
#: Random same-size unit sets per sub-cluster (the paper's ``n_random``).
N_RANDOM = 9
#: Optimisation steps (lucid's ``thresholds=(256,)``).
STEPS = 256
#: lucid's Adam learning rate.
LEARNING_RATE = 0.05


class _Reached(Exception):
    """Raised by the forward hook once the layer's output is captured: skips the rest."""


class _RedirectedReLU(torch.autograd.Function):
    """ReLU whose gradient still flows through inactive units of an image none of whose units
    get a gradient, when it pushes them up: lucid's ``redirected_relu_grad``, without which an
    objective of units that are all inactive on the start image never moves."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        inactive = x < 0
        relu_grad = grad.masked_fill(inactive, 0.0)
        # ``grad > 0`` lowers the loss by lowering x: never push an inactive unit further down.
        redirected = grad.masked_fill(inactive & (grad > 0), 0.0)
        live = relu_grad.flatten(1).norm(dim=1) > 0
        return torch.where(live.view(-1, *([1] * (x.dim() - 1))), relu_grad, redirected)


def fft_image(
    n_images: int,
    shape: Sequence[int],
    *,
    generator: torch.Generator,
    sd: float = 0.01,
    decay_power: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """lucid's ``fft_image`` parameterisation: spectrum parameters and their frequency scale.

    Parameters
    ----------
    n_images : int
    shape : (C, H, W)
    generator : torch.Generator
        Draws the initial spectrum (normal, SD ``sd``).
    sd, decay_power : float
        lucid's defaults (0.01, 1).

    Returns
    -------
    spectrum : Tensor of shape (n_images, C, H, W // 2 + 1, 2), requires grad
    scale : Tensor of shape (H, W // 2 + 1, 1)
        ``sqrt(H W) / max(f, 1 / max(H, W)) ** decay_power``; the image is
        :func:`_to_image` of both.
    """
    c, h, w = (int(s) for s in shape)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    scale = 1.0 / np.maximum(freqs, 1.0 / max(w, h)) ** decay_power * math.sqrt(w * h)
    spectrum = torch.randn(n_images, c, h, w // 2 + 1, 2, generator=generator) * sd
    return spectrum.requires_grad_(True), torch.as_tensor(scale, dtype=torch.float32)[..., None]


def _to_image(spectrum: torch.Tensor, scale: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Images in [0, 1] of shape (n, C, H, W) from the scaled spectrum (lucid: /4, sigmoid)."""
    h, w = int(shape[1]), int(shape[2])
    scaled = torch.view_as_complex((spectrum * scale).contiguous())
    # torch's default ("backward") inverse divides by H W, as tensorflow's irfft2d in lucid.
    return torch.sigmoid(torch.fft.irfft2(scaled, s=(h, w)) / 4.0)


def visualise(
    model: nn.Module,
    layer: int,
    unit_sets: Sequence[ArrayLike],
    *,
    image_shape: Sequence[int],
    flatten: bool | None = None,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    seed: int = 0,
) -> tuple[NDArray[np.float32], NDArray[np.float64], NDArray[np.float64]]:
    """Optimise one image per unit set to maximise the set's summed activation in ``layer``.

    Parameters
    ----------
    model : nn.Module
        An MLP or CNN of ``nn.Linear`` / ``nn.Conv2d`` layers, each hidden one followed by a
        ReLU (the harness's networks; a hand-built one works too).
    layer : int
        Which activation: the output of kernel layer ``layer`` (1-based, in forward order;
        for an MLP hidden layer ``l`` of the weight graph, for a CNN conv layer ``l``) after
        its ReLU.
    unit_sets : sequence of array-like of int
        The units (rows of a Linear layer, filters of a Conv2d) of each image's objective.
    image_shape : (C, H, W)
    flatten : bool, optional
        Flatten the image before the forward pass (default: when the first kernel layer is
        Linear).
    steps : int, default=256
    lr : float, default=0.05
    seed : int
        Seeds the initial spectra.

    Returns
    -------
    images : ndarray of float32, shape (n_sets, C, H, W)
        In [0, 1].
    objective : ndarray of float64, shape (n_sets,)
        The summed activation each image reaches (conv filters: averaged over positions).
    entropy : ndarray of float64, shape (n_sets,)
        Entropy (nats) of the network's softmax output on each image.
    """
    kernels = kernel_layers(model)
    if not 1 <= int(layer) <= len(kernels):
        raise ValueError(f"layer must be in 1..{len(kernels)} (kernel layers), got {layer!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    target = kernels[int(layer) - 1]
    n_units = target.out_features if isinstance(target, nn.Linear) else target.out_channels
    sets = [np.asarray(s, dtype=np.int64).ravel() for s in unit_sets]
    if not sets:
        raise ValueError("unit_sets is empty")
    membership = torch.zeros(len(sets), n_units)
    for i, units in enumerate(sets):
        if units.size == 0 or units.min() < 0 or units.max() >= n_units:
            raise ValueError(f"unit set {i} must hold units in 0..{n_units - 1}, got {units}")
        membership[i, torch.as_tensor(units)] = 1.0
    if flatten is None:
        flatten = isinstance(kernels[0], nn.Linear)
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    membership = membership.to(dtype=dtype, device=device)
    spectrum, scale = fft_image(
        len(sets), image_shape, generator=torch.Generator().manual_seed(int(seed))
    )
    spectrum = spectrum.detach().to(device).requires_grad_(True)
    scale = scale.to(device)
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        captured.append(output)
        raise _Reached

    def objective(images: torch.Tensor) -> torch.Tensor:
        captured.clear()
        x = images.to(dtype).flatten(1) if flatten else images.to(dtype)
        handle = target.register_forward_hook(hook)
        try:
            model(x)
        except _Reached:
            pass
        finally:
            handle.remove()
        act = _RedirectedReLU.apply(captured[0])
        if act.dim() > 2:  # conv: lucid's channel objective averages over positions
            act = act.flatten(2).mean(2)
        return (act * membership).sum(1)

    was_training = model.training
    model.eval()
    try:
        optimiser = torch.optim.Adam([spectrum], lr=float(lr))
        for _ in range(steps):
            loss = -objective(_to_image(spectrum, scale, image_shape)).sum()
            (grad,) = torch.autograd.grad(loss, [spectrum])
            spectrum.grad = grad
            optimiser.step()
        with torch.no_grad():
            images = _to_image(spectrum, scale, image_shape)
            reached = objective(images)
            x = images.to(dtype).flatten(1) if flatten else images.to(dtype)
            logp = F.log_softmax(model(x).double(), dim=1)
            entropy = -(logp.exp() * logp).sum(1)
    finally:
        model.train(was_training)
    return (
        images.cpu().numpy().astype(np.float32),
        reached.double().cpu().numpy(),
        entropy.cpu().numpy(),
    )


@dataclass(frozen=True, repr=False)
class FeatureVisResult:
    """Feature visualisation of a network's sub-clusters against random sets (Table N).

    Attributes
    ----------
    sub_clusters : tuple of SubCluster
        The visualised sub-clusters (size filter applied).
    true_objective, true_entropy : ndarray of shape (S,)
    random_objective, random_entropy : ndarray of shape (S, n_random)
    images : ndarray of shape (S, C, H, W)
        The true sub-clusters' images.
    n_random, steps : int
    """

    sub_clusters: tuple[SubCluster, ...]
    true_objective: NDArray[np.float64]
    true_entropy: NDArray[np.float64]
    random_objective: NDArray[np.float64]
    random_entropy: NDArray[np.float64]
    images: NDArray[np.float32] = field(repr=False)
    n_random: int = N_RANDOM
    steps: int = STEPS

    @property
    def p_entropy(self) -> NDArray[np.float64]:
        """Per sub-cluster: left-side p of the true entropy among its random sets'."""
        return np.array([stats.pvalue(t, r, side="left")
                         for t, r in zip(self.true_entropy, self.random_entropy, strict=True)])

    @property
    def p_objective(self) -> NDArray[np.float64]:
        """Per sub-cluster: right-side p of the true objective among its random sets'."""
        return np.array([stats.pvalue(t, r, side="right")
                         for t, r in zip(self.true_objective, self.random_objective, strict=True)])

    def to_row(self) -> dict[str, int | float | None]:
        """Whole-network row: the paper's Table N columns (NaN without sub-clusters)."""
        out: dict[str, int | float | None] = {
            "n_sub_clusters": len(self.sub_clusters),
            "n_random": int(self.n_random),
            "steps": int(self.steps),
        }
        for name, p, true, rand in (
            ("entropy", self.p_entropy, self.true_entropy, self.random_entropy),
            ("objective", self.p_objective, self.true_objective, self.random_objective),
        ):
            if len(p):
                out[f"chi2_p_{name}"] = stats.chi2_rank_test(p, self.n_random)
                out[f"fisher_p_{name}"] = stats.fisher_combined(p, self.n_random)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = rand.mean(1) / true
                finite = ratio[np.isfinite(ratio)]
                out[f"effect_{name}"] = float(finite.mean()) if finite.size else math.nan
                # Sub-clusters whose image beat every random set's (p = 1/(n_random+1)).
                out[f"frac_min_p_{name}"] = float(np.mean(p <= 1.0 / (self.n_random + 1) + 1e-12))
            else:
                for col in ("chi2_p", "fisher_p", "effect", "frac_min_p"):
                    out[f"{col}_{name}"] = math.nan
        return out

    def to_frame(self):  # -> pandas.DataFrame
        """One row per sub-cluster: layer, label, size, true and random means, p-values."""
        import pandas as pd

        rows = []
        for i, s in enumerate(self.sub_clusters):
            rows.append({
                **s.to_row(),
                "objective": float(self.true_objective[i]),
                "random_objective_mean": float(self.random_objective[i].mean()),
                "p_objective": float(self.p_objective[i]),
                "entropy": float(self.true_entropy[i]),
                "random_entropy_mean": float(self.random_entropy[i].mean()),
                "p_entropy": float(self.p_entropy[i]),
            })
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        row = self.to_row()
        return (
            f"FeatureVisResult(sub_clusters={row['n_sub_clusters']}, n_random={self.n_random}, "
            f"fisher_p_entropy={row['fisher_p_entropy']:.3g}, "
            f"fisher_p_objective={row['fisher_p_objective']:.3g})"
        )


def feature_vis_test(
    model: nn.Module,
    labels: ArrayLike,
    layer_sizes: Sequence[int],
    *,
    image_shape: Sequence[int],
    first_layer: int = 0,
    n_random: int = N_RANDOM,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    min_size: int = MIN_SIZE,
    max_fraction: float = MAX_FRACTION,
    seed: int = 0,
) -> FeatureVisResult:
    """Visualise every eligible sub-cluster and ``n_random`` random same-size sets (§7.5).

    Parameters
    ----------
    model : nn.Module
        The network the labels cluster (an MLP, or a CNN whose filter graph was clustered).
    labels : array-like of int, shape (sum(layer_sizes),)
        Cluster labels, -1 for removed units (:func:`harness.lesion.sub_clusters`).
    layer_sizes : sequence of int
        Widths of the layers the labels cover: every layer of an MLP (inputs first), the
        conv layers' filters of a CNN.
    image_shape : (C, H, W)
        The network's input as an image (``(1, 28, 28)`` for MNIST MLPs and CNNs).
    first_layer : int
        0 for MLP labels (hidden layers 1..L-2 are visualised), 1 for a CNN's filter labels
        (conv layers 1..n_conv).
    n_random : int, default=9
    steps, lr
        See :func:`visualise`.
    min_size, max_fraction
        A sub-cluster is kept when ``min_size < size < max_fraction * layer width``.
    seed : int
        Seeds the random sets and the initial images.

    Returns
    -------
    FeatureVisResult
    """
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 1:
        raise ValueError(f"n_random must be an int >= 1, got {n_random!r}")
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction!r}")
    chosen = [
        s for s in sub_clusters(labels, layer_sizes, first_layer=first_layer)
        if min_size < s.size < max_fraction * layer_sizes[s.layer - first_layer]
    ]
    rng = np.random.default_rng(seed)
    # Activation layer of a label layer: an MLP's hidden layer l is kernel layer l's output
    # (layer 0 is the input); a CNN's conv layer l is kernel layer l.
    true_obj, true_ent, rand_obj, rand_ent, images = [], [], [], [], []
    for layer in sorted({s.layer for s in chosen}):
        in_layer = [s for s in chosen if s.layer == layer]
        pool = layer_pool(labels, layer_sizes, layer, first_layer=first_layer)
        sets: list[NDArray[np.int64]] = []
        for s in in_layer:
            sets.append(s.unit_array())
            sets.extend(random_units(pool, s.size, rng) for _ in range(n_random))
        imgs, obj, ent = visualise(
            model, layer, sets, image_shape=image_shape, steps=steps, lr=lr,
            seed=int(rng.integers(2**31)),
        )
        per = n_random + 1
        true_obj.append(obj[::per])
        true_ent.append(ent[::per])
        rand_obj.append(obj.reshape(-1, per)[:, 1:])
        rand_ent.append(ent.reshape(-1, per)[:, 1:])
        images.append(imgs[::per])
    if not chosen:
        warnings.warn(
            f"no sub-cluster has {min_size} < size < {max_fraction:g} x its layer: nothing to "
            "visualise, the statistics are NaN", RuntimeWarning, stacklevel=2,
        )
    ordered = tuple(sorted(chosen, key=lambda s: (s.layer, s.label)))
    c, h, w = (int(v) for v in image_shape)
    return FeatureVisResult(
        ordered,
        np.concatenate(true_obj) if true_obj else np.zeros(0),
        np.concatenate(true_ent) if true_ent else np.zeros(0),
        np.concatenate(rand_obj) if rand_obj else np.zeros((0, n_random)),
        np.concatenate(rand_ent) if rand_ent else np.zeros((0, n_random)),
        np.concatenate(images) if images else np.zeros((0, c, h, w), dtype=np.float32),
        n_random=n_random,
        steps=steps,
    )
