"""The fast lesion evaluation of conv networks: lesions run from cached activations.

**Why it is exact.** Lesioning filter ``u`` of conv layer ``l`` zeroes its kernel and bias
(:mod:`harness.lesion.ablation`), so the conv's output channel ``u`` is exactly 0 whatever the
input. The modules between conv ``l`` and the next weighted module (ReLU, max-pooling, batch
norm, dropout: per-channel operations) turn that 0 into a value ``s_l[u]`` that does not depend
on the input either: 0 after a ReLU and a max-pool; the batch norm's shift ``beta - gamma *
mean / sqrt(var + eps)`` after a batch norm (``ablation="kernel"``), or 0 again with
``ablation="output"``, which also zeroes the norm's ``gamma`` and ``beta``. The lesioned network
therefore equals the unlesioned one up to the input ``a`` of the module after layer ``l``,
where the lesioned channels ``U`` hold ``s_l[U]`` instead. The fast method computes the
unlesioned activations of a block of test samples once, and for a lesion whose deepest
lesioned layer is ``l`` only runs the network from there on:

* conv -> conv (the next module is a convolution over ``a``): convolution is linear,
  zero padding included, so the lesioned output of the next conv is
  ``z + conv(s_l[U] - a[:, U], W[:, U])``, with ``z`` its unlesioned output and ``W[:, U]``
  its kernel restricted to the input channels ``U``: a convolution over ``|U|`` input
  channels instead of all of them (the low-rank step of the MLP method,
  :mod:`harness.lesion.fast`). Used when ``|U|`` is at most half the layer.
* otherwise ``a[:, U]`` is replaced by ``s_l[U]`` and the next module runs on it.

The modules after that run once for a batch of lesions stacked along the sample axis.
Lesions in later layers (the fixed member of a conditional double lesion) are 0/1 channel
masks at the layer's output (after its batch norm for ``ablation="output"``): multiplying a
channel by 0 gives the exact zero that zeroed weights give. Lesions that share units in
earlier layers share the forward pass up to the deepest lesioned layer.

Both methods give the same predictions: outputs agree to float32 rounding (the low-rank
update sums in another order), so an accuracy could differ only where two logits tie to
within ~1e-6 (the tests and the benchmark check equality).

**Where it pays** (small CNN of §2.3, 28x28 images, one CPU thread, CPU time): a forward
pass costs ~2 ms per image, most of it in conv2 (28x28, 64 -> 64 channels). A lesion of conv1
still runs a low-rank conv2 (~1/4 of the full one or more: convolutions over few channels
are inefficient) and all of conv3, so it is ~2x faster than a forward pass; a lesion of conv2
is ~8x and one of conv3 ~15x faster. The whole single lesion test (K=12 filter-graph
clusters, 36 sub-clusters over the three layers, 200 images) runs 6.6-8.1x faster in CPU
time than one forward pass per lesion (two runs on a shared 2-core machine), with identical
outcomes (``python -m bench lesion --case=cnn``). After the first step
the lesions run channels-last, where max-pooling is several times faster on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from harness.lesion.ablation import (
    effective_parameter,
    layer_widths,
    leaf_modules,
    unit_norms,
    weighted_modules,
    writable_parameter,
)
from harness.lesion.specs import Lesion, LesionGroup

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from torch import nn

__all__ = ["FastConv", "channelwise_modules"]

#: The fast method checks its forward pass against the model on this many samples.
_PROBE_SAMPLES = 64


def channelwise_modules() -> tuple[type, ...]:
    """Module types that act on each channel separately (allowed between weighted modules).

    Activations, pooling, batch norm and dropout (identity at evaluation). A lesioned
    channel's value after them does not depend on the input (module docstring).
    """
    from torch import nn

    return (
        nn.Identity,
        nn.ReLU,
        nn.ReLU6,
        nn.LeakyReLU,
        nn.ELU,
        nn.GELU,
        nn.SiLU,
        nn.Tanh,
        nn.Sigmoid,
        nn.MaxPool1d,
        nn.MaxPool2d,
        nn.MaxPool3d,
        nn.AvgPool1d,
        nn.AvgPool2d,
        nn.AvgPool3d,
        nn.AdaptiveAvgPool2d,
        nn.AdaptiveMaxPool2d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.Dropout,
        nn.Dropout1d,
        nn.Dropout2d,
        nn.Dropout3d,
        nn.AlphaDropout,
    )


class _Reached(Exception):
    """Raised by a hook to stop a forward pass once the chain's input has been captured."""


