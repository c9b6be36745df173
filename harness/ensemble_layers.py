"""The stacked networks of an ensemble, and their dropout (:mod:`harness.ensemble`).

N networks of one architecture become one module: :class:`MLPStack` multiplies ``(N, out,
in)`` kernels with batched matmuls (:class:`DenseStack`), :class:`CNNStack` runs the
convolutions as one grouped convolution (``groups=N``) before its dense layers. Every
operation is computed per member. :class:`MemberDropout` draws each member's dropout masks
from a counter-based hash of its own key, so that they do not depend on the other members or
on the device (:mod:`harness.ensemble`, *Dropout*). :func:`member_state` reads a member back
as an ordinary state dict of its own network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.configs import TrainConfig
from harness.models import SmallCNN, kernel_layers

__all__ = ["CNNStack", "DenseStack", "MLPStack", "MemberDropout", "member_state", "site_rates"]

_M32 = 0xFFFFFFFF


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


class MemberDropout:
    """Per-member dropout masks from (member key, draw, element index).

    Parameters
    ----------
    keys : sequence of int
        Each member's key (``stream_seed(seed, DROPOUT_STREAM)``).
    rates : sequence of sequence of float
        ``rates[site][member]``: the dropout rate of each member at each site
        (:func:`site_rates`).
    device : torch.device
        Where the masks are computed.
    """

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


class DenseStack(nn.Module):
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


class MLPStack(nn.Module):
    """N MLPs: one :class:`DenseStack`."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        self.n = len(models)
        self.dense = DenseStack(
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


class CNNStack(nn.Module):
    """N small CNNs: convolutions grouped by member (``groups=N``, channels member-major),
    then a :class:`DenseStack`. Channels-last, as :func:`harness.training.train`."""

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
        self.dense = DenseStack(
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


def site_rates(configs: Sequence[TrainConfig], n_sites: int) -> list[list[float]]:
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


def member_state(stack: MLPStack | CNNStack, model: nn.Module,
                 member: int) -> dict[str, torch.Tensor]:
    """Member ``member``'s CPU state dict, in its own network's names and default layout.

    Its weights are copied from ``stack`` into ``model`` (a network of its architecture,
    overwritten), whose state dict is returned.
    """
    with torch.no_grad():
        for i, layer in enumerate(kernel_layers(model)):
            weight, bias = stack.member(i, member)
            layer.weight.copy_(weight)
            _bias(layer).copy_(bias)
    return {k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
            for k, v in model.state_dict().items()}
