"""Drift: a run compared with a baseline, cell by cell, with the noise that exists.

:func:`compare_runs` compares a reports folder with a baseline (:mod:`harness.report.baseline`:
the same profile run at several base seeds) and reports claims whose verdict changed, cells
that moved beyond their noise, studies whose cells moved together, and cells or claims that
only one side has. :func:`write_drift` writes ``drift.md``; the page shows
:func:`drift_line`.

**Cells.** A cell is what the study records as one configuration: the ``cell`` column the
plugin writes into every row (the test function and all its parameters except ``instance``,
so every parameter that tells variants apart, such as ``isolation`` or ``bn``, keeps them
apart). A test that records several rows (epochs, modes) has a cell per row position. A
cell's value at a seed is the mean over its rows (instances) of a metric.

**Two rules, chosen per cell.**

* *Paired.* When the run has the seed of one of the baseline's runs and the cell's trained
  networks are bitwise that run's (every row's ``weights_digest`` equal; rows without trained
  networks compare their seed only), only the analysis can have changed. The cell moved when
  ``|x - x_seed| > 3 x`` its sampling error: ``null_std / sqrt(n_samples)`` for n-cut units,
  ``1 / sqrt(n_samples)`` for z, ``sd / sqrt(n_trials)`` for a mean over random draws.
* *Seed spread.* Elsewhere (another seed, another CPU, another executor) the networks are
  another draw of training, and the reference is the baseline's distribution over its ``k``
  seeds: mean ``m``, between-seed SD ``s`` and sampling error ``e``. With the combined spread
  ``c = sqrt(s**2 + e**2)``, ``t = |x - m| / (c sqrt(1 + 1/k))`` is a prediction error with
  ``k - 1`` degrees of freedom, reported as the normal deviate of equal tail probability
  (so "3" means as unlikely as 3 SD of a normal, whatever ``k``). The cell moved when that
  exceeds the family-wise cutoff: with ``M`` such comparisons in the run, the deviate whose
  tail is 1/M of a 3-SD tail (Bonferroni; 4.2 SD for 85 cells), so that a run of another seed
  or machine raises a false alarm as rarely as one 3-SD test.

**Pooled, per study and metric.** The mean of the cells' standardised changes (signed), over
its own standard error: ``sqrt(nu / (nu - 2) / n)`` for ``n`` cells under the seed-spread
rule (a t variable with ``nu = k - 1`` degrees of freedom has that variance), ``1 /
sqrt(n)`` under the paired rule; the cutoff is family-wise over the studies and metrics. It catches a systematic shift, such as an estimator that
moves every n-cut by 1%, that no single cell's tolerance sees.

**Claims.** Paired: a verdict other than that seed's. Seed spread: a verdict that no
baseline seed had.

Modules: :mod:`~harness.report.drift.cells` (cells, values, sampling errors, claim
outcomes), :mod:`~harness.report.drift.rules` (the rules and :func:`compare_runs`),
:mod:`~harness.report.drift.markdown` (``drift.md`` and its summary line).
"""

from __future__ import annotations

from harness.report.drift.cells import DRIFT_METRICS
from harness.report.drift.markdown import (
    DRIFT_FILE,
    drift_failed,
    drift_line,
    read_drift_line,
    write_drift,
)
from harness.report.drift.rules import (
    RELATIVE_TOLERANCE,
    THRESHOLD,
    Drift,
    Flip,
    Move,
    Pooled,
    compare_runs,
    family_cutoff,
)

__all__ = [
    "DRIFT_FILE",
    "DRIFT_METRICS",
    "Drift",
    "Flip",
    "Move",
    "Pooled",
    "RELATIVE_TOLERANCE",
    "THRESHOLD",
    "compare_runs",
    "drift_failed",
    "drift_line",
    "family_cutoff",
    "read_drift_line",
    "write_drift",
]
