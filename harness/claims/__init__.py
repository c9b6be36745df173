"""The registry of the paper's claims: what each says, the paper's evidence, how it is checked.

A claim is a pure function of result rows (a :class:`pandas.DataFrame` with the columns the
experiments record: ``model_tag``, ``phase``, ``n_clusters``, ``null``, ``ncut``,
``null_mean``, ``z``, ``p``, ``is_sig``, ...). The experiments compute the rows a claim needs
(with the same code that writes the tables) and assert :meth:`Claim.evaluate` on them, so the
same function that holds on our data fails on a table that contradicts the paper
(``tests/test_claims.py`` feeds it such tables).

Most claims are derived from the paper's tables (``harness/paper/paper_values.csv``), one per
cell whose pattern over the paper's instances is clear-cut:

* significant in every instance (``n_sig == n``): :func:`significant_in_every_instance`;
* the n-cut above every shuffle in every instance (``n_p1 == n``, the L1 counter-result):
  :func:`above_every_shuffle_in_every_instance`;
* significant in no instance (``n_sig == 0``): :func:`significant_in_no_instance`;
* anything else is *mixed*: recorded with the paper's counts as its reason, never asserted.

Orderings between cells (dropout below control, clusterable init lowest, pruned below
unpruned, HALVES below HALVES-SAME, trained below random init) and claims the tables do not
hold (Cohen's d of the two nulls, lesions, random-init values) are written by hand below.

Each claim has a status per profile: ``assert`` (the default), ``xfail`` with the reason and
its evidence (a claim we believe fails at that scale), or ``record`` with the reason (mixed
cells; the smoke profile). The ``ci`` profile asserts only :data:`CI_CLAIMS`, chosen to hold
robustly on its small models; each says why in ``ci_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from harness.paper import paper_value

__all__ = [
    "CI_CLAIMS",
    "Cell",
    "Claim",
    "Outcome",
    "REGISTRY",
    "claims_for",
    "registry",
    "select",
]

STATUSES = ("assert", "xfail", "record")


@dataclass(frozen=True)
class Cell:
    """One cell of a paper table: a model tag in a phase, clustered with K against a null."""

    tag: str
    phase: str = "pruned"
    null: str = "layer"
    n_clusters: int = 12

    def label(self) -> str:
        return f"{self.tag} {self.phase} K={self.n_clusters} {self.null}"


@dataclass(frozen=True)
class Outcome:
    """What a claim found: whether it holds, and the numbers it looked at."""

    holds: bool
    observed: Mapping[str, Any]


Check = Callable[[pd.DataFrame], Outcome]


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as the harness checks it.

    Attributes
    ----------
    id : str
        Stable identifier; the parameter id of the test that asserts it.
    table : str
        The paper's table or section (``"B"``, ``"A"``, ``"H7"``, ``"I"``, ``"lesion"``, ...).
    statement : str
        What the claim says, in one sentence.
    evidence : str
        The paper's evidence for it (counts, means).
    study : str
        The experiment module whose ``test_claim`` asserts it (``experiments/test_<study>.py``).
    cells : tuple of Cell
        The cells whose rows it needs.
    check : callable
        Rows -> :class:`Outcome`.
    status : mapping
        Profile name -> ``("assert" | "xfail" | "record", reason)``; profiles not listed
        assert, except ``smoke`` (records) and ``ci`` (asserts only :data:`CI_CLAIMS`).
    """

    id: str
    table: str
    statement: str
    evidence: str
    study: str
    cells: tuple[Cell, ...]
    check: Check = field(repr=False, compare=False)
    status: Mapping[str, tuple[str, str]] = field(default_factory=dict, compare=False)

    @property
    def test(self) -> str:
        return f"experiments/test_{self.study}.py::test_claim[{self.id}]"

    def status_at(self, profile: str) -> tuple[str, str]:
        """``(status, reason)`` at a profile.

        In order: a claim the paper leaves open (``record`` in its own statuses) is
        recorded everywhere; ``smoke`` records; ``ci`` asserts :data:`CI_CLAIMS` and records
        the rest; a profile with a calibration (:mod:`harness.calibration`) takes each
        claim's status from its verdicts at the calibrated seeds (a claim it did not run is
        recorded); otherwise the claim's own status at that profile, else ``assert``.
        """
        from harness.calibration import calibration, calibration_command

        own = self.status.get(profile)
        if own is not None and own[0] == "record":
            return own
        if profile == "smoke":
            return ("record", "the smoke profile checks plumbing, not claims")
        measured = calibration(profile)
        entry = measured.get(self.id) if measured is not None else None
        if profile == "ci":
            if self.id in CI_CLAIMS:
                note = f"; {entry.status()[1]}" if entry is not None else ""
                return ("assert", f"{CI_CLAIMS[self.id]}{note}")
            note = f"; {entry.status()[1]}" if entry is not None else ""
            return ("record", f"not among the claims the ci profile is sized for{note}")
        if measured is not None:
            if entry is not None:
                return entry.status()
            return (
                "record",
                f"not run by the {profile} profile's calibration: `{calibration_command(profile)}`"
                " calibrates it",
            )
        if own is not None:
            return own
        return ("assert", "")

    def evaluate(self, rows: pd.DataFrame) -> Outcome:
        """The claim on ``rows``; a claim whose cells have no rows does not hold."""
        return self.check(rows)


