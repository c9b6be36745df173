"""Table I: n-cuts of untrained MLPs, and the claim that training makes MLPs clusterable.

Glorot-uniform 784-256x4-10 MLPs, plain and with clusterable initialisation, K = 12, no
null (reference §5.5). ``clusterable-all`` scales all five matrices as the paper's Table I
did; ``clusterable`` skips the first matrix as training does (reference §2.7).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.cache import cached_random_init_ncuts
from harness.paper import paper_columns, paper_value
from harness.report import plot_random_init
from harness.seeding import derive_seed

pytestmark = pytest.mark.random_init

K = 12
INITS = {
    "plain": {"clusterable": False, "skip_first": True, "paper": "MLP/plain"},
    "clusterable": {"clusterable": True, "skip_first": True, "paper": None},
    "clusterable-all": {"clusterable": True, "skip_first": False, "paper": "MLP/clusterable"},
}
TRAINED_TAGS = ["MNIST", "MNIST+DROPOUT", "FASHION", "FASHION+DROPOUT"]


def random_init_seed(init, harness_seed):
    return derive_seed(harness_seed, "random_init", init)


def _ncuts(init, profile, store, harness_seed):
    spec = INITS[init]
    return cached_random_init_ncuts(
        n_trials=profile.random_init_trials,
        clusterable=spec["clusterable"],
        skip_first=spec["skip_first"],
        seed=random_init_seed(init, harness_seed),
        store=store,
        n_clusters=K,
    )


@pytest.mark.parametrize("init", list(INITS))
def test_random_init(init, profile, store, harness_seed, record):
    ncuts = _ncuts(init, profile, store, harness_seed)
    paper_tag = INITS[init]["paper"]
    paper = (
        paper_columns("I", paper_tag, ("mean", "sd", "min", "max"))
        if paper_tag
        else {"paper_mean": None, "paper_sd": None, "paper_min": None, "paper_max": None}
    )
    record(
        network="MLP 784-256x4-10",
        init=init,
        seed=random_init_seed(init, harness_seed),
        n_clusters=K,
        n_trials=int(ncuts.size),
        mean=float(ncuts.mean()),
        sd=float(ncuts.std()),
        min=float(ncuts.min()),
        max=float(ncuts.max()),
        **paper,
    )
    assert np.all((ncuts >= 0) & (ncuts <= K))


def test_claim_trained_below_random_init(
    trained, analysed, profile, store, harness_seed, claim, figure
):
    random_ncuts = {init: _ncuts(init, profile, store, harness_seed) for init in INITS}
    random_min = float(random_ncuts["plain"].min())
    trained_ncuts = {
        f"{tag}/i{i}/{phase}": analysed(trained(tag, i), phase, n_clusters=K, null="layer").ncut
        for tag in TRAINED_TAGS
        for i in range(profile.instances)
        for phase in ("unpruned", "pruned")
    }
    worst = max(trained_ncuts, key=trained_ncuts.__getitem__)
    plot_random_init(
        {f"random {init}": values for init, values in random_ncuts.items()},
        figure("random-vs-trained"),
        trained={"trained (MNIST/FASHION, +-dropout)": list(trained_ncuts.values())},
        paper={
            "random plain": paper_value("I", "MLP/plain", "mean"),
            "random clusterable-all": paper_value("I", "MLP/clusterable", "mean"),
        },
        title=f"n-cut (K = {K}) of untrained and trained MLPs",
    )
    claim(
        "trained MLPs score below every random-init MLP",
        trained_ncuts[worst] < random_min,
        expected=f"every trained n-cut < min random-init n-cut ({random_min:.4f})",
        observed={"max trained": trained_ncuts[worst], "which": worst, "min random": random_min},
    )
