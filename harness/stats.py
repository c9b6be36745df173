"""Significance statistics for clusterability and lesion tests (reference sections 5.3 and 6.5).

The p-value convention, written once here and used everywhere in the harness::

    p_left  = (#{null <= statistic + tol} + 1) / (n + 1)
    p_right = (#{null >= statistic - tol} + 1) / (n + 1)

with ``n`` the number of null samples and ``tol = TIE_RTOL * |statistic|`` (the
``(count + 1) / (n + 1)`` form of :func:`scipy.stats.permutation_test`, Phipson & Smyth 2010).
A null sample that ties with the statistic, within that relative tolerance, counts as "at
least as extreme", against significance, as scipy does. On continuous statistics (every
trained network's n-cut) ties do not occur and the value is the paper's
``compute_pvalue``, ``(#{null < statistic} + 1) / (n + 1)``; a network whose shuffles all
tie with it (all-equal weights) gets p = 1, not "below every shuffle". The smallest possible
value is ``1 / (n + 1)``, reached when the statistic is more extreme than every null sample;
:func:`is_sig` tests exactly that. For clusterability the left side is used: a small p means
the network's n-cut is below the n-cuts of its shuffles.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.stats

from harness.options import check_choice

__all__ = [
    "SIDES",
    "TIE_RTOL",
    "ClusterabilityResult",
    "DegenerateNullWarning",
    "chi2_rank_test",
    "cohen_d",
    "cohen_d_stats",
    "fisher_combined",
    "is_sig",
    "overall_std",
    "pvalue",
    "zscore",
]

SIDES = ("left", "right")
TIE_RTOL = 1e-9
"""Relative tolerance within which a null value ties with the statistic (floating-point noise
of the same n-cut computed along two paths is ~1e-15 relative)."""


class DegenerateNullWarning(UserWarning):
    """The null distribution has no spread: no z-score and no verdict can be given."""


def _as_null(null: object, name: str = "null") -> np.ndarray:
    arr = np.asarray(null, dtype=np.float64).ravel()
    if np.isnan(arr).any():
        raise ValueError(
            f"{name} contains {int(np.isnan(arr).sum())} NaN value(s); drop them first"
        )
    return arr


def pvalue(statistic: float, null: Sequence[float] | np.ndarray, *, side: str = "left") -> float:
    """Permutation p-value ``(#{null at least as extreme as statistic} + 1) / (n + 1)``.

    Parameters
    ----------
    statistic : float
        The observed value (for clusterability, the network's n-cut).
    null : array-like of shape (n,)
        Values of the statistic under the null (the shuffled networks' n-cuts), n >= 1.
    side : {"left", "right"}, default="left"
        "left" counts ``null <= statistic`` (small p: statistic unusually low); "right" counts
        ``null >= statistic``; equality is within ``TIE_RTOL`` relative to the statistic.

    Returns
    -------
    float in [1 / (n + 1), 1]

    Examples
    --------
    >>> pvalue(-1, np.arange(100)), pvalue(0.5, np.arange(100)), pvalue(101, np.arange(100))
    (0.009900990099009901, 0.019801980198019802, 1.0)
    >>> pvalue(3.0, [3.0, 3.0, 3.0])    # ties count against significance
    1.0
    """
    check_choice("side", side, SIDES)
    arr = _as_null(null)
    if arr.size == 0:
        raise ValueError("null is empty; a p-value needs at least one null sample")
    if math.isnan(float(statistic)):
        raise ValueError("statistic is NaN; a p-value needs a number")
    stat = float(statistic)
    tol = TIE_RTOL * abs(stat)
    count = (
        np.count_nonzero(arr <= stat + tol)
        if side == "left"
        else np.count_nonzero(arr >= stat - tol)
    )
    return float((count + 1) / (arr.size + 1))


def zscore(statistic: float, null: Sequence[float] | np.ndarray) -> float:
    """``(statistic - mean(null)) / std(null)`` with the population SD (ddof 0), as the original.

    Degenerate cases: an empty null, or one without spread (SD at most ``TIE_RTOL`` of its
    mean: every shuffle gave the same value), gives NaN: a z-score against a point mass is
    not a measure of anything. :class:`ClusterabilityResult` warns when that happens.
    """
    arr = _as_null(null)
    if arr.size == 0:
        return float("nan")
    mean = float(arr.mean())
    sd = float(arr.std(ddof=0))
    if sd <= TIE_RTOL * abs(mean) or sd == 0.0:
        return float("nan")
    return (float(statistic) - mean) / sd


def cohen_d(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cohen's d of two samples with the pooled sample SD (ddof 1).

    ``d = (mean(a) - mean(b)) / sqrt(((n_a - 1) s_a^2 + (n_b - 1) s_b^2) / (n_a + n_b - 2))``.
    A pooled SD of 0 gives ``+-inf`` (or NaN when the means are equal too).
    """
    x = _as_null(a, "a")
    y = _as_null(b, "b")
    n1, n2 = x.size, y.size
    if n1 + n2 <= 2 or n1 == 0 or n2 == 0:
        raise ValueError(
            f"cohen_d needs two non-empty samples with n_a + n_b > 2, got sizes {n1} and {n2}"
        )
    var1 = float(x.var(ddof=1)) if n1 > 1 else 0.0
    var2 = float(y.var(ddof=1)) if n2 > 1 else 0.0
    pooled = math.sqrt(((n1 - 1) * var1 + (n2 - 1) * var2) / (n1 + n2 - 2))
    return _ratio(float(x.mean()) - float(y.mean()), pooled)


def cohen_d_stats(
    mean1: float,
    mean2: float,
    sd1: float,
    sd2: float,
    n1: int,
    n2: int | None = None,
) -> float:
    """Cohen's d from summary statistics with population SDs (ddof 0).

    ``d = (mean1 - mean2) / sqrt((n1 sd1^2 + n2 sd2^2) / (n1 + n2 - 2))``; ``n2`` defaults to
    ``n1``. Since ``n * sd_pop^2 == (n - 1) * sd_sample^2`` this equals :func:`cohen_d` on the
    raw samples. (Some of the original notebooks called it with scrambled arguments; see
    reference section 5.3.)
    """
    n2 = n1 if n2 is None else n2
    if n1 + n2 <= 2:
        raise ValueError(f"cohen_d_stats needs n1 + n2 > 2, got {n1} + {n2}")
    pooled = math.sqrt((n1 * sd1**2 + n2 * sd2**2) / (n1 + n2 - 2))
    return _ratio(mean1 - mean2, pooled)


def _ratio(num: float, den: float) -> float:
    if den == 0.0:
        return float("nan") if num == 0.0 else math.copysign(math.inf, num)
    return num / den


def is_sig(p: float, n_samples: int) -> bool:
    """True when ``p`` is the smallest possible p-value ``1 / (n_samples + 1)``.

    That is, the statistic was more extreme than every null sample (``np.isclose``
    comparison, as in the original notebooks).
    """
    if n_samples < 1:
        return False
    return bool(np.isclose(p, 1.0 / (n_samples + 1)))


def overall_std(means: Sequence[float] | np.ndarray, stds: Sequence[float] | np.ndarray) -> float:
    """SD of the union of equally sized groups from their means and population SDs.

    ``sqrt(mean_i(std_i^2 + mean_i^2) - mean_i(mean_i)^2)`` (reference section 5.3): the pooled
    null SD across trained instances.
    """
    m = np.asarray(means, dtype=np.float64)
    s = np.asarray(stds, dtype=np.float64)
    if m.shape != s.shape or m.size == 0:
        raise ValueError(
            f"means and stds must be non-empty and of equal shape, got {m.shape} and {s.shape}"
        )
    var = float(np.mean(s**2 + m**2) - np.mean(m) ** 2)
    return math.sqrt(max(var, 0.0))  # clamp tiny negative rounding errors


def _check_pvalues(pvalues: Sequence[float] | np.ndarray, n_samples: int) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("pvalues is empty")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    lo = 1.0 / (n_samples + 1)
    if np.isnan(p).any() or (p < lo - 1e-9).any() or (p > 1 + 1e-9).any():
        raise ValueError(
            f"pvalues must lie in [1/(n_samples+1), 1] = [{lo:.6g}, 1] (permutation p-values "
            f"from {n_samples} null samples); got min {np.nanmin(p):.6g}, max {np.nanmax(p):.6g}"
        )
    return p


def chi2_rank_test(pvalues: Sequence[float] | np.ndarray, n_samples: int) -> float:
    """Chi-square test that permutation p-values are uniform over their ``n_samples + 1`` ranks.

    Reference section 6.5, ``chi2_categorical_test``: each p-value is mapped to its rank
    ``round(p (n + 1) - 1)`` in ``0..n``; the rank counts are compared with the uniform
    expectation by :func:`scipy.stats.chisquare`. Deviations in either direction count.

    Returns
    -------
    float
        The chi-square p-value.
    """
    p = _check_pvalues(pvalues, n_samples)
    ranks = np.rint(p * (n_samples + 1) - 1).astype(np.int64)
    counts = np.bincount(np.clip(ranks, 0, n_samples), minlength=n_samples + 1)
    return float(scipy.stats.chisquare(counts).pvalue)


def fisher_combined(pvalues: Sequence[float] | np.ndarray, n_samples: int) -> float:
    """Fisher's combination of permutation p-values, shifted to be centred (section 6.5).

    Each p-value is shifted by ``-1 / (2 (n_samples + 1))`` (the permutation p-value is
    discrete with mean ``1/2 + 1/(2(n+1))`` under the null; the shift centres it) and the
    results are combined with ``scipy.stats.combine_pvalues(method="fisher")``.
    """
    p = _check_pvalues(pvalues, n_samples)
    shifted = p - 1.0 / (2 * (n_samples + 1))
    return float(scipy.stats.combine_pvalues(shifted, method="fisher").pvalue)


def _builtin_float(x: float) -> float:
    return float(x)


def _json_float(x: float) -> float | None:
    """Strict JSON has no NaN or infinity: they become ``null``."""
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class ClusterabilityResult:
    """Clusterability of one network: its n-cut against a shuffle null (reference section 4-5).

    Attributes
    ----------
    ncut : float
        Normalised cut of the network's spectral clustering (sum over clusters, range [0, K]).
    ave_in_out : float
        ``(1 - ncut/K) / (2 ncut/K)``.
    labels : ndarray of int, shape (n_nodes,)
        Cluster label of every neuron in global node order; -1 for removed isolated neurons.
    n_clusters, method, null, n_samples, seed
        The settings that produced it (``seed`` may be None: not reproducible).
    null_distribution : ndarray of float, shape (n_samples,)
        n-cuts of the shuffled networks, in sample order.
    null_mean, null_std : float
        Mean and population SD of the null distribution (NaN when ``n_samples == 0``).
    z : float
        ``(ncut - null_mean) / null_std``; NaN for a null without spread (see :func:`zscore`).
    pvalue : float
        Left-sided permutation p-value (see the module docstring); NaN without samples.
    is_sig : bool
        ``pvalue == 1 / (n_samples + 1)``: the network beat every shuffle. Never true for a
        null without spread.
    """

    ncut: float
    ave_in_out: float
    labels: np.ndarray = field(repr=False, compare=False)
    n_clusters: int
    method: str
    null: str
    n_samples: int
    seed: int | None
    null_distribution: np.ndarray = field(repr=False, compare=False)
    null_mean: float
    null_std: float
    z: float
    pvalue: float
    is_sig: bool

    @classmethod
    def from_null(
        cls,
        *,
        ncut: float,
        ave_in_out: float,
        labels: np.ndarray,
        n_clusters: int,
        method: str,
        null: str,
        seed: int | None,
        null_distribution: np.ndarray,
    ) -> ClusterabilityResult:
        """Fill in the null summary (mean, SD, z, p, is_sig) from the null n-cuts."""
        dist = np.asarray(null_distribution, dtype=np.float64).ravel()
        n = int(dist.size)
        if n == 0:
            nan = float("nan")
            mean = sd = z = p = nan
            sig = False
        else:
            mean = float(dist.mean())
            sd = float(dist.std(ddof=0))
            z = zscore(ncut, dist)
            p = pvalue(ncut, dist, side="left")
            sig = is_sig(p, n)
            if math.isnan(z):
                warnings.warn(
                    f"the {null!r} null distribution has no spread (all {n} shuffles gave "
                    f"n-cut {mean:.6g}): no z-score and no significance. Shuffling cannot "
                    "change this network (e.g. all weights equal).",
                    DegenerateNullWarning,
                    stacklevel=2,
                )
                sig = False
        return cls(
            ncut=float(ncut),
            ave_in_out=float(ave_in_out),
            labels=np.asarray(labels, dtype=np.int64),
            n_clusters=int(n_clusters),
            method=str(method),
            null=str(null),
            n_samples=n,
            seed=None if seed is None else int(seed),
            null_distribution=dist,
            null_mean=mean,
            null_std=sd,
            z=float(z),
            pvalue=float(p),
            is_sig=bool(sig),
        )

    @property
    def n_nodes(self) -> int:
        """Number of neurons in the network (removed ones included)."""
        return int(self.labels.shape[0])

    @property
    def n_removed(self) -> int:
        """Number of isolated neurons removed before clustering."""
        return int(np.count_nonzero(self.labels < 0))

    def to_row(self) -> dict[str, Any]:
        """Flat dict of builtin scalars (no arrays, no numpy types) for report tables."""
        return {
            "ncut": _builtin_float(self.ncut),
            "ave_in_out": _builtin_float(self.ave_in_out),
            "n_clusters": int(self.n_clusters),
            "method": str(self.method),
            "null": str(self.null),
            "n_samples": int(self.n_samples),
            "seed": None if self.seed is None else int(self.seed),
            "null_mean": _builtin_float(self.null_mean),
            "null_std": _builtin_float(self.null_std),
            "z": _builtin_float(self.z),
            "p": _builtin_float(self.pvalue),
            "is_sig": bool(self.is_sig),
            "n_nodes": self.n_nodes,
            "n_removed": self.n_removed,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: :meth:`to_row` plus ``labels`` and ``null_distribution`` as lists.

        NaN and infinite floats become ``None`` (JSON ``null``), e.g. all null fields when
        ``n_samples == 0``.
        """
        row = self.to_row()
        out: dict[str, Any] = {
            k: (_json_float(v) if isinstance(v, float) else v) for k, v in row.items()
        }
        out["labels"] = [int(x) for x in self.labels]
        out["null_distribution"] = [_json_float(x) for x in self.null_distribution]
        return out

    def to_frame(self) -> Any:
        """A one-row :class:`pandas.DataFrame` of :meth:`to_row`, to collect many results.

        >>> import pandas as pd                                        # doctest: +SKIP
        >>> pd.concat([r.to_frame() for r in results], ignore_index=True)  # doctest: +SKIP
        """
        import pandas as pd

        return pd.DataFrame([self.to_row()])

    @property
    def verdict(self) -> str:
        """One phrase: significant, not significant, no verdict (degenerate null) or no null."""
        if self.n_samples == 0:
            return "no null (n_samples = 0)"
        if math.isnan(self.z):
            return "no verdict: the null has no spread"
        if self.is_sig:
            return f"significant: below all {self.n_samples} shuffles"
        return "not significant at the minimum p-value"

    def __repr__(self) -> str:
        return (
            f"ClusterabilityResult(ncut={self.ncut:.4f}, K={self.n_clusters}, "
            f"null={self.null!r} x{self.n_samples}: mean={self.null_mean:.4f} "
            f"sd={self.null_std:.4f}, z={self.z:.3g}, pvalue={self.pvalue:.4g}, "
            f"is_sig={self.is_sig}, method={self.method!r}, seed={self.seed})"
        )

    def __str__(self) -> str:
        lines = [
            f"n-cut     {self.ncut:.4f}  (K = {self.n_clusters}, ave_in_out {self.ave_in_out:.4f})",
        ]
        if self.n_samples:
            lines += [
                f"null      {self.null!r} x {self.n_samples}: mean {self.null_mean:.4f}, "
                f"sd {self.null_std:.4f}",
                f"z = {self.z:.3f}   p = {self.pvalue:.4g} "
                f"(min {1 / (self.n_samples + 1):.4g})",
            ]
        lines += [
            f"verdict   {self.verdict}",
            f"method    {self.method}, seed {self.seed}",
        ]
        return "\n".join(lines)