# --------------------------------------------------------------------------------------
# selecting rows


def select(rows: pd.DataFrame, cell: Cell) -> pd.DataFrame:
    """The rows of one cell (columns that a study does not record are not filtered on)."""
    mask = np.ones(len(rows), dtype=bool)
    for column, value in (
        ("model_tag", cell.tag),
        ("phase", cell.phase),
        ("null", cell.null),
        ("n_clusters", cell.n_clusters),
    ):
        if column in rows.columns:
            mask &= (rows[column] == value).to_numpy()
    return rows[mask]


def _values(rows: pd.DataFrame, cell: Cell, column: str) -> list[Any]:
    part = select(rows, cell)
    if column not in part.columns:
        return []
    return [v.item() if hasattr(v, "item") else v for v in part[column].tolist()]


def _mean(rows: pd.DataFrame, cells: Iterable[Cell], column: str = "ncut") -> float:
    values = [float(v) for cell in cells for v in _values(rows, cell, column)]
    return float(np.mean(values)) if values else math.nan


# --------------------------------------------------------------------------------------
# claim families: each returns a check (rows -> Outcome)


def _p_z_columns(column: str) -> tuple[str, str]:
    """The p-value and z columns that go with a significance column (``layer_is_sig`` ->
    ``layer_p``, ``layer_z`` in Table A's rows; ``is_sig`` -> ``p``, ``z``)."""
    prefix = column.removesuffix("is_sig")
    return f"{prefix}p", f"{prefix}z"


def significant_in_every_instance(cell: Cell, *, column: str = "is_sig") -> Check:
    """Every instance has the minimum p-value 1/(n+1) (it beat every shuffle)."""
    p_col, z_col = _p_z_columns(column)

    def check(rows: pd.DataFrame) -> Outcome:
        sig = [bool(v) for v in _values(rows, cell, column)]
        observed = {"p": _values(rows, cell, p_col), "z": _values(rows, cell, z_col)}
        return Outcome(bool(sig) and all(sig), observed)

    return check


def significant_in_no_instance(cell: Cell, *, column: str = "is_sig") -> Check:
    """No instance beat every shuffle."""
    p_col, z_col = _p_z_columns(column)

    def check(rows: pd.DataFrame) -> Outcome:
        sig = [bool(v) for v in _values(rows, cell, column)]
        observed = {"p": _values(rows, cell, p_col), "z": _values(rows, cell, z_col)}
        return Outcome(bool(sig) and not any(sig), observed)

    return check


def above_every_shuffle_in_every_instance(cell: Cell) -> Check:
    """p = 1 in every instance: the network's n-cut is at or above every shuffle's."""

    def check(rows: pd.DataFrame) -> Outcome:
        ps = [float(v) for v in _values(rows, cell, "p")]
        observed = {
            "p": ps,
            "ncut": _values(rows, cell, "ncut"),
            "null_mean": _values(rows, cell, "null_mean"),
        }
        return Outcome(bool(ps) and all(p >= 1.0 - 1e-12 for p in ps), observed)

    return check


def mean_lower(lower: Sequence[Cell], higher: Sequence[Cell], *, column: str = "ncut") -> Check:
    """The mean of ``column`` over ``lower``'s rows is below that over ``higher``'s."""

    def check(rows: pd.DataFrame) -> Outcome:
        a, b = _mean(rows, lower, column), _mean(rows, higher, column)
        observed = {
            " + ".join(c.label() for c in lower): a,
            " + ".join(c.label() for c in higher): b,
        }
        return Outcome(bool(a < b), observed)

    return check


def lowest_mean(target: Cell, others: Sequence[Cell], *, column: str = "ncut") -> Check:
    """``target`` has the lowest mean ``column`` of all the cells."""

    def check(rows: pd.DataFrame) -> Outcome:
        means = {c.tag: _mean(rows, [c], column) for c in (target, *others)}
        finite = {k: v for k, v in means.items() if not math.isnan(v)}
        holds = len(finite) == len(means) and min(finite, key=finite.__getitem__) == target.tag
        return Outcome(holds, means)

    return check


