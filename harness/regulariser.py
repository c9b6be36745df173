"""Training for clusterability: the spectral regulariser of reference §7.4, in torch autograd.

The loss adds

    (lambda / k) * sum_{i=2}^{k+1} lambda_i(L_sym),    L_sym = I - D^{-1/2} A D^{-1/2},

where ``A`` is the weight graph of the network (every neuron a node, ``|w|`` on the edges
between adjacent layers, isolated neurons removed: :func:`harness.graph.kept_units`' rule)
and ``lambda_i`` the eigenvalues of its normalised Laplacian in increasing order. The first
eigenvalue (0) is dropped; small values of the next ``k`` mean the graph nearly falls apart
into ``k + 1`` pieces (von Luxburg 2007, §5), so the term pulls the network towards ``k + 1``
weakly connected clusters. The paper trained its small MLP with ``k = 3`` and
``lambda = 0.1`` (:data:`PAPER_STRENGTH`, :data:`PAPER_EIGS`).

How it is computed. The dense Laplacian (``n x n`` over the neurons: 251 for the 49-64x3-10
network, 1,818 for the 784-256x4-10 one) is built from the kernels with tensor operations and
its eigenvalues come from :func:`torch.linalg.eigvalsh`, in float64; autograd differentiates
through it with ``d lambda_i / d L = v_i v_i^T``, which needs no eigengap (unlike the
eigenvector gradient), so repeated eigenvalues are harmless. The original computed the same
gradient by hand, a Python loop over every weight around a SciPy ``eigsh`` call
(``cluster_gradient.py``). Its formula is exactly half the true derivative (the reference
derived this in §7.4; ``tests/test_regulariser.py`` checks the ratio 2 against the
formula), so the paper's ``cluster_lambda = 0.1`` moved the weights as ``lambda = 0.05``
does here: the ``SMALL-MNIST+CLUSTERABILITY-GRADIENT`` tag trains with
:data:`ORIGINAL_EFFECTIVE_STRENGTH`. The eigendecomposition costs ``O(n^3)`` and dominates
the step (``python -m bench regulariser``, one thread with a core to itself): for the small
MLP a regularised Adam step on 128 examples took 7.2 ms against 0.47 ms plain (15x;
eigvalsh and its backward 68% of it); for the 784-256x4-10 MLP 1.0 s against 3.9 ms (260x;
92%), too slow to train that network at the paper's scale on a CPU.

Weight normalisation. Before every batch each hidden unit's incoming weights and bias are
divided by ``s = ||(w_in, b)||_2 / sqrt(2)`` and its outgoing weights multiplied by ``s``
(:func:`normalize_weights_`). For a positively homogeneous activation (ReLU) this leaves the
network's function unchanged. Without it the regulariser could lower the eigenvalues by
rescaling units, which changes the graph but not the function (shrink a unit's incoming
weights, grow its outgoing ones), instead of by rewiring.

For a network of your own, call :func:`normalize_weights_` before each batch and add
:func:`clusterability_penalty` to the loss (README, *Training for clusterability*); the
harness's own training does it when ``TrainConfig.cluster_lambda > 0``.

References
----------
Filan et al. (2021), "Clusterability in Neural Networks", §4 (the regulariser).
von Luxburg (2007), "A tutorial on spectral clustering", Statistics and Computing 17(4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from harness.graph import ISOLATION_RTOL

__all__ = [
    "ORIGINAL_EFFECTIVE_STRENGTH",
    "PAPER_EIGS",
    "PAPER_STRENGTH",
    "clusterability_penalty",
    "laplacian_eigenvalues",
    "linear_layers",
    "normalize_weights_",
    "normalized_laplacian",
]

#: The paper's ``cluster_lambda`` (``small_mlp_cluster_config``, reference §2.1).
PAPER_STRENGTH = 0.1
#: The strength, in true-gradient units, at which the original trained: its hand-written
#: gradient was half the derivative of its loss (module docstring).
ORIGINAL_EFFECTIVE_STRENGTH = PAPER_STRENGTH / 2
#: The paper's ``num_cluster_eigs``: eigenvalues 2..4 are summed.
PAPER_EIGS = 3


def linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The ``nn.Linear`` layers of an MLP in forward order.

    Raises
    ------
    ValueError
        The module has no Linear layer, or has convolutions (the regulariser and the weight
        normalisation are defined for MLPs only).
    """
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        raise ValueError(
            "the clusterability regulariser is defined for MLPs (stacks of nn.Linear layers); "
            f"{type(model).__name__} has convolutions"
        )
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to regularise")
    return layers


