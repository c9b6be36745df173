"""Claims written by hand: orderings between cells, and Table I's untrained networks.

Orderings the tables imply but do not count (dropout below control, clusterable init
lowest, pruned below unpruned, HALVES below HALVES-SAME, L2 and clusterable init lowering
the small CNN's n-cut), Cohen's d of Table A's two nulls, and Table I's random-init values
and ranges, each with its evidence read from the paper's numbers (``harness/paper``).
"""

from __future__ import annotations

from harness.claims.checks import (
    all_below_all,
    lowest_mean,
    mean_abs_at_least,
    mean_abs_below,
    mean_lower,
    value_within,
)
from harness.claims.model import Cell, Claim
from harness.paper import TABLE_STUDIES, paper_value
from harness.spec import PAPER_K

__all__ = ["cnn_ordering_claims", "ordering_claims", "random_init_claims"]

_DATASETS = ("MNIST", "FASHION")


def _b(tag: str, phase: str = "pruned", metric: str = "ncut") -> float:
    """One of Table B's published numbers (NaN where the paper has none)."""
    return paper_value("B", tag, metric, phase=phase)


def ordering_claims() -> list[Claim]:
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
                TABLE_STUDIES["B"],
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
                    TABLE_STUDIES["B"],
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
                    TABLE_STUDIES["B"],
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
                    TABLE_STUDIES["B"],
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
                    TABLE_STUDIES["A"],
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
                    TABLE_STUDIES["A"],
                    (Cell(tag, "unpruned"),),
                    mean_abs_below(Cell(tag, "unpruned"), "cohen_d", 0.5),
                )
            )
    return out


def cnn_ordering_claims() -> list[Claim]:
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
                TABLE_STUDIES["C"],
                (lower, higher),
                mean_lower([lower], [higher]),
            )
        )
    return out


def random_init_claims() -> list[Claim]:
    """Table I: untrained MLPs, small CNNs and VGGs at the paper's mean n-cut; trained MLPs
    below every untrained one; clusterable initialisation below plain."""
    mlp = Cell("MLP/plain", "init", "none")
    mod = Cell("MLP/clusterable", "init", "none")
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
                TABLE_STUDIES["I"],
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
            TABLE_STUDIES["I"],
            (*pruned, mlp),
            all_below_all(pruned, [mlp], higher_column="min", names=("trained", "random init")),
        ),
        Claim(
            "I-trained-unpruned-below-random",
            "I",
            "every trained unpruned MLP has a lower n-cut than every untrained one",
            trained("unpruned"),
            TABLE_STUDIES["I"],
            (*unpruned, mlp),
            all_below_all(unpruned, [mlp], higher_column="min", names=("trained", "random init")),
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
        cell = Cell(tag, "init", "none")
        target = paper_value("I", tag, "mean")
        slug = tag.lower().replace("/plain", "").replace("/", "-")
        out.append(
            Claim(
                f"I-random-init-{slug}",
                "I",
                f"untrained {what} have an n-cut of {target:.3f} +- {tolerance:g} (K = {PAPER_K}, "
                "matrix 1-norm)",
                f"paper: {target:.3f} (SD {paper_value('I', tag, 'sd'):.3f}) over 100 draws; "
                f"ours (paper profile, seed 0): {ours}",
                TABLE_STUDIES["I"],
                (cell,),
                value_within(cell, "mean", target, tolerance),
            )
        )
    cnn, vgg = Cell("CNN/plain", "init", "none"), Cell("VGG/plain", "init", "none")
    for plain, mod, name in (
        (cnn, Cell("CNN/clusterable", "init", "none"), "cnn"),
        (vgg, Cell("VGG/clusterable", "init", "none"), "vgg"),
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
                TABLE_STUDIES["I"],
                (mod, plain),
                all_below_all([mod], [plain], column="max", higher_column="min"),
            )
        )
    return out


