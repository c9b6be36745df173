"""Training many same-shape networks at once, as one vectorised model (issue 23).

A small network trains one 128-example batch per step, so on a GPU kernel launches and Python
dominate, not arithmetic. :func:`train_ensemble` stacks N networks of one architecture into a
single model: MLP kernels as ``(N, out, in)`` tensors multiplied with batched matmuls
(``torch.baddbmm``), small-CNN convolutions as one grouped convolution (``groups=N``), and
trains them with one optimizer step for all. Each member keeps everything that defines it:

* its initialisation (:func:`harness.models.build_model` from its own seed, clusterable init
  included), copied into the stacked tensors;
* its example order (the same seeded ``torch.randperm`` stream as :func:`harness.training.train`);
  the training data sits on the device once and each member's batch is gathered by index;
* its dropout masks (rate per member, from its own key; see *Dropout* below);
* its regulariser (L1, L2, the first-layer L1 quirk: per-member coefficients);
* its pruning schedule and per-kernel magnitude masks;
* its own Adam state: the loss is the **sum** of the members' losses, so each member's
  gradient is its own loss's gradient, and Adam is elementwise, so one fused Adam over the
  stacked tensors is N independent Adams.

The result of each member is an ordinary :class:`~harness.trained_model.TrainResult` of its config
with ``trainer="ensemble"`` (a field of the store key, so these networks are never confused
with :func:`harness.training.train`'s).

**A member's weights do not depend on which networks share its ensemble.** Every operation
is computed per member and none mixes members (the only cross-member operation is the sum of
the losses, whose gradient is exactly 1 for each). What remains is whether a batched kernel
computes member *n*'s slice the same way whatever the batch count N:

* on the CPU (one thread, :data:`harness.training.TRAIN_THREADS`) it does, measured:
  ``baddbmm``, grouped convolutions (both layouts), their backward passes, row reductions,
  ``topk`` and fused Adam give bit-identical slices for N = 1, 2, 5 and any position in the
  batch (``tests/test_ensemble.py`` checks whole trainings);
* on CUDA, cuBLAS and cuDNN choose algorithms by shape, the batch count included, so a member
  could round differently in another ensemble. There every ensemble is cut into chunks of
  exactly :data:`CUDA_SLOTS` members, the last one padded with throw-away copies: every kernel
  then sees the same shapes whatever the group, and a member's slot only moves it within a
  batch whose kernels treat slots alike. ``bench/gpu_check.sh`` verifies it on the GPU.

*Dropout.* Dropout masks come from a counter-based hash of (member key, step, site, element
index), computed with integer tensor ops on the device: vectorised over members, identical on
every device, and a function of the member alone. (The single trainer draws from torch's
global generator, whose masks depend on the device and, batched, on the other members.) The
member key is ``stream_seed(seed, 3)``, the single trainer's dropout stream.

Apart from dropout, an ensemble member follows :func:`harness.training.train`'s computation step
by step, but batched kernels round differently: without dropout, on the CPU, the weights agree
with ``train``'s to 1e-6 after 2 epochs on 1,000 images, and after 3 epochs on 10,000 differ
as much as ``train``'s own with 1 and with 2 threads (7e-2 at most, the same test accuracy to
0.5%): another realisation of the same run. Hence the separate store key.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.configs import ENSEMBLE_ARCHS, TrainConfig
from harness.models import SmallCNN, build_model, kernel_layers
from harness.options import check_choice
from harness.seeding import stream_seed
from harness.store import Store
from harness.trained_model import PHASES, TrainedModel, TrainResult
from harness.training import (
    _DROPOUT_STREAM,
    _SHUFFLE_STREAM,
    MODEL_KIND,
    TrainingDivergedError,
    _adam,
    _penalty,
    _training_threads,
    memory_format,
    model_key_payload,
    prune_step_sparsity,
)
from harness.workers import pick_device

if TYPE_CHECKING:
    from harness.data import Dataset

__all__ = [
    "CUDA_SLOTS",
    "TRAINER_ENV",
    "default_trainer",
    "ensembles_by_default",
    "get_or_train_group",
    "group_key",
    "supports",
    "train_ensemble",
]

#: Environment variable choosing the trainer of the experiments' models: ``auto`` (default:
#: ``ensemble`` on CUDA, ``single`` on the CPU, where the ensemble is not faster), ``single``
#: or ``ensemble``.
TRAINER_ENV = "HARNESS_TRAINER"

#: Members per chunk on CUDA, by architecture: every CUDA ensemble runs in chunks of exactly
#: this many slots (the last one padded), so kernels see one shape whatever the group (module
#: docstring). 80 holds the 75 networks of ``make bench`` in one chunk.
CUDA_SLOTS = {"mlp": 80, "cnn": 16}

# Fewest members of a chunk, by architecture (padded with throw-away copies): see
# train_ensemble.
_MIN_SLOTS = {"cnn": 2}

# The config fields members of one ensemble share (of the resolved config).
_SHARED = ("dataset", "data_seed", "arch", "widths", "dense_widths", "input_shape", "n_out",
           "epochs", "pruning_epochs", "batch_size", "lr", "n_train", "n_test", "shuffle",
           "augment", "trainer")

# Test-set examples per evaluation chunk: fixed, so a member's metrics do not depend on N.
_EVAL_CHUNK = 512

_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# Which trainer, which group


def supports(config: TrainConfig) -> bool:
    """Whether the ensemble trainer can train ``config`` (an MLP or small CNN, no augmentation)."""
    return config.arch in ENSEMBLE_ARCHS and not config.augment


def default_trainer(config: TrainConfig) -> str:
    """The trainer the experiments use for ``config`` on this machine.

    ``$HARNESS_TRAINER`` (``auto``, ``single``, ``ensemble``; default ``auto``): ``auto`` is
    ``ensemble`` when this process trains on CUDA (:func:`harness.workers.pick_device`),
    ``single`` otherwise (on one CPU thread the ensemble
    is no faster per network: ``python -m bench ensemble``). Networks the ensemble cannot
    train (:func:`supports`) always get ``single``.
    """
    choice = check_choice(TRAINER_ENV, os.environ.get(TRAINER_ENV) or "auto",
                          ("auto", "single", "ensemble"))
    if not supports(config):
        return "single"
    if choice == "auto":
        return "ensemble" if _cuda() else "single"
    return choice


def ensembles_by_default() -> bool:
    """Whether :func:`default_trainer` picks the ensemble for the networks it supports."""
    return default_trainer(TrainConfig("mnist")) == "ensemble"


def _cuda() -> bool:
    # Where this process would train (HARNESS_DEVICE=cpu on a GPU machine: the CPU).
    return bool(pick_device().type == "cuda")


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """What members of one ensemble share: of a *resolved* config, its dataset, architecture
    and shapes, schedule (epochs, pruning epochs, batch size, learning rate, data subsets,
    shuffling) and trainer. Seeds, dropout, regularisers, clusterable init and pruning
    sparsities are the members' own."""
    return tuple(getattr(config, name) for name in _SHARED)