def _fail(reason: str) -> ValueError:
    return ValueError(
        f"method='fast' cannot evaluate this conv network: {reason}. Use method='reference'."
    )


class FastConv:
    """Batched lesion evaluation of a conv network (the module docstring explains why it is exact).

    The network must be a chain: its leaf modules in ``model.modules()`` order compute its
    forward pass one after the other (checked against the model on a few samples), and
    between two weighted (Linear/Conv) modules there are only per-channel modules
    (:func:`channelwise_modules`), then at most one ``nn.Flatten``. The small CNN and the VGG
    of :mod:`harness.models` are such chains. Layer ``k`` (1..L) is the output of weighted
    module ``k``; layers 1..L-1 can be lesioned.

    Parameters
    ----------
    model : torch.nn.Module
        In evaluation mode, on ``device``.
    x : torch.Tensor, shape (N, ...)
        Test inputs as the model takes them, e.g. images (N, C, H, W).
    device : torch.device
    batch_elements : int
        Bound on the elements of one block of activations: a block holds this many
        elements of the largest activation per (lesion x sample) row.
    ablation : {"output", "kernel"}
        How a lesion treats a batch norm after the unit (:mod:`harness.lesion.ablation`).

    Raises
    ------
    ValueError
        If the model is not such a chain (use ``method="reference"``).
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        device: torch.device,
        batch_elements: int,
        ablation: str,
    ) -> None:
        import torch
        from torch import nn

        self.model = model
        self.leaves = leaf_modules(model)
        weighted = weighted_modules(model)
        index = {id(m): i for i, m in enumerate(self.leaves)}
        if len(index) != len(self.leaves):
            raise _fail("a module appears twice among its leaves")
        self.L = len(weighted)
        # pos[k]: leaf index of weighted module k (1..L); pos[0] unused.
        self.pos = [-1] + [index[id(m)] for m in weighted]
        if any(b <= a for a, b in zip(self.pos[1:], self.pos[2:], strict=False)):
            raise _fail("its weighted modules are not in forward order")
        channelwise = channelwise_modules()
        norms = unit_norms(model) if ablation == "output" else {}
        # cw_end[k]: leaf whose output is the input `a` of the module after layer k, before a
        # Flatten; mask_at[k]: leaf after which a lesion of layer k is a channel mask.
        self.cw_end: dict[int, int] = {}
        self.mask_at: dict[int, int] = {}
        self.low_rank: dict[int, bool] = {}
        for k in range(1, self.L):
            between = self.leaves[self.pos[k] + 1 : self.pos[k + 1]]
            flatten = bool(between) and isinstance(between[-1], nn.Flatten)
            per_channel = between[:-1] if flatten else between
            odd = [type(m).__name__ for m in per_channel if not isinstance(m, channelwise)]
            if odd:
                raise _fail(f"layer {k} is followed by {odd}, which mix channels")
            self.cw_end[k] = self.pos[k] + len(per_channel)
            self.mask_at[k] = self.pos[k]
            if k in norms:
                if writable_parameter(norms[k], "weight") is None:
                    raise ValueError(
                        f"layer {k} is followed by a batch norm without affine parameters; "
                        "ablation='output' cannot silence it by zeroing them (use "
                        "ablation='kernel')"
                    )
                self.mask_at[k] = index[id(norms[k])]
            nxt = weighted[k]
            self.low_rank[k] = (
                not flatten
                and isinstance(nxt, nn.Conv2d)
                and nxt.groups == 1
                and nxt.padding_mode == "zeros"
            )
        self.device = device
        self.dtype = x.dtype
        self.x = x
        self.n = int(x.shape[0])
        self._silenced: dict[int, torch.Tensor] = {}
        self._next_weight: dict[int, torch.Tensor] = {}
        self._layer_shape: dict[int, tuple[int, ...]] = {}
        self._act_max = 1
        self.widths = layer_widths(model)
        # Check the chain against the model itself, and size the blocks by the largest
        # activation per sample.
        probe = x[: min(_PROBE_SAMPLES, self.n)].to(device)
        expected = model(probe)
        outs, got = self._forward(probe, shapes=True)
        scale = 1.0 + float(expected.abs().max())
        if expected.shape != got.shape or not torch.allclose(
            got, expected, rtol=1e-4, atol=1e-5 * scale
        ):
            raise _fail(
                "running its leaf modules one after the other does not reproduce its forward pass"
            )
        del outs
        self.rows = max(1, batch_elements // max(1, self._act_max))
        self.n_block = min(self.n, self.rows)

    # ------------------------------------------------------------------------------------------
    # Forward pieces

    def _input(self, xb: torch.Tensor) -> torch.Tensor:
        """The input of the first leaf for the samples ``xb`` (whatever reshaping the model's
        ``forward`` does before it), captured by a hook that then stops the forward pass."""
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            captured.append(args[0])
            raise _Reached

        handle = self.leaves[0].register_forward_pre_hook(hook)
        try:
            self.model(xb)
        except _Reached:
            pass
        finally:
            handle.remove()
        if not captured:
            raise _fail("its forward pass never calls its first leaf module")
        return captured[0]

    def _wanted(self) -> set[int]:
        """Leaves whose unlesioned outputs the lesions start from."""
        return {self.cw_end[k] for k in self.cw_end} | {self.pos[k + 1] for k in self.cw_end}

    def _forward(
        self, xb: torch.Tensor, *, shapes: bool = False
    ) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Unlesioned outputs of the wanted leaves, and the network's outputs, for ``xb``.

        ``shapes=True`` also records the largest activation per sample (``_act_max``) and the
        shape of one sample of each lesionable layer (``_layer_shape``).
        """
        wanted = self._wanted()
        own = {self.pos[k]: k for k in self.cw_end}
        outs: dict[int, torch.Tensor] = {}
        h = self._input(xb)
        act_max = int(h[0].numel())
        for i, leaf in enumerate(self.leaves):
            h = leaf(h)
            if shapes:
                act_max = max(act_max, int(h[0].numel()))
                if i in own:
                    self._layer_shape[own[i]] = tuple(h.shape[1:])
            if i in wanted:
                nxt = self.leaves[i + 1] if i + 1 < len(self.leaves) else None
                # A following in-place module would overwrite the cached tensor.
                outs[i] = h.clone() if getattr(nxt, "inplace", False) else h
        if shapes:
            self._act_max = act_max
        return outs, h

    def _mask(self, layer: int, units: NDArray[np.int64]) -> torch.Tensor:
        import torch

        mask = torch.ones(self.widths[layer], dtype=self.dtype, device=self.device)
        mask[torch.as_tensor(units, device=self.device)] = 0
        return mask

    def _run(
        self,
        h: torch.Tensor,
        after: int,
        masks: Mapping[int, torch.Tensor],
        stop: int | None = None,
    ) -> torch.Tensor:
        """Run the leaves after leaf ``after`` (whose output is ``h``) up to leaf ``stop``.

        ``masks[k]`` multiplies the channels at ``mask_at[k]``; all of them lie at or after
        ``after``.
        """
        points = {self.mask_at[k]: m for k, m in masks.items()}
        assert all(p >= after for p in points)
        last = len(self.leaves) - 1 if stop is None else stop
        i = after
        while True:
            if i in points:
                m = points[i]
                h = h * m.view(-1, *([1] * (h.dim() - 2)))
            if i == last:
                return h
            i += 1
            h = self.leaves[i](h)

    def _silence(self, layer: int, a: torch.Tensor) -> torch.Tensor:
        """``s_layer``: the value, per channel and position, of a lesioned unit of ``layer`` at
        the input of the next module (shape of one sample of ``a``); input-independent."""
        import torch

        if layer not in self._silenced:
            shape = (1, *self._layer_shape[layer])
            z = torch.zeros(shape, dtype=self.dtype, device=self.device)
            off = torch.zeros(self.widths[layer], dtype=self.dtype, device=self.device)
            s = self._run(z, self.pos[layer], {layer: off}, stop=self.cw_end[layer])[0]
            assert s.shape == a.shape[1:]
            self._silenced[layer] = s
        return self._silenced[layer]

    def _first_step(
        self,
        layer: int,
        units: NDArray[np.int64],
        a: torch.Tensor,
        z: torch.Tensor,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Output of weighted module ``layer + 1`` with ``units`` of ``layer`` lesioned.

        ``a``: unlesioned input of that module (before a Flatten), ``z``: its unlesioned
        output; the result is written to ``out`` (same shape as ``z``) when given.
        """
        import torch
        import torch.nn.functional as F

        s = self._silence(layer, a)
        idx = torch.as_tensor(units, device=self.device)
        if self.low_rank[layer] and 2 * len(units) <= self.widths[layer]:
            if layer not in self._next_weight:
                w = effective_parameter(self.leaves[self.pos[layer + 1]], "weight")
                assert w is not None
                self._next_weight[layer] = w
            conv = self.leaves[self.pos[layer + 1]]
            assert isinstance(conv, torch.nn.Conv2d)
            delta = s[idx].unsqueeze(0) - a[:, idx]
            w_sel = self._next_weight[layer][:, idx]
            update = F.conv2d(delta, w_sel, None, conv.stride, conv.padding, conv.dilation)
            return torch.add(z, update, out=out) if out is not None else z + update
        lesioned = a.clone()
        lesioned[:, idx] = s[idx]
        result = self._run(lesioned, self.cw_end[layer], {}, stop=self.pos[layer + 1])
        return out.copy_(result) if out is not None else result

    # ------------------------------------------------------------------------------------------
    # Evaluation

    def evaluate(
        self,
        groups: Sequence[LesionGroup],
        record: Callable[[Sequence[int], torch.Tensor, slice], None],
    ) -> None:
        """Evaluate every member of ``groups``, block of samples by block of samples.

        ``record(index, outputs, samples)`` receives the outputs (M, n, n_outputs) of the
        lesions at result indices ``index`` (length M) on the samples ``samples``.
        """
        plans = [self._normalise(g) for g in groups]
        for s0 in range(0, self.n, self.n_block):
            block = slice(s0, min(s0 + self.n_block, self.n))
            outs, logits = self._forward(self.x[block].to(self.device))
            for plan, group in zip(plans, groups, strict=True):
                if plan is None:
                    record(group.index, logits.unsqueeze(0), block)
                else:
                    self._evaluate_group(plan, outs, block, record)

    @staticmethod
    def _normalise(group: LesionGroup) -> LesionGroup | None:
        """``group`` with a layer (None for the unlesioned model)."""
        if group.layer is not None:
            return group
        lesion: Lesion = group.fixed
        if not lesion:
            return None
        deepest = max(lesion)
        return LesionGroup(
            fixed={k: v for k, v in lesion.items() if k != deepest},
            layer=deepest,
            variants=[lesion[deepest]],
            index=list(group.index),
        )

    def _evaluate_group(
        self,
        group: LesionGroup,
        outs: Mapping[int, torch.Tensor],
        block: slice,
        record: Callable[[Sequence[int], torch.Tensor, slice], None],
    ) -> None:
        import torch

        layer = group.layer
        assert layer is not None
        below = {k: v for k, v in group.fixed.items() if k < layer}
        above = {k: self._mask(k, v) for k, v in group.fixed.items() if k > layer}
        same = group.fixed.get(layer)
        variants = group.variants if same is None else [np.union1d(v, same) for v in group.variants]
        if below:
            # Shared by every member: the forward pass with the fixed lesion up to `layer`.
            first = min(below)
            h = self._first_step(
                first, below[first], outs[self.cw_end[first]], outs[self.pos[first + 1]]
            )
            masks = {k: self._mask(k, v) for k, v in below.items() if k != first}
            a = self._run(h, self.pos[first + 1], masks, stop=self.cw_end[layer])
            z = self._run(a, self.cw_end[layer], {}, stop=self.pos[layer + 1])
        else:
            a, z = outs[self.cw_end[layer]], outs[self.pos[layer + 1]]
        n = a.shape[0]
        m_chunk = max(1, self.rows // n)
        for start in range(0, len(variants), m_chunk):
            part = range(start, min(start + m_chunk, len(variants)))
            # The members side by side on the sample axis, images channels-last: max-pooling
            # is several times faster on the CPU in that layout than in torch's default one.
            fmt = torch.channels_last if z.dim() == 4 else torch.contiguous_format
            h = torch.empty(
                (len(part) * n, *z.shape[1:]), dtype=z.dtype, device=z.device, memory_format=fmt
            )
            for j, i in enumerate(part):
                self._first_step(layer, variants[i], a, z, out=h[j * n : (j + 1) * n])
            out = self._run(h, self.pos[layer + 1], above)
            record([group.index[i] for i in part], out.reshape(len(part), n, -1), block)
