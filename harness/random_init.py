"""Untrained networks: Glorot-uniform weights, plain or with clusterable initialisation (§5.5).

The paper's random-initialisation study (its Table I) scales *all five* MLP matrices by the
clusterable-init multipliers, the first one included, whereas its training code skips the
first layer (reference §2.7 vs §5.5). :func:`random_mlp_weights` takes ``skip_first`` so both
can be run: ``skip_first=True`` matches the trained MOD-INIT models, ``False`` matches Table I.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["glorot_uniform", "module_multipliers", "random_mlp_weights", "MLP_SIZES"]

MLP_SIZES = (784, 256, 256, 256, 256, 10)


def glorot_uniform(fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """(fan_in, fan_out) weights ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out)) (Glorot 2010)."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


MLP_BETWEEN = 0.6
"""Multiplier of a weight between two MLP units of different modules (reference §2.7)."""
CONV_BETWEEN = 0.8
"""The same for a kernel slice between two conv filters of different modules."""


def module_multipliers(n_modules: int, *, between: float = MLP_BETWEEN) -> tuple[float, float]:
    """(within, between) multipliers with expected value 1 under uniform module assignment.

    ``within = 1 + (1 - between)(M - 1)``, so that ``within / M + between (M - 1) / M = 1``:
    4.6 for M = 10 and the MLP's ``between = 0.6``, 2.8 for conv layers' 0.8 (reference §2.7).
    """
    return 1.0 + (1.0 - between) * (n_modules - 1), between


def random_mlp_weights(
    sizes: Sequence[int] = MLP_SIZES,
    *,
    clusterable: bool = False,
    n_modules: int = 10,
    skip_first: bool = True,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Weights of an untrained MLP, (n_in, n_out) per layer.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first.
    clusterable : bool
        Apply the clusterable initialisation: each unit gets a uniform random module (output
        units: their class index when there are at most ``n_modules`` of them) and each weight
        is multiplied by ``within`` if its two units share a module, else by ``between``.
    skip_first : bool
        Leave the input layer's matrix unscaled, as training does (reference §2.7); ``False``
        reproduces the paper's random-init study (its Table I).
    rng : numpy.random.Generator
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least two positive layer widths, got {sizes}")
    weights = [glorot_uniform(a, b, rng) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    if not clusterable:
        return weights
    within, between = module_multipliers(n_modules)
    modules = [rng.integers(0, n_modules, size=n) for n in sizes]
    if sizes[-1] <= n_modules:
        modules[-1] = np.arange(sizes[-1])
    for layer in range(1 if skip_first else 0, len(weights)):
        same = modules[layer][:, None] == modules[layer + 1][None, :]
        weights[layer] = weights[layer] * np.where(same, within, between)
    return weights