def mean_abs_at_least(cell: Cell, column: str, bound: float) -> Check:
    """The mean of ``|column|`` over the cell's instances is at least ``bound``."""

    def check(rows: pd.DataFrame) -> Outcome:
        values = [abs(float(v)) for v in _values(rows, cell, column)]
        mean = float(np.mean(values)) if values else math.nan
        return Outcome(bool(values) and mean >= bound, {f"mean |{column}|": mean, column: values})

    return check


def mean_abs_below(cell: Cell, column: str, bound: float) -> Check:
    """The mean of ``|column|`` over the cell's instances is below ``bound``."""

    def check(rows: pd.DataFrame) -> Outcome:
        values = [abs(float(v)) for v in _values(rows, cell, column)]
        mean = float(np.mean(values)) if values else math.nan
        return Outcome(bool(values) and mean < bound, {f"mean |{column}|": mean, column: values})

    return check


def value_within(cell: Cell, column: str, target: float, tolerance: float) -> Check:
    """The mean of ``column`` is within ``tolerance`` of ``target``."""

    def check(rows: pd.DataFrame) -> Outcome:
        mean = _mean(rows, [cell], column)
        return Outcome(abs(mean - target) <= tolerance, {column: mean, "target": target})

    return check


def all_below_all(lower: Sequence[Cell], higher: Sequence[Cell], *, column: str = "ncut") -> Check:
    """Every value of ``lower``'s rows is below every value of ``higher``'s."""

    def check(rows: pd.DataFrame) -> Outcome:
        a = [float(v) for c in lower for v in _values(rows, c, column)]
        b = [float(v) for c in higher for v in _values(rows, c, column)]
        holds = bool(a) and bool(b) and max(a) < min(b)
        return Outcome(
            holds, {"max lower": max(a, default=math.nan), "min higher": min(b, default=math.nan)}
        )

    return check


# --------------------------------------------------------------------------------------
# the registry

#: Claims the ``ci`` profile asserts, with why each is there. Each held at every seed of the
#: ci calibration (``baselines/ci``, ``make baseline``; tests/test_baseline.py checks it), and
#: each break of tests/test_breaks.py fails at least one of them (README, "Which claim catches
#: which break"). MNIST+DROPOUT's significance and the dropout ordering are not here: at 3+3
#: epochs on 12,000 examples MNIST+DROPOUT sometimes does not become clusterable (base seed
#: 1: z = +1.0 where other seeds give -8 to -13), and the Cohen's d of pruned MNIST+DROPOUT
#: held at 3 of 5 calibrated seeds.
CI_CLAIMS: dict[str, str] = {
    "B-FASHION+DROPOUT-pruned-sig": "pruning plus dropout makes FASHION clusterable even at "
    "the ci scale; catches clustering that ignores the weights and a null drawn from the network",
    "B-FASHION-pruned-sig": "pruning alone makes FASHION clusterable at the ci scale; catches "
    "the same breaks as the dropout network",
    "B-HALVES-MNIST-pruned-sig": "two unrelated tasks make two modules (unpruned HALVES is not "
    "yet significant at the ci scale, so it is not chosen)",
    "B-MNIST+DROPOUT-pruned-below-unpruned": "pruning lowers the n-cut by more than 1",
    "B-FASHION+DROPOUT-pruned-below-unpruned": "pruning lowers the n-cut by more than 1",
    "I-random-init-mlp": "a property of the initialisation and the clustering only; catches K "
    "ignored",
    "I-random-init-mlp-clusterable": "a property of the initialisation and the clustering only",
    "I-random-init-cnn": "a property of the initialisation and the filter graph only",
    "I-trained-below-random": "trained pruned MLPs sit far below every untrained one",
    "A-FASHION+DROPOUT-pruned-cohen-d-large": "the two nulls of a pruned network differ (the "
    "sparsity-keeping null is more clusterable); catches pruning disabled and a degenerate null",
    "B-MNIST-pruned-learns": "test accuracy far above chance; catches training on shuffled labels",
    "B-FASHION-pruned-learns": "test accuracy far above chance; catches training on shuffled "
    "labels",
}

_DATASETS = ("MNIST", "FASHION")
_DERIVED_TABLES = {
    "A": "null_models",
    "B": "clustering",
    "G": "stability",
    "H2": "n_clusters",
    "H7": "n_clusters",
    "H10": "n_clusters",
    "C": "cnn",
    "D": "cnn",
    "E": "regulariser",
}