def _kernels(network: nn.Module | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(network, nn.Module):
        return [layer.weight for layer in linear_layers(network)]
    kernels = list(network)
    if not kernels:
        raise ValueError("need at least one kernel")
    for i, (a, b) in enumerate(zip(kernels, kernels[1:], strict=False)):
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != b.shape[1]:
            raise ValueError(
                f"kernels {i} and {i + 1} do not chain: shapes {tuple(a.shape)} and "
                f"{tuple(b.shape)} (torch layout (out, in): kernel {i}'s rows must equal "
                f"kernel {i + 1}'s columns)"
            )
    if kernels[0].dim() != 2:
        raise ValueError(f"kernels must be 2-D (out, in), got shape {tuple(kernels[0].shape)}")
    return kernels


def normalized_laplacian(
    kernels: nn.Module | Sequence[torch.Tensor],
    *,
    isolation_rtol: float = ISOLATION_RTOL,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """``I - D^{-1/2} A D^{-1/2}`` of the weight graph, isolated neurons removed; differentiable.

    Parameters
    ----------
    kernels : nn.Module or sequence of Tensor of shape (n_{l+1}, n_l)
        An MLP, or its Linear weights in torch layout (``nn.Linear.weight``), input first.
    isolation_rtol : float, default=harness.graph.ISOLATION_RTOL
        Neurons whose degree is at most this fraction of the median positive degree are
        removed (:func:`harness.graph.kept_units`; 0 is the paper's exact-zero rule).
    dtype : torch.dtype, default=torch.float64
        Precision of the graph and the eigensolver.

    Returns
    -------
    Tensor of shape (m, m)
        ``m`` kept neurons of the ``sum_l n_l`` (inputs and outputs included), in layer order.
    """
    ws = _kernels(kernels)
    sizes = [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]
    offsets = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    n = offsets[-1]
    # Off-diagonal blocks |W_l|^T at (layer l, layer l+1); the graph is their symmetric sum.
    upper = torch.zeros(n, n, dtype=dtype, device=ws[0].device)
    for layer, w in enumerate(ws):
        rows = slice(offsets[layer], offsets[layer + 1])
        cols = slice(offsets[layer + 1], offsets[layer + 2])
        upper[rows, cols] = w.to(dtype).abs().T
    adjacency = upper + upper.T
    degree = adjacency.sum(1)
    with torch.no_grad():
        positive = degree[degree > 0]
        threshold = float(isolation_rtol) * float(positive.median()) if positive.numel() else 0.0
        keep = degree > threshold
    if int(keep.sum()) < 2:
        raise ValueError(
            f"the weight graph has {int(keep.sum())} non-isolated neuron(s); a Laplacian "
            "spectrum needs at least 2 (are all weights zero?)"
        )
    adjacency = adjacency[keep][:, keep]
    inv_sqrt = adjacency.sum(1).rsqrt()
    eye = torch.eye(adjacency.shape[0], dtype=dtype, device=adjacency.device)
    return eye - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def laplacian_eigenvalues(
    kernels: nn.Module | Sequence[torch.Tensor],
    *,
    n_eigs: int = PAPER_EIGS,
    isolation_rtol: float = ISOLATION_RTOL,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """Eigenvalues 2..``n_eigs``+1 of :func:`normalized_laplacian`, ascending; differentiable.

    Returns
    -------
    Tensor of shape (n_eigs,)
    """
    k = _check_eigs(n_eigs)
    lap = normalized_laplacian(kernels, isolation_rtol=isolation_rtol, dtype=dtype)
    if lap.shape[0] < k + 1:
        raise ValueError(
            f"n_eigs={k} needs at least {k + 1} non-isolated neurons, the graph has "
            f"{lap.shape[0]}"
        )
    # eigvalsh's gradient V diag(g) V^T has no 1/(l_i - l_j) terms: stable at repeated
    # eigenvalues, where the eigenvector gradient of eigh is not.
    return torch.linalg.eigvalsh(lap)[1:k + 1]


def clusterability_penalty(
    network: nn.Module | Sequence[torch.Tensor],
    *,
    strength: float = PAPER_STRENGTH,
    n_eigs: int = PAPER_EIGS,
    isolation_rtol: float = ISOLATION_RTOL,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The regulariser ``strength / n_eigs * sum_{i=2}^{n_eigs+1} lambda_i(L_sym)`` (§7.4).

    Add it to the loss of every batch, after :func:`normalize_weights_`; its gradient flows
    into every Linear kernel of ``network`` (not the biases).

    Parameters
    ----------
    network : nn.Module or sequence of Tensor of shape (n_{l+1}, n_l)
        An MLP (its ``nn.Linear`` layers in forward order; no convolutions), or its kernels
        in torch layout.
    strength : float, default=0.1
        The paper's ``cluster_lambda``.
    n_eigs : int, default=3
        The paper's ``num_cluster_eigs``: how many eigenvalues after the first are summed.
    isolation_rtol : float
        See :func:`normalized_laplacian`.
    dtype : torch.dtype, default=torch.float64
        Precision of the eigensolver; the result is cast back to the kernels' dtype.

    Returns
    -------
    Tensor of shape ()
        In the kernels' dtype, on their device.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> loss = clusterability_penalty(net, strength=0.1, n_eigs=2)
    >>> loss.backward()
    >>> net[0].weight.grad.shape
    torch.Size([4, 6])
    """
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
        math.isfinite(strength) and strength >= 0
    ):
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    kernels = _kernels(network)
    eigs = laplacian_eigenvalues(
        kernels, n_eigs=n_eigs, isolation_rtol=isolation_rtol, dtype=dtype
    )
    return (float(strength) / len(eigs) * eigs.sum()).to(kernels[0].dtype)


def _check_eigs(n_eigs: int) -> int:
    if isinstance(n_eigs, bool) or not isinstance(n_eigs, int) or n_eigs < 1:
        raise ValueError(f"n_eigs must be an int >= 1, got {n_eigs!r}")
    return n_eigs


@torch.no_grad()
def normalize_weights_(network: nn.Module | Sequence[nn.Linear]) -> None:
    """Rescale every hidden unit in place so that ``||(w_in, b)||_2 = sqrt(2)``; same function.

    The paper's ``NormalizeWeights`` callback (reference §7.4), applied before every batch of
    regularised training. For hidden unit ``u`` of Linear layer ``l`` (every layer but the
    last), ``s = ||(W_l[u, :], b_l[u])||_2 / sqrt(2)``; if ``s > 0``, ``W_l[u, :]`` and
    ``b_l[u]`` are divided by ``s`` and ``W_{l+1}[:, u]`` multiplied by ``s``. With a
    positively homogeneous activation between the layers (ReLU, leaky ReLU; dropout too) the
    network computes the same function; pruned (zero) weights stay zero.

    Parameters
    ----------
    network : nn.Module or sequence of nn.Linear
        An MLP whose Linear layers follow each other in forward order, with only such
        activations between them.
    """
    layers = linear_layers(network) if isinstance(network, nn.Module) else list(network)
    for inner, outer in zip(layers, layers[1:], strict=False):
        w, b = inner.weight, inner.bias
        squared = (w * w).sum(1)
        if b is not None:
            squared = squared + b * b
        scale = squared.sqrt() / math.sqrt(2.0)
        # Units with no incoming weight keep theirs (s = 0: nothing to rescale).
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        w.div_(scale[:, None])
        if b is not None:
            b.div_(scale)
        outer.weight.mul_(scale[None, :])
