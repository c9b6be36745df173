"""The claims of Table M (reference §7.1, §9): activation clusters are real, and not the weights'.

Two claims per cell of Table M, each a pure function of the rows the activations study
records (``act_is_sig``, ``act_p``, ``act_z``, ``nmi``, ``nmi_p``, ``nmi_is_sig``):

* ``M-<tag>-<phase>-act-sig``: the activation graph's n-cut is below every edge-shuffled
  graph's in every instance (the paper: p = 1/101 in every case);
* ``M-<tag>-<phase>-nmi-low-above-chance``: the NMI between activation and weight clusters
  is low (below :data:`NMI_LOW`) yet above every label permutation's (the paper: 0.04-0.19,
  and its left-sided "NMI p" is about 1).

Hooked into :func:`harness.claims.registry` by :func:`activation_claims`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from harness.claims.checks import Z_EXTREME, significant_in_every_instance
from harness.claims.model import Cell, Check, Claim, Measured, Outcome, cell_values
from harness.paper import TABLE_STUDIES

__all__ = ["NMI_LOW", "activation_claims", "nmi_low_above_chance"]

#: "Low" NMI: the paper's largest Table M value is 0.19 (small CNN on FASHION).
NMI_LOW = 0.3
STUDY = TABLE_STUDIES["M"]


def nmi_low_above_chance(cell: Cell, *, bound: float = NMI_LOW) -> Check:
    """NMI below ``bound`` and significantly above its permutation null, in every instance."""

    def check(rows: pd.DataFrame) -> Outcome:
        nmi = [float(v) for v in cell_values(rows, cell, "nmi")]
        sig = [bool(v) for v in cell_values(rows, cell, "nmi_is_sig")]
        holds = bool(nmi) and len(sig) == len(nmi) and all(v < bound for v in nmi) and all(sig)
        observed = {
            "nmi": nmi,
            "nmi_p": cell_values(rows, cell, "nmi_p"),
            "nmi_z": cell_values(rows, cell, "nmi_z"),
        }
        return Outcome(holds, observed)

    # Two statistics, each with its own margins: the NMI beat every permutation (z beyond
    # their extreme) and it stayed below the bound.
    return Measured(
        check,
        lambda seen: {
            "significance": min(float(z) for z in seen["nmi_z"]) - Z_EXTREME,
            "below the bound": bound - max(float(v) for v in seen["nmi"]),
        },
    )


def activation_claims(paper_rows: Iterable[Mapping[str, Any]]) -> list[Claim]:
    """One pair of claims per Table M cell with the paper's activation p and NMI."""
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for row in paper_rows:
        if row["table"] == "M":
            cells.setdefault((str(row["model_tag"]), str(row["phase"])), {})[str(row["metric"])] = (
                float(row["value"])
            )
    out = []
    for (tag, phase), values in cells.items():
        cell = Cell(tag, phase, "edge")
        if "act_p" in values:
            out.append(
                Claim(
                    f"M-{tag}-{phase}-act-sig",
                    "M",
                    f"the activation graph of {phase} {tag} has a lower n-cut than every "
                    "edge-shuffled graph (clustering by activations is real)",
                    f"paper: p = {values['act_p']:.4g}"
                    + (f", z = {values['act_z']:.1f}" if "act_z" in values else "")
                    + " (single instance, 100 shuffles)",
                    STUDY,
                    (cell,),
                    significant_in_every_instance(cell, column="act_is_sig"),
                )
            )
        if "nmi" in values:
            out.append(
                Claim(
                    f"M-{tag}-{phase}-nmi-low-above-chance",
                    "M",
                    f"activation and weight clusters of {phase} {tag} agree little "
                    f"(NMI < {NMI_LOW:g}) but above chance (above every label permutation)",
                    f"paper: NMI {values['nmi']:.3f}"
                    + (
                        f", left-sided NMI p {values['nmi_p_left']:g}"
                        if "nmi_p_left" in values
                        else ""
                    ),
                    STUDY,
                    (cell,),
                    nmi_low_above_chance(cell),
                )
            )
    return out