def _derived(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """One claim per (table, tag, phase, null, K) cell with significance counts."""
    cells: dict[tuple[str, str, str, str, int], dict[str, float]] = {}
    for row in paper_rows:
        if row["table"] not in _DERIVED_TABLES or row["metric"] not in ("n_sig", "n_p1"):
            continue
        key = (
            str(row["table"]),
            str(row["model_tag"]),
            str(row["phase"]),
            str(row["null"]),
            int(row["n_clusters"]),
        )
        entry = cells.setdefault(key, {"n": float(row["n_instances"])})
        entry[str(row["metric"])] = float(row["value"])
    out: list[Claim] = []
    for (table, tag, phase, null, k), counts in sorted(cells.items()):
        n, n_sig, n_p1 = counts["n"], counts.get("n_sig", math.nan), counts.get("n_p1", math.nan)
        cell = Cell(tag, phase, null or "layer", k)
        evidence = f"significant in {n_sig:g} of {n:g} instances" + (
            f", p = 1 in {n_p1:g}" if not math.isnan(n_p1) else ""
        )
        null_name = f"the {cell.null} null"
        where = f"{phase} {tag} at K = {k}"
        column = "is_sig"
        if table == "A":
            column = "layer_is_sig" if cell.null == "layer" else "nonzero_is_sig"
        base = f"{table}-{tag}-{phase}" + (f"-K{k}" if table.startswith("H") else "")
        base += f"-{cell.null}" if table in ("A",) or table.startswith("H") else ""
        status: dict[str, tuple[str, str]] = {}
        if n_sig == n:
            ident, statement, check = (
                f"{base}-sig",
                f"{where} is significant against {null_name} in every instance",
                significant_in_every_instance(cell, column=column),
            )
        elif n_p1 == n:
            ident, statement, check = (
                f"{base}-p1",
                f"{where} has an n-cut above every shuffle of {null_name} in every instance (p = 1)",
                above_every_shuffle_in_every_instance(cell),
            )
        elif n_sig == 0:
            ident, statement, check = (
                f"{base}-not-sig",
                f"{where} is significant against {null_name} in no instance",
                significant_in_no_instance(cell, column=column),
            )
        else:
            ident, statement, check = (
                f"{base}-mixed",
                f"{where} against {null_name}: mixed significance",
                significant_in_every_instance(cell, column=column),
            )
            reason = f"mixed in the paper ({evidence}): no clear-cut pattern to assert"
            status = {p: ("record", reason) for p in ("quick", "paper", "ci")}
        out.append(
            Claim(
                ident,
                table,
                statement,
                f"paper: {evidence}",
                _DERIVED_TABLES[table],
                (cell,),
                check,
                status,
            )
        )
    return out


def _b(tag: str, phase: str = "pruned", metric: str = "ncut") -> float:
    """One of Table B's published numbers (NaN where the paper has none)."""
    return paper_value("B", tag, metric, phase=phase)


def _orderings() -> list[Claim]:
    """Table A and B's orderings, with evidence read from the paper's numbers.

    Two orderings hold for MNIST only, as the paper's numbers show (``tests/test_claims_paper.py``
    checks every claim against them): HALVES-FASHION's pruned n-cut is above HALVES-SAME-FASHION's,
    and FASHION+L1REG's unpruned n-cut is below FASHION+MOD-INIT's.
    """
    out = []
    for ds in _DATASETS:
        drop, control = _b(f"{ds}+DROPOUT"), _b(ds)
        out.append(
            Claim(
                f"B-dropout-lowers-{ds}",
                "B",
                f"dropout lowers the pruned {ds} MLP n-cut",
                f"paper: {drop:.3f} with dropout < {control:.3f} without",
                "clustering",
                (Cell(f"{ds}+DROPOUT"), Cell(ds)),
                mean_lower([Cell(f"{ds}+DROPOUT")], [Cell(ds)]),
            )
        )
        grid = [
            Cell(t)
            for t in (
                ds,
                f"{ds}+DROPOUT",
                f"{ds}+L1REG",
                f"{ds}+L2REG",
                f"HALVES-SAME-{ds}",
                f"HALVES-{ds}",
            )
        ]
        phases = ("pruned", "unpruned") if ds == "MNIST" else ("pruned",)
        for phase in phases:
            target = Cell(f"{ds}+MOD-INIT", phase)
            others = [Cell(c.tag, phase) for c in grid]
            runner_up = min(others, key=lambda c: _b(c.tag, phase))
            out.append(
                Claim(
                    f"B-clusterable-init-lowest-{ds}-{phase}",
                    "B",
                    f"clusterable init gives the lowest {phase} n-cut of the {ds} grid",
                    f"paper: {_b(target.tag, phase):.3f}, next lowest {runner_up.tag} "
                    f"{_b(runner_up.tag, phase):.3f}",
                    "clustering",
                    (target, *others),
                    lowest_mean(target, others),
                )
            )
        if ds == "MNIST":
            halves, same = f"HALVES-{ds}", f"HALVES-SAME-{ds}"
            out.append(
                Claim(
                    f"B-halves-below-halves-same-{ds}",
                    "B",
                    f"{halves} (different digits) has a lower pruned n-cut than {same}",
                    f"paper: {_b(halves):.3f} < {_b(same):.3f}; significant in "
                    f"{_b(halves, metric='n_sig'):g} and {_b(same, metric='n_sig'):g} of 5",
                    "clustering",
                    (Cell(halves), Cell(same)),
                    mean_lower([Cell(halves)], [Cell(same)]),
                )
            )
        for tag in (ds, f"{ds}+DROPOUT"):
            out.append(
                Claim(
                    f"B-{tag}-pruned-below-unpruned",
                    "B",
                    f"pruning lowers the {tag} MLP n-cut",
                    f"paper: {_b(tag):.3f} pruned < {_b(tag, 'unpruned'):.3f} unpruned",
                    "clustering",
                    (Cell(tag), Cell(tag, "unpruned")),
                    mean_lower([Cell(tag)], [Cell(tag, "unpruned")]),
                )
            )
        for tag in (ds, f"{ds}+DROPOUT"):
            d = paper_value("A", tag, "cohen_d", phase="pruned", null="")
            out.append(
                Claim(
                    f"A-{tag}-pruned-cohen-d-large",
                    "A",
                    f"the layer and layer_nonzero nulls of pruned {tag} MLPs differ (|Cohen's d| >= 1)",
                    f"paper: |d| = {abs(d):.2f} (Table A, 5 instances)",
                    "null_models",
                    (Cell(tag),),
                    mean_abs_at_least(Cell(tag), "cohen_d", 1.0),
                )
            )
            d = paper_value("A", tag, "cohen_d", phase="unpruned", null="")
            out.append(
                Claim(
                    f"A-{tag}-unpruned-cohen-d-small",
                    "A",
                    f"the two nulls of an unpruned {tag} MLP are the same distribution (|Cohen's d| < 0.5)",
                    f"paper: |d| = {abs(d):.3f} unpruned (the two shuffles coincide without zeros)",
                    "null_models",
                    (Cell(tag, "unpruned"),),
                    mean_abs_below(Cell(tag, "unpruned"), "cohen_d", 0.5),
                )
            )
    return out


def _random_init() -> list[Claim]:
    mlp = Cell("MLP/plain", "init", "none", 12)
    mod = Cell("MLP/clusterable", "init", "none", 12)
    tags = ("MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT")
    pruned = [Cell(t) for t in tags]
    unpruned = [Cell(t, "unpruned") for t in tags]

    def table_i(cell: Cell, metric: str) -> float:
        return paper_value("I", cell.tag, metric)

    def draws(cell: Cell) -> str:
        return (
            f"paper: {table_i(cell, 'mean'):.3f} (SD {table_i(cell, 'sd'):.3f}, "
            f"{table_i(cell, 'min'):.3f}-{table_i(cell, 'max'):.3f}) over 100 draws"
        )

    def trained(phase: str) -> str:
        means = [_b(t, phase) for t in tags]
        return (
            f"paper: trained {phase} means {min(means):.3f}-{max(means):.3f} against random "
            f"init {table_i(mlp, 'min'):.3f}-{table_i(mlp, 'max'):.3f}"
        )

    out = []
    for ident, cell, what, tolerance in (
        ("I-random-init-mlp", mlp, "untrained 784-256x4-10 MLPs", 0.05),
        ("I-random-init-mlp-clusterable", mod, "clusterable-initialised (all layers) untrained MLPs", 0.1),
    ):
        target = table_i(cell, "mean")
        out.append(
            Claim(
                ident,
                "I",
                f"{what} have an n-cut of {target:.3f} +- {tolerance:g}",
                draws(cell),
                "random_init",
                (cell,),
                value_within(cell, "mean", target, tolerance),
            )
        )
    return [
        *out,
        Claim(
            "I-trained-below-random",
            "I",
            "every trained pruned MLP has a lower n-cut than every untrained one",
            trained("pruned"),
            "random_init",
            (*pruned, mlp),
            _trained_below_random(pruned, mlp),
        ),
        Claim(
            "I-trained-unpruned-below-random",
            "I",
            "every trained unpruned MLP has a lower n-cut than every untrained one",
            trained("unpruned"),
            "random_init",
            (*unpruned, mlp),
            _trained_below_random(unpruned, mlp),
        ),
        *_random_init_conv(),
    ]


#: Table I's conv rows: (tag, networks, tolerance, ours: mean and SD of 100 draws at the paper
#: profile, seed 0, "fast" estimator); the target is the paper's mean (``paper_values.csv``). The clusterable small CNN's tolerance is
#: wider: its draws sit 0.06 above the paper's mean with twice its SD, under scikit-learn's
#: estimator ("reference", 9.311 over 20 draws) as under ours, although the sampling follows
#: the original code (a random module per filter, x2.8/x0.8 per slice, matrix 1-norm).
_CONV_RANDOM_INIT = (
    ("CNN/plain", "small CNNs (192-node filter graph)", 0.05, "10.899 (SD 0.013)"),
    ("CNN/clusterable", "clusterable-initialised small CNNs", 0.15, "9.309 (SD 0.064)"),
    ("VGG/plain", "VGGs (4,224-node filter graph)", 0.1, "8.513 (SD 0.022)"),
    ("VGG/clusterable", "clusterable-initialised VGGs", 0.1, "7.739 (SD 0.057)"),
)


def _random_init_conv() -> list[Claim]:
    """Table I's untrained small CNN and VGG: the mean n-cut within a tolerance of the paper's."""
    out = []
    for tag, what, tolerance, ours in _CONV_RANDOM_INIT:
        cell = Cell(tag, "init", "none", 12)
        target = paper_value("I", tag, "mean")
        slug = tag.lower().replace("/plain", "").replace("/", "-")
        out.append(
            Claim(
                f"I-random-init-{slug}",
                "I",
                f"untrained {what} have an n-cut of {target:.3f} +- {tolerance:g} (K = 12, "
                "matrix 1-norm)",
                f"paper: {target:.3f} (SD {paper_value('I', tag, 'sd'):.3f}) over 100 draws; "
                f"ours (paper profile, seed 0): {ours}",
                "random_init",
                (cell,),
                value_within(cell, "mean", target, tolerance),
            )
        )
    cnn, vgg = Cell("CNN/plain", "init", "none", 12), Cell("VGG/plain", "init", "none", 12)
    for plain, mod, name in (
        (cnn, Cell("CNN/clusterable", "init", "none", 12), "cnn"),
        (vgg, Cell("VGG/clusterable", "init", "none", 12), "vgg"),
    ):
        low, high = paper_value("I", mod.tag, "max"), paper_value("I", plain.tag, "min")
        out.append(
            Claim(
                f"I-random-init-{name}-clusterable-lower",
                "I",
                f"clusterable initialisation lowers the untrained {name.upper()}'s n-cut: every "
                "clusterable draw below every plain draw",
                f"paper: mean {paper_value('I', plain.tag, 'mean'):.3f} -> "
                f"{paper_value('I', mod.tag, 'mean'):.3f}; clusterable max {low:.3f} < plain "
                f"min {high:.3f}",
                "random_init",
                (mod, plain),
                _random_init_ranges_below(mod, plain),
            )
        )
    return out


def _random_init_ranges_below(lower: Cell, higher: Cell) -> Check:
    """The largest n-cut of ``lower``'s draws is below the smallest of ``higher``'s."""

    def check(rows: pd.DataFrame) -> Outcome:
        a = [float(v) for v in _values(rows, lower, "max")]
        b = [float(v) for v in _values(rows, higher, "min")]
        holds = bool(a) and bool(b) and max(a) < min(b)
        return Outcome(
            holds, {"max lower": max(a, default=math.nan), "min higher": min(b, default=math.nan)}
        )

    return check


def _trained_below_random(trained: Sequence[Cell], random: Cell) -> Check:
    def check(rows: pd.DataFrame) -> Outcome:
        a = [float(v) for c in trained for v in _values(rows, c, "ncut")]
        b = [float(v) for v in _values(rows, random, "min")]
        holds = bool(a) and bool(b) and max(a) < min(b)
        return Outcome(
            holds,
            {"max trained": max(a, default=math.nan), "min random init": min(b, default=math.nan)},
        )

    return check


def every_instance_below(cell: Cell, column: str, bound: float) -> Check:
    """``column`` is below ``bound`` in every instance."""

    def check(rows: pd.DataFrame) -> Outcome:
        values = [float(v) for v in _values(rows, cell, column)]
        return Outcome(bool(values) and all(v < bound for v in values), {column: values})

    return check


def every_instance_at_least(cell: Cell, column: str, bound: float) -> Check:
    """``column`` is at least ``bound`` in every instance."""

    def check(rows: pd.DataFrame) -> Outcome:
        values = [float(v) for v in _values(rows, cell, column)]
        return Outcome(bool(values) and all(v >= bound for v in values), {column: values})

    return check


def column_greater(cell: Cell, larger: str, smaller: str) -> Check:
    """Summed over the cell's rows, ``larger`` exceeds ``smaller``."""

    def check(rows: pd.DataFrame) -> Outcome:
        a = sum(float(v) for v in _values(rows, cell, larger))
        b = sum(float(v) for v in _values(rows, cell, smaller))
        has = bool(_values(rows, cell, larger))
        return Outcome(has and a > b, {larger: a, smaller: b})

    return check


def last_epoch_lower(cell_pruned: Cell, cell_unpruned: Cell) -> Check:
    """The n-cut at the last pruning epoch is below the n-cut at the last training epoch."""

    def check(rows: pd.DataFrame) -> Outcome:
        ends = {}
        for cell in (cell_pruned, cell_unpruned):
            part = select(rows, cell)
            ends[cell.phase] = (
                float(part.sort_values("epoch")["ncut"].iloc[-1]) if len(part) else math.nan
            )
        holds = ends[cell_pruned.phase] < ends[cell_unpruned.phase]
        return Outcome(bool(holds), {f"end {k}": v for k, v in ends.items()})

    return check


#: Chance accuracy of Table B's ten-class tasks (MNIST, Fashion-MNIST and their factors).
_CHANCE_ACC = 0.1


def _learns(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """Table B's test accuracies: every pruned ten-class MLP learns its task.

    The bound is halfway between chance and the paper's accuracy: far from either, so it
    holds at every profile that trains at all and fails for a network that learned nothing
    (shuffled labels, broken training). The HALVES tasks are left out: their chance level is
    not 1/10.
    """
    out = []
    for row in paper_rows:
        if (row["table"], row["metric"], row["phase"]) != ("B", "test_acc", "pruned"):
            continue
        tag = str(row["model_tag"])
        if tag.startswith("HALVES"):
            continue
        paper, n = float(row["value"]), float(row["n_instances"])
        bound = (paper + _CHANCE_ACC) / 2
        cell = Cell(tag)
        out.append(
            Claim(
                f"B-{tag}-pruned-learns",
                "B",
                f"the pruned {tag} MLP learns its task: test accuracy at least {bound:.3f} in "
                f"every instance, halfway between chance ({_CHANCE_ACC:g}) and the paper's",
                f"paper: test accuracy {paper:.3f} (mean of {n:g} instances)",
                "clustering",
                (cell,),
                every_instance_at_least(cell, "test_acc", bound),
            )
        )
    return out


#: The paper's lesion tables: the study that asserts their claims, and the phase lesioned.
_LESION_TABLES = {
    "lesion_mlp": ("lesion", "pruned"),
    "lesion_cnn": ("cnn", "unpruned"),
    "lesion_vgg": ("cnn", "unpruned"),
}


def _cnn_orderings() -> list[Claim]:
    """Table C's orderings: L2 and clusterable init lower the unpruned small CNN's n-cut."""
    names = {"L2REG": ("L2", "L2 regularisation"), "MOD-INIT": ("clusterable-init", "clusterable initialisation")}
    out = []
    for factor, ds in (("L2REG", "MNIST"), ("L2REG", "FASHION"), ("MOD-INIT", "MNIST"), ("MOD-INIT", "FASHION")):
        short, long = names[factor]
        lower, higher = Cell(f"CNN-{ds}+{factor}", "unpruned"), Cell(f"CNN-{ds}", "unpruned")
        low, control = (paper_value("C", c.tag, "ncut", phase="unpruned") for c in (lower, higher))
        out.append(
            Claim(
                f"C-{short}-lowers-{ds}-unpruned",
                "C",
                f"{long} lowers the unpruned small CNN's n-cut on {ds} below the control's",
                f"paper: {low:.3f} with {long} < {control:.3f} control",
                "cnn",
                (lower, higher),
                mean_lower([lower], [higher]),
            )
        )
    return out


def _lesions(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """From the paper's lesion tables: the instance counts of combined p < 0.05."""
    paper_rows = tuple(paper_rows)
    out = []
    for row in paper_rows:
        metric = str(row["metric"])
        if row["table"] not in _LESION_TABLES or not metric.startswith("n_combined_p_"):
            continue
        study, phase = _LESION_TABLES[str(row["table"])]
        stat = metric.removeprefix("n_").removesuffix("_lt_005")  # combined_p_means / _ranges
        what = "mean" if stat.endswith("means") else "range"
        tag, n, k = str(row["model_tag"]), float(row["n_instances"]), float(row["value"])
        cell = Cell(tag, phase, "layer", 12)
        evidence = f"paper: combined p < 0.05 in {k:g} of {n:g} instances"
        base = f"lesion-{tag}-{what}"
        if k == n:
            claim = Claim(
                f"{base}-sig",
                "lesion",
                f"lesioning {tag} sub-clusters changes the {what} statistic more than random lesions in every instance (combined p < 0.05)",
                evidence,
                study,
                (cell,),
                every_instance_below(cell, stat, 0.05),
            )
        elif k == 0:
            claim = Claim(
                f"{base}-not-sig",
                "lesion",
                f"the {what} statistic of {tag} lesions is not significant in any instance (combined p >= 0.05)",
                evidence,
                study,
                (cell,),
                every_instance_at_least(cell, stat, 0.05),
            )
        else:
            reason = f"mixed in the paper ({evidence.removeprefix('paper: ')})"
            claim = Claim(
                f"{base}-mixed",
                "lesion",
                f"{tag} lesions: {what} statistic, mixed",
                evidence,
                study,
                (cell,),
                every_instance_below(cell, stat, 0.05),
                {p: ("record", reason) for p in ("quick", "paper", "ci")},
            )
        if row["table"] != "lesion_mlp":  # the CNN and VGG lesion tables keep their own ids
            claim = replace(claim, table=str(row["table"]))
        out.append(claim)
    for tag in ("MNIST", "FASHION"):
        cell = Cell(tag, "pruned", "layer", 12)
        effect = paper_value("lesion_mlp", tag, "effect_means_mean")
        out.append(
            Claim(
                f"lesion-{tag}-effect",
                "lesion",
                f"lesioned {tag} sub-clusters do more damage than random same-size sets (effect_means > 1 in every instance)",
                f"paper: mean effect {effect:.3f} over 5 instances",
                "lesion",
                (cell,),
                every_instance_at_least(cell, "effect_means", 1.0),
            )
        )
    pair = Cell("FASHION+DROPOUT", "pruned", "conditional", 10)
    out.append(
        Claim(
            "double-lesion-type-IV-over-I",
            "double_lesion",
            "among cross-layer pairs of important FASHION+DROPOUT sub-clusters, mutually important pairs (type IV) outnumber mutually dependent ones (type I)",
            "paper: types IV 11, III 5, II 9, I 3 of 28 pairs",
            "double_lesion",
            (pair,),
            column_greater(pair, "n_type_IV", "n_type_I"),
        )
    )
    for tag in ("MNIST", "FASHION", "MNIST+DROPOUT", "FASHION+DROPOUT"):
        pruned, unpruned = Cell(tag, "pruned", "layer", 4), Cell(tag, "unpruned", "layer", 4)
        ends = {
            phase: max(
                (int(str(r["metric"]).removeprefix("ncut_epoch_")), float(r["value"]))
                for r in paper_rows
                if (r["table"], r["model_tag"], r["phase"]) == ("J", tag, phase)
            )
            for phase in ("unpruned", "pruned")
        }
        out.append(
            Claim(
                f"J-{tag}-pruning-lowers-K4",
                "J",
                f"pruning lowers the K = 4 n-cut of {tag} (last pruning epoch below last training epoch)",
                f"paper: {ends['unpruned'][1]:.3f} at epoch {ends['unpruned'][0]} (end of "
                f"training), {ends['pruned'][1]:.3f} at epoch {ends['pruned'][0]} (end of pruning)",
                "learning_curve",
                (pruned, unpruned),
                last_epoch_lower(pruned, unpruned),
            )
        )
    return out


#: Claims measured to fail at the paper profile itself (seed 0), each with its evidence: the
#: paper's number is reproduced only under its own isolation rule, which the harness's default
#: replaces (issue 11, item 1). Strict, like the quick entries.
PAPER_XFAIL: dict[str, str] = {
    "C-CNN-MNIST+L2REG-unpruned-sig": "the paper's CNN+L2 clusterability is an artefact of "
    "its exact-zero isolation rule. After the paper's 10 epochs on 60,000 images (instance 0, "
    "test accuracy 0.991, paper 0.991) L2 has decayed 4 of the 192 filters to float32 "
    "subnormals (degree <= 1.5e-36 of a total 1.7e3). Under the exact-zero rule k-means gives "
    "them clusters of their own that add ~0 to the n-cut: 6.97 against a null of 10.20, "
    "z = -103, p = 0.02 (the paper: 8.05, z = -70.7). With those filters removed (the default "
    "negligible-degree rule) the network is less clusterable than its shuffles: 10.80 against "
    "10.24, z = +20, p = 1",
}


@lru_cache(maxsize=1)
def registry() -> dict[str, Claim]:
    """Every claim, by id (derived from the paper's tables, then the hand-written ones)."""
    from harness.paper import paper_values

    rows = paper_values()
    claims = [*_derived(rows), *_orderings(), *_cnn_orderings(), *_random_init(), *_lesions(rows)]
    claims += _learns(rows)
    from harness.activations.claims import activation_claims  # imports this module

    claims += activation_claims(rows)
    from harness.claims.extra import extra_claims  # Tables E, N

    claims += extra_claims()
    out: dict[str, Claim] = {}
    for claim in claims:
        if claim.id in out:
            raise AssertionError(f"duplicate claim id {claim.id}")
        status = dict(claim.status)
        if claim.id in PAPER_XFAIL:
            status.setdefault("paper", ("xfail", PAPER_XFAIL[claim.id]))
        out[claim.id] = Claim(
            claim.id,
            claim.table,
            claim.statement,
            claim.evidence,
            claim.study,
            claim.cells,
            claim.check,
            status,
        )
    return out


REGISTRY = registry()


def claims_for(study: str) -> list[str]:
    """Ids of the claims asserted by ``experiments/test_<study>.py``, in registry order."""
    return [c.id for c in REGISTRY.values() if c.study == study]