# ----------------------------------------------------------------------------------------------
# Counter-based dropout masks


def _hash32(x: torch.Tensor | int) -> Any:
    """A 32-bit integer mixer (two multiply-xorshift rounds) on int64 values in [0, 2**32).

    The multipliers are below 2**31, so no product overflows int64: the same bits on every
    device and for Python ints.
    """
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


class _Dropout:
    """Per-member dropout masks from (member key, draw, element index): see the module doc."""

    def __init__(self, keys: Sequence[int], rates: Sequence[Sequence[float]],
                 device: torch.device) -> None:
        # rates[site][member]
        self.device = device
        self.keys = torch.tensor([int(k) & _M32 for k in keys], dtype=torch.int64, device=device)
        self.n_sites = len(rates)
        self.active = [any(r > 0 for r in site) for site in rates]
        keep = [[1.0 - float(r) for r in site] for site in rates]
        self.keep = [torch.tensor(k, dtype=torch.float32, device=device) for k in keep]
        # Keep an element when its hash is below keep * 2**32 (exactly 2**32 for rate 0).
        self.threshold = [
            torch.tensor([min(_M32 + 1, math.floor(k * 2.0**32)) for k in site],
                         dtype=torch.int64, device=device)
            for site in keep
        ]
        self._active = [s for s in range(self.n_sites) if self.active[s]]
        self._active_index = torch.tensor(self._active, dtype=torch.int64, device=device)
        self._elements: dict[tuple[tuple[int, int], ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def _element_hashes(self, numels: tuple[tuple[int, int], ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``((site, numel), ...)``: the hashed element index of every site's elements,
        concatenated, and the position of each element's site in that list."""
        cached = self._elements.get(numels)
        if cached is None:
            dev = self.device
            hashed = torch.cat([_hash32(torch.arange(k, dtype=torch.int64, device=dev))
                                for _, k in numels])
            which = torch.repeat_interleave(
                torch.arange(len(numels), device=dev),
                torch.tensor([k for _, k in numels], device=dev))
            cached = (hashed, which)
            self._elements[numels] = cached
        return cached

    def masks(self, draw: int, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor | None]:
        """One step's dropout noise at every site (None where no member drops out).

        Site ``s`` gets ``(N, *shapes[s])`` float32, 0 or ``1 / keep`` per element: element
        ``i`` of member ``n`` is kept when ``h(h(key_n ^ h(draw * S + s)) ^ h(i)) < keep_n *
        2**32``, with ``h`` :func:`_hash32` and ``S`` the number of sites. All sites are hashed
        in one pass (a few kernels per step on a GPU), on the device, with no host sync.
        """
        n = int(self.keys.shape[0])
        out: list[torch.Tensor | None] = [None] * self.n_sites
        if not self._active:
            return out
        numels = tuple((s, math.prod(shapes[s])) for s in self._active)
        hashed, which = self._element_hashes(numels)
        salts = _hash32((self._active_index + draw * self.n_sites) & _M32)  # (A,)
        member = _hash32(self.keys[:, None] ^ salts[None, :])  # (N, A)
        bits = _hash32(member.index_select(1, which) ^ hashed[None, :])
        offset = 0
        for s, numel in numels:
            part = bits[:, offset:offset + numel]
            offset += numel
            kept = (part < self.threshold[s][:, None]).to(torch.float32)
            # As torch's CPU dropout: a 0/1 mask divided by keep, then multiplied in.
            kept.div_(self.keep[s][:, None])
            out[s] = kept.view(n, *shapes[s])
        return out


# ----------------------------------------------------------------------------------------------
# The stacked networks


#: Dense layers' output units are padded (with zero weights that stay zero) to a multiple of
#: this many, so that every member's slice of every tensor fills whole SIMD vectors: the CPU's
#: vectorised kernels (AVX-512: 16 floats) otherwise compute a slice's last elements in their
#: scalar tail or not depending on N and the member's position, which changes the rounding
#: (measured: a 10-class output bias differed in its last bit).
_ALIGN = 16


def _aligned(size: int) -> int:
    return -(-size // _ALIGN) * _ALIGN


class _DenseStack(nn.Module):
    """N members' dense layers: kernels ``(N, out', in')`` (torch's ``Linear`` layout),
    biases ``(N, out')``, with ``out'`` the output units padded to :data:`_ALIGN` (and ``in'``
    the previous layer's ``out'``); the padding is zero and receives zero gradients."""

    def __init__(self, layers: Sequence[Sequence[nn.Linear]]) -> None:
        super().__init__()
        n = len(layers)
        self.sizes = [(int(lin.out_features), int(lin.in_features)) for lin in layers[0]]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        previous = self.sizes[0][1]  # the input is not padded
        for i, (out, inp) in enumerate(self.sizes):
            w = torch.zeros(n, _aligned(out), previous)
            b = torch.zeros(n, _aligned(out))
            for m, member in enumerate(layers):
                w[m, :out, :inp] = member[i].weight.detach()
                b[m, :out] = _bias(member[i]).detach()
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
            previous = _aligned(out)

    def kernels(self) -> list[torch.Tensor]:
        """The real (unpadded) kernels, ``(N, out, in)`` views."""
        return [w[:, :out, :inp] for w, (out, inp) in zip(self.weights, self.sizes, strict=True)]

    def grads(self) -> list[torch.Tensor]:
        """The gradients of :meth:`kernels` (after a backward pass), the same views."""
        out = []
        for w, (rows, cols) in zip(self.weights, self.sizes, strict=True):
            assert w.grad is not None
            out.append(w.grad[:, :rows, :cols])
        return out

    def member(self, layer: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        out, inp = self.sizes[layer]
        return self.weights[layer][n, :out, :inp], self.biases[layer][n, :out]

    def site_shapes(self, b: int) -> list[tuple[int, ...]]:
        """Per-member shapes of the activations after each hidden layer (dropout sites)."""
        return [(b, _aligned(out)) for out, _ in self.sizes[:-1]]

    def forward(self, h: torch.Tensor, dropout: Callable[[int, torch.Tensor], torch.Tensor] | None,
                first_site: int) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
            if i < last:
                h = F.relu(h)
                if dropout is not None:
                    h = dropout(first_site + i, h)
        return h[..., :self.sizes[-1][0]]


def _bias(layer: nn.Linear | nn.Conv2d) -> torch.Tensor:
    assert layer.bias is not None  # the paper's networks all have biases
    return layer.bias


class _MLPStack(nn.Module):
    """N MLPs: one :class:`_DenseStack`."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.n = len(models)
        self.dense = _DenseStack(
            [[m for m in model.modules() if isinstance(m, nn.Linear)] for model in models])

    @property
    def n_sites(self) -> int:
        return len(self.dense.sizes) - 1

    def kernels(self) -> list[torch.Tensor]:
        return self.dense.kernels()

    def grads(self) -> list[torch.Tensor]:
        return self.dense.grads()

    def member(self, layer: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dense.member(layer, n)

    def batch(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Inputs ``(N, b, in)`` of the members' example indices ``idx`` ``(N, b)``."""
        return x.index_select(0, idx.reshape(-1)).view(*idx.shape, *x.shape[1:])

    def repeat(self, x: torch.Tensor) -> torch.Tensor:
        """The same inputs ``(b, in)`` for every member: ``(N, b, in)``."""
        return x.unsqueeze(0).expand(self.n, *x.shape).contiguous()

    def site_shapes(self, b: int) -> list[tuple[int, ...]]:
        return self.dense.site_shapes(b)

    def forward(self, h: torch.Tensor,
                dropout: Callable[[int, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        return self.dense(h, dropout, 0)


class _CNNStack(nn.Module):
    """N small CNNs: convolutions grouped by member (``groups=N``, channels member-major),
    then a :class:`_DenseStack`. Channels-last, as :func:`harness.training.train`."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        cnns = [m for m in models if isinstance(m, SmallCNN)]
        assert len(cnns) == len(models) and cnns
        first = cnns[0]
        self.n = len(models)
        self.in_shape = first.in_shape
        self.pool_after = first.pool_after
        self.out_channels = first.channels
        convs = [[m for m in model.features if isinstance(m, nn.Conv2d)] for model in cnns]
        layout = torch.channels_last
        self.conv_weights = nn.ParameterList([
            nn.Parameter(torch.cat([c[i].weight.detach() for c in convs])
                         .contiguous(memory_format=layout))
            for i in range(len(convs[0]))
        ])
        self.conv_biases = nn.ParameterList(
            [nn.Parameter(torch.cat([_bias(c[i]).detach() for c in convs]))
             for i in range(len(convs[0]))])
        self.dense = _DenseStack(
            [[m for m in model.classifier if isinstance(m, nn.Linear)] for model in cnns])

    @property
    def n_sites(self) -> int:
        return len(self.conv_weights) + len(self.dense.sizes) - 1

    def kernels(self) -> list[torch.Tensor]:
        return [*self.conv_weights, *self.dense.kernels()]

    def grads(self) -> list[torch.Tensor]:
        grads = [w.grad for w in self.conv_weights]
        assert all(g is not None for g in grads)
        return [*(g for g in grads if g is not None), *self.dense.grads()]

    def member(self, layer: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_conv = len(self.conv_weights)
        if layer < n_conv:
            c = self.out_channels[layer]
            return (self.conv_weights[layer][n * c:(n + 1) * c],
                    self.conv_biases[layer][n * c:(n + 1) * c])
        return self.dense.member(layer - n_conv, n)

    def batch(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Images ``(b, N*C, H, W)`` of the members' example indices ``idx`` ``(N, b)``."""
        n, b = idx.shape
        c, h, w = self.in_shape
        picked = x.index_select(0, idx.reshape(-1)).view(n, b, c, h, w)
        return (picked.transpose(0, 1).reshape(b, n * c, h, w)
                .contiguous(memory_format=torch.channels_last))

    def repeat(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, self.n, 1, 1).contiguous(memory_format=torch.channels_last)

    def site_shapes(self, b: int) -> list[tuple[int, ...]]:
        _, h, w = self.in_shape
        shapes: list[tuple[int, ...]] = []
        for channels, pool in zip(self.out_channels, self.pool_after, strict=True):
            if pool:
                h, w = h // 2, w // 2
            shapes.append((b, channels, h, w))
        return shapes + self.dense.site_shapes(b)

    def forward(self, h: torch.Tensor,
                dropout: Callable[[int, torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        n = self.n
        site = 0
        for w, bias, pool in zip(self.conv_weights, self.conv_biases, self.pool_after,
                                 strict=True):
            h = F.relu(F.conv2d(h, w, bias, padding=1, groups=n))
            if pool:
                h = F.max_pool2d(h, 2)
            if dropout is not None:
                b, nc, hh, ww = h.shape
                # The dropout callback works on (N, b, ...) member-major tensors.
                per_member = h.view(b, n, nc // n, hh, ww).transpose(0, 1)
                h = (dropout(site, per_member).transpose(0, 1).reshape(b, nc, hh, ww)
                     .contiguous(memory_format=torch.channels_last))
            site += 1
        b = h.shape[0]
        # Flatten each member's (C, H, W) in torch's order, as nn.Flatten does.
        return self.dense(h.reshape(b, n, -1).transpose(0, 1), dropout, site)


def _site_rates(configs: Sequence[TrainConfig], n_sites: int) -> list[list[float]]:
    """``rates[site][member]``: each member's dropout rate after each hidden block."""
    rates: list[list[float]] = []
    for site in range(n_sites):
        row = []
        for cfg in configs:
            if cfg.arch == "mlp":
                row.append(cfg.dropout)
            else:
                n_conv = len(cfg.widths or ())
                conv_rate = cfg.conv_dropout if cfg.dropout > 0 else 0.0
                row.append(conv_rate if site < n_conv else cfg.dropout)
        rates.append(row)
    return rates


# ----------------------------------------------------------------------------------------------
# Pruning


class _StackPruner:
    """Per-member, per-kernel magnitude masks: :class:`harness.training._Pruner` for N members."""

    def __init__(self, kernels: Sequence[torch.Tensor], n: int) -> None:
        self.kernels = list(kernels)
        self.n = n
        self.masks = [torch.ones(w.shape, dtype=w.dtype, device=w.device) for w in self.kernels]
        self._row_cache: dict[tuple[int, ...], torch.Tensor] = {}

    @torch.no_grad()
    def prune_to(self, targets: Sequence[float | None]) -> None:
        """Members with a target sparsity get new masks (the top ``round(size * (1 - s))``
        magnitudes of each kernel, as tfmot); every member's kernels are re-masked."""
        for w, mask in zip(self.kernels, self.masks, strict=True):
            flat = mask.view(self.n, -1)
            size = flat.shape[1]
            by_keep: dict[int, list[int]] = {}
            for member, target in enumerate(targets):
                if target is not None:
                    by_keep.setdefault(int(round(size * (1.0 - target))), []).append(member)
            if by_keep:
                magnitude = w.abs().reshape(self.n, -1)
                for keep, members in by_keep.items():
                    rows = self._rows(members, w.device)
                    fresh = torch.zeros((len(members), size), dtype=mask.dtype, device=w.device)
                    if keep > 0:
                        top = torch.topk(magnitude.index_select(0, rows), keep, dim=1,
                                         sorted=False).indices
                        fresh.scatter_(1, top, 1.0)
                    flat.index_copy_(0, rows, fresh)
            w.mul_(mask)

    def _rows(self, members: list[int], device: torch.device) -> torch.Tensor:
        key = tuple(members)
        rows = self._row_cache.get(key)
        if rows is None:  # built once: a host-to-device copy waits for the device
            rows = torch.tensor(members, dtype=torch.int64, device=device)
            self._row_cache[key] = rows
        return rows

    @torch.no_grad()
    def apply(self) -> None:
        for w, mask in zip(self.kernels, self.masks, strict=True):
            w.mul_(mask)

    @torch.no_grad()
    def sparsity(self) -> list[float]:
        zeros = sum((w.reshape(self.n, -1) == 0).sum(1) for w in self.kernels)
        total = sum(w.numel() // self.n for w in self.kernels)
        assert isinstance(zeros, torch.Tensor)
        return [int(z) / max(1, total) for z in zeros.tolist()]


# ----------------------------------------------------------------------------------------------
# The penalty, per member


class _StackPenalty:
    """``sum_l a[l, n] |W_l[n]|_1 + q[l, n] |W_l[n]|_2^2`` per member ``n``, vectorised.

    Member ``n``'s coefficients are :func:`harness.training._penalty`'s: ``a = l1`` and ``q = l2``
    on every kernel, except the first one with ``first_layer_l1`` (``a = l2 or l1``, ``q = 0``).
    A term none of the members uses is left out: it would only add zeros.
    """

    def __init__(self, configs: Sequence[TrainConfig], n_kernels: int,
                 device: torch.device) -> None:
        self.terms: list[tuple[int, str, torch.Tensor]] = []
        for layer in range(n_kernels):
            a, q = [], []
            for cfg in configs:
                if layer == 0 and cfg.first_layer_l1:
                    a.append(cfg.l2 or cfg.l1)
                    q.append(0.0)
                else:
                    a.append(cfg.l1)
                    q.append(cfg.l2)
            for kind, coef in (("abs", a), ("square", q)):
                if any(c != 0 for c in coef):
                    self.terms.append(
                        (layer, kind, torch.tensor(coef, dtype=torch.float32, device=device)))
        self._factors: dict[tuple[int, str], torch.Tensor] = {}

    @torch.no_grad()
    def apply(self, kernels: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
              n: int) -> torch.Tensor | None:
        """Add the penalty's gradient to the kernels' ``grads``; return its value per member.

        The gradient is written out rather than left to autograd (a third of a step's kernel
        launches otherwise): ``a sgn(w)`` and ``2 q w``, the same products autograd forms for
        ``a |w|`` and ``q w w``, added to the data loss's gradient elementwise.
        """
        total: torch.Tensor | None = None
        for layer, kind, coef in self.terms:
            w, g = kernels[layer], grads[layer]
            value = w.abs() if kind == "abs" else w * w
            term = coef * value.reshape(n, -1).sum(1)
            # Added one term at a time: a member's terms meet in the same order whatever
            # other terms (zeros for it) its ensemble adds in between.
            total = term if total is None else total + term
            factor = self._broadcast(layer, kind, coef, w, n)
            g.add_(w.sign().mul_(factor) if kind == "abs" else w * factor)
        return total

    def _broadcast(self, layer: int, kind: str, coef: torch.Tensor, w: torch.Tensor,
                   n: int) -> torch.Tensor:
        """``coef`` (``2 coef`` for a square) per row of ``w``'s member-major leading axis."""
        key = (layer, kind)
        cached = self._factors.get(key)
        if cached is None:
            factor = coef * 2 if kind == "square" else coef
            rows = int(w.shape[0]) // n  # 1 for (N, out, in), out for a conv's (N*out, ...)
            cached = factor.repeat_interleave(rows).view(-1, *([1] * (w.dim() - 1)))
            self._factors[key] = cached
        return cached


# ----------------------------------------------------------------------------------------------
# Training


def train_ensemble(
    configs: Sequence[TrainConfig],
    dataset: Dataset | None = None,
    *,
    device: str | torch.device | None = None,
    slots: int | None = None,
    progress: bool | None = None,
    on_result: Callable[[int, TrainResult], None] | None = None,
) -> list[TrainResult]:
    """Train, then prune, several networks of one architecture and schedule together.

    Parameters
    ----------
    configs : sequence of TrainConfig
        Configs with ``trainer="ensemble"`` sharing :func:`group_key` once resolved.
    dataset : harness.data.Dataset, optional
        Default: loaded from the first config's ``dataset`` / ``data_seed``.
    device : str or torch.device, optional
        Default :func:`harness.workers.pick_device`.
    slots : int, optional
        Members per chunk. Default: :data:`CUDA_SLOTS` on CUDA (chunks padded to exactly that
        many), all members in one chunk on the CPU. Given, chunks are padded to it on every
        device.
    progress : bool, optional
        tqdm bar over the epochs of each chunk (see :func:`harness.training.train`).
    on_result : callable, optional
        ``on_result(i, result)`` for member ``i`` as soon as its chunk is trained (to store
        it before the next chunk starts).

    Returns
    -------
    list of TrainResult
        One per config, in order, each with the resolved config.

    Raises
    ------
    ValueError
        A config is not for the ensemble trainer, or the configs cannot share an ensemble.
    TrainingDivergedError
        A member's loss became NaN/inf (its chunk is lost; earlier chunks were reported).
    """
    if not configs:
        return []
    if dataset is None:
        from harness.data import load_dataset

        dataset = load_dataset(configs[0].dataset, seed=configs[0].data_seed)
    resolved = [c.resolved(dataset) for c in configs]
    for cfg in resolved:
        if cfg.trainer != "ensemble":
            raise ValueError(
                f"train_ensemble trains configs with trainer='ensemble'; got {cfg!r} "
                "(use harness.training.train, or config.replace(trainer='ensemble'))")
    key = group_key(resolved[0])
    for cfg in resolved[1:]:
        if group_key(cfg) != key:
            diff = [name for name in _SHARED if getattr(cfg, name) != getattr(resolved[0], name)]
            raise ValueError(
                f"configs of one ensemble must share {', '.join(_SHARED)}; {resolved[0]!r} and "
                f"{cfg!r} differ in {', '.join(diff)}")
    dev = device if isinstance(device, torch.device) else pick_device(device)
    width = slots if slots is not None else (
        CUDA_SLOTS[resolved[0].arch] if dev.type == "cuda" else None)
    if width is not None and width < 1:
        raise ValueError(f"slots must be >= 1, got {width}")
    chunk = width or len(resolved)
    # On the CPU oneDNN runs a one-group first convolution (1 input channel) with another
    # kernel than a grouped one (measured: different last bits), so a lone CNN gets a
    # throw-away partner; from 2 groups on, the results do not depend on the count.
    least = max(chunk if width else 0, _MIN_SLOTS.get(resolved[0].arch, 1))
    results: list[TrainResult] = []
    with _training_threads(dev), _deterministic(dev):
        data = _Data(resolved[0], dataset, dev)
        for start in range(0, len(resolved), chunk):
            members = resolved[start:start + chunk]
            padding = [members[0]] * max(0, least - len(members))
            trained = _train_chunk([*members, *padding], len(members), data, dataset, dev,
                                   progress)
            for offset, result in enumerate(trained):
                if on_result is not None:
                    on_result(start + offset, result)
                results.append(result)
    return results


class _Data:
    """The training and test splits on the device, in the trainer's layout."""

    def __init__(self, cfg: TrainConfig, dataset: Any, dev: torch.device) -> None:
        from harness.data import as_torch

        flatten = cfg.arch == "mlp"
        layout = memory_format(cfg.arch)
        x_train, self.y_train = as_torch(dataset, "train", flatten=flatten, subset=cfg.n_train,
                                         device=dev)
        x_test, self.y_test = as_torch(dataset, "test", flatten=flatten, subset=cfg.n_test,
                                       device=dev)
        self.x_train = x_train.contiguous(memory_format=layout)
        self.x_test = x_test.contiguous(memory_format=layout)
        self.classification = dataset.task == "classification"


@contextlib.contextmanager
def _deterministic(dev: torch.device) -> Iterator[None]:
    """cuDNN's deterministic algorithms, no autotuning (its choice could vary run to run)."""
    if dev.type != "cuda":
        yield
        return
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _train_chunk(cfgs: Sequence[TrainConfig], n_real: int, data: _Data, dataset: Any,
                 dev: torch.device, progress: bool | None) -> list[TrainResult]:
    """Train the members ``cfgs`` (the first ``n_real`` kept, the rest padding) together."""
    cfg0 = cfgs[0]
    n = len(cfgs)
    started = time.perf_counter()
    n_train = int(data.x_train.shape[0])
    steps_per_epoch = math.ceil(n_train / cfg0.batch_size)
    end_step = steps_per_epoch * cfg0.pruning_epochs
    models = [build_model(cfg) for cfg in cfgs[:n_real]]  # each from its own seed, on the CPU
    models += [models[0]] * (n - n_real)  # padding: copies of the first member, never exported
    stack: _MLPStack | _CNNStack = (_MLPStack(models) if cfg0.arch == "mlp"
                                    else _CNNStack(models))
    stack = stack.to(dev)
    with torch.no_grad():  # views of the parameters, for the pruner's in-place updates
        kernels = stack.kernels()
    penalty = _StackPenalty(cfgs, len(kernels), dev)
    drop = _Dropout([stream_seed(c.seed, _DROPOUT_STREAM) for c in cfgs],
                    _site_rates(cfgs, stack.n_sites), dev)
    order_gens = [torch.Generator().manual_seed(stream_seed(c.seed, _SHUFFLE_STREAM))
                  for c in cfgs]
    metrics: list[dict[str, list[dict[str, Any]]]] = [
        {"unpruned": [], "pruned": []} for _ in range(n_real)]
    snapshots: list[list[tuple[int, str, dict[str, torch.Tensor]]]] = [[] for _ in range(n_real)]
    states: dict[str, list[dict[str, torch.Tensor]]] = {}
    total_epochs = cfg0.epochs + cfg0.pruning_epochs
    bar = None
    from harness.training import _use_progress

    if _use_progress(progress) and total_epochs:
        from tqdm import tqdm

        bar = tqdm(total=total_epochs, unit="epoch",
                   desc=f"ensemble of {n_real} {cfg0.dataset}/{cfg0.arch}")

    def export(member: int) -> dict[str, torch.Tensor]:
        return _member_state(stack, models[member], member)

    def orders() -> torch.Tensor:
        if not cfg0.shuffle:
            return torch.arange(n_train, device=dev).expand(n, n_train)
        return torch.stack([torch.randperm(n_train, generator=g) for g in order_gens]).to(dev)

    draw = 0
    try:
        for phase in PHASES:
            n_epochs = cfg0.epochs if phase == "unpruned" else cfg0.pruning_epochs
            if phase == "pruned" and n_epochs == 0:
                break
            optimizer = _adam(stack.parameters(), cfg0.lr, dev)
            pruner = _StackPruner(kernels, n) if phase == "pruned" else None
            step = 0
            for e in range(n_epochs):
                epoch = e + 1 + (cfg0.epochs if phase == "pruned" else 0)
                losses, accs, draw = _epoch(stack, optimizer, data, orders(), cfgs, penalty,
                                            drop, pruner, end_step, step, draw)
                step += steps_per_epoch
                if pruner is not None and step == end_step:
                    pruner.prune_to([prune_step_sparsity(step, c, end_step) for c in cfgs])
                for member in range(n_real):
                    if not math.isfinite(losses[member]):
                        raise TrainingDivergedError(
                            f"training diverged: the {phase} phase's train loss is "
                            f"{losses[member]} in epoch {epoch}; lower lr or check the data "
                            f"({cfgs[member]!r}, trained in an ensemble of {n_real})",
                            epoch=epoch, phase=phase)
                test_loss, test_acc = _evaluate(stack, data)
                sparsity = pruner.sparsity() if pruner is not None else None
                for member in range(n_real):
                    cfg = cfgs[member]
                    with torch.no_grad():
                        pen_t = _penalty(
                            [stack.member(i, member)[0] for i in range(len(kernels))],
                            cfg.l1, cfg.l2, first_layer_l1=cfg.first_layer_l1)
                    pen = float(pen_t) if pen_t is not None else 0.0
                    row: dict[str, Any] = {
                        "epoch": epoch,
                        "train_loss": losses[member],
                        "test_loss": test_loss[member] + pen,
                        "penalty": pen,
                    }
                    if data.classification:
                        row["train_acc"] = accs[member]
                        row["test_acc"] = test_acc[member]
                    if sparsity is not None:
                        row["sparsity"] = sparsity[member]
                    metrics[member][phase].append(row)
                    if cfg.snapshots:
                        snapshots[member].append((epoch, phase, export(member)))
                if bar is not None:
                    bar.update(1)
            states[phase] = [export(member) for member in range(n_real)]
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - started
    results = []
    for member in range(n_real):
        info = {
            "device": str(dev),
            "threads": torch.get_num_threads(),
            "wall_s": round(wall / n_real, 3),
            "n_train": n_train,
            "n_test": int(data.x_test.shape[0]),
            "steps_per_epoch": steps_per_epoch,
            "pruning_end_step": end_step,
            "dataset_hash": dataset.content_hash,
            "ensemble": {"members": n_real, "slots": n, "wall_s": round(wall, 3)},
        }
        pruned = states["pruned"][member] if "pruned" in states else None
        results.append(TrainResult(cfgs[member], metrics[member], states["unpruned"][member],
                                   pruned, tuple(snapshots[member]), info))
    return results


def _member_state(stack: _MLPStack | _CNNStack, model: nn.Module,
                  member: int) -> dict[str, torch.Tensor]:
    """Member ``member``'s CPU state dict, in its own network's names and default layout."""
    with torch.no_grad():
        for i, layer in enumerate(kernel_layers(model)):
            weight, bias = stack.member(i, member)
            layer.weight.copy_(weight)
            _bias(layer).copy_(bias)
    return {k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
            for k, v in model.state_dict().items()}


def _epoch(stack: _MLPStack | _CNNStack, optimizer: torch.optim.Optimizer, data: _Data,
           order: torch.Tensor, cfgs: Sequence[TrainConfig], penalty: _StackPenalty,
           drop: _Dropout, pruner: _StackPruner | None, end_step: int, first_step: int,
           draw: int) -> tuple[list[float], list[float | None], int]:
    """One epoch of every member (:func:`harness.training.run_epoch`, member by member)."""
    stack.train()
    n = len(cfgs)
    n_train = int(data.x_train.shape[0])
    batch_size = cfgs[0].batch_size
    loss_sum = torch.zeros(n, dtype=torch.float64, device=order.device)
    correct = torch.zeros(n, dtype=torch.int64, device=order.device)
    any_dropout = any(drop.active)
    step = first_step
    counter = draw

    noise: list[torch.Tensor | None] = []

    def dropout(site: int, h: torch.Tensor) -> torch.Tensor:
        mask = noise[site]
        return h if mask is None else h * mask

    for start in range(0, n_train, batch_size):
        if pruner is not None:
            targets = [prune_step_sparsity(step, c, end_step) for c in cfgs]
            if any(t is not None for t in targets):
                pruner.prune_to(targets)
        idx = order[:, start:start + batch_size]
        b = int(idx.shape[1])
        xb = stack.batch(data.x_train, idx)
        if any_dropout:
            noise[:] = drop.masks(counter, stack.site_shapes(b))
        yb = data.y_train.index_select(0, idx.reshape(-1)).view(n, b, *data.y_train.shape[1:])
        out = stack(xb, dropout if any_dropout else None)
        if data.classification:
            loss = F.cross_entropy(out.reshape(n * b, -1), yb.reshape(-1),
                                   reduction="none").view(n, b).mean(1)
        else:
            loss = F.mse_loss(out, yb, reduction="none").reshape(n, -1).mean(1)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        pen = penalty.apply(stack.kernels(), stack.grads(), n) if penalty.terms else None
        total = loss.detach() if pen is None else loss.detach() + pen
        optimizer.step()
        if pruner is not None:
            pruner.apply()
        with torch.no_grad():
            loss_sum += total * b
            if data.classification:
                correct += (out.argmax(-1) == yb).sum(1)
        step += 1
        counter += 1
    losses = (loss_sum / n_train).tolist()
    accs: list[float | None] = (
        [c / n_train for c in correct.tolist()] if data.classification else [None] * n)
    return losses, accs, counter


@torch.no_grad()
def _evaluate(stack: _MLPStack | _CNNStack, data: _Data) -> tuple[list[float], list[float | None]]:
    """Every member's mean test loss (no penalty) and accuracy, in eval mode."""
    stack.eval()
    n = stack.n
    x, y = data.x_test, data.y_test
    loss_sum = torch.zeros(n, dtype=torch.float64, device=x.device)
    correct = torch.zeros(n, dtype=torch.int64, device=x.device)
    total = int(x.shape[0])
    for start in range(0, total, _EVAL_CHUNK):
        xb, yb = x[start:start + _EVAL_CHUNK], y[start:start + _EVAL_CHUNK]
        out = stack(stack.repeat(xb), None)  # (N, b, K)
        b = int(xb.shape[0])
        if data.classification:
            per = F.cross_entropy(out.reshape(n * b, -1), yb.repeat(n), reduction="none")
            loss_sum += per.view(n, b).sum(1)
            correct += (out.argmax(-1) == yb.unsqueeze(0)).sum(1)
        else:
            # Keras MSE: mean over outputs, then over examples.
            loss_sum += (out - yb.unsqueeze(0)).square().reshape(n, b, -1).mean(2).sum(1)
    stack.train()
    losses = (loss_sum / max(total, 1)).tolist()
    accs: list[float | None] = (
        [c / max(total, 1) for c in correct.tolist()] if data.classification else [None] * n)
    return losses, accs


# ----------------------------------------------------------------------------------------------
# Through the store


def get_or_train_group(
    configs: Sequence[TrainConfig],
    *,
    store: Store | None = None,
    device: str | torch.device | None = None,
    dataset: Dataset | None = None,
    slots: int | None = None,
    progress: bool | None = None,
) -> list[TrainedModel]:
    """The trained models of ``configs``, training the missing ones as one ensemble.

    Members already in the store are read, not retrained (an interrupted ensemble resumes
    with the members it had not finished); the others train together under one lock for the
    group, each stored under its own key (:func:`harness.training.model_key_payload`) as soon as
    its chunk ends. Since a member's weights do not depend on its ensemble, the stored models
    are those :func:`harness.training.get_or_train` would store for each config alone.

    Parameters
    ----------
    configs : sequence of TrainConfig
        ``trainer="ensemble"`` configs of one :func:`group_key`.
    store, device, dataset, progress
        As :func:`harness.training.get_or_train`.
    slots : int, optional
        As :func:`train_ensemble`.

    Returns
    -------
    list of TrainedModel
        In the order of ``configs``.
    """
    if not configs:
        return []
    if dataset is None:
        from harness.data import load_dataset

        dataset = load_dataset(configs[0].dataset, seed=configs[0].data_seed)
    store = store if store is not None else Store()
    resolved = [c.resolved(dataset) for c in configs]
    payloads = [model_key_payload(c, dataset) for c in resolved]
    ds = dataset

    def missing() -> list[int]:
        return [i for i, p in enumerate(payloads) if not store.exists(MODEL_KIND, p)]

    if missing():
        keys = sorted({store.key(MODEL_KIND, p) for p in payloads})
        name = "group-" + hashlib.sha256("".join(keys).encode()).hexdigest()
        with store.lock(MODEL_KIND, name):
            todo = missing()
            if todo:

                def keep(i: int, result: TrainResult) -> None:
                    store.get_or_create(MODEL_KIND, payloads[todo[i]], result.save)

                train_ensemble([resolved[i] for i in todo], ds, device=device, slots=slots,
                               progress=progress, on_result=keep)
    out = []
    for cfg, payload in zip(resolved, payloads, strict=True):

        def alone(directory: Any, cfg: TrainConfig = cfg) -> None:
            # Only if the member vanished since: trained alone, the same weights.
            train_ensemble([cfg], ds, device=device, slots=slots)[0].save(directory)

        out.append(TrainedModel.from_path(store.get_or_create(MODEL_KIND, payload, alone)))
    return out
