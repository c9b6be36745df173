"""Deliberate breaks of the method: each fails at least one named claim of the ci profile.

The ci profile asserts :data:`harness.claims.CI_CLAIMS` on every CI run. A claim set that
holds whatever the method does is no regression test, so each test here breaks one step of
the method in this process (monkeypatching a library function, never a switch in the
library), trains and analyses real networks at a small scale, evaluates the CI claims named
in :data:`CAUGHT_BY` on rows built by the experiments' own row code, and asserts that at least
one of them fails, after checking that they all hold on the unbroken run at the same scale.
Only the networks of the named claims' cells are trained; ``HARNESS_BREAKS_ALL=1`` evaluates
every CI claim (``-s`` then prints everything each break fails: the README's table).

Scale (:data:`SMALL`): the ci profile's models, schedules (3 + 3 epochs) and data (the first
12,000 training examples; at 4,000 the unbroken FASHION network reaches only 38% test
accuracy and HALVES-MNIST is not significant), 20 null samples instead of 30, 4 random-init
draws, one process. A break of the analysis re-analyses the unbroken run's networks; a break
of training retrains them. On one idle core: 26 s for the unbroken run, 1 to 9 s per break,
about a minute in all (2.5 minutes with ``HARNESS_BREAKS_ALL=1``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fixtures.experiments import load
from fixtures.models import analysis_task, model_config
from harness.claims import CI_CLAIMS, REGISTRY
from harness.profiles import PROFILES
from harness.store import Store

# One xdist worker runs the module, so that the module-scoped unbroken run (about 26 s) is
# computed once, not once per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("breaks")]

SMALL = dataclasses.replace(
    PROFILES["ci"], name="ci-small", n_nulls=20, random_init_trials=4, random_init_trials_vgg=1,
)
SEED = 0
K = 12

#: For each break, the CI claims that catch it: each holds without the break, and at least one
#: fails with it (the measured run fails all of them: README, "Which claim catches which break").
CAUGHT_BY: dict[str, tuple[str, ...]] = {
    "shuffled-weights-clustered": (
        "B-FASHION+DROPOUT-pruned-sig",
        "B-FASHION-pruned-sig",
        "B-HALVES-MNIST-pruned-sig",
    ),
    "pruning-disabled": ("A-FASHION+DROPOUT-pruned-cohen-d-large",),
    "null-from-unshuffled-network": (
        "B-FASHION+DROPOUT-pruned-sig",
        "B-FASHION-pruned-sig",
        "B-HALVES-MNIST-pruned-sig",
        "A-FASHION+DROPOUT-pruned-cohen-d-large",
    ),
    "shuffled-labels": ("B-MNIST-pruned-learns", "B-FASHION-pruned-learns"),
    "k-ignored": ("I-random-init-mlp", "I-random-init-mlp-clusterable", "I-random-init-cnn"),
}


class _Rows:
    """Rows of the CI claims' cells at :data:`SMALL`, computed in this process: networks
    trained in (or read from) ``models``, analyses computed in ``analyses``."""

    def __init__(self, models: Store, analyses: Store) -> None:
        self.models_store, self.store = models, analyses
        self.models: dict[str, Any] = {}
        self.results: dict[tuple[str, str, str], Any] = {}
        self.clustering = load("test_clustering")
        self.null_models = load("test_null_models")
        self.random_init = load("test_random_init")

    def model(self, tag: str) -> Any:
        from harness.training import get_or_train

        if tag not in self.models:
            config = model_config(tag, 0, SMALL, SEED)
            self.models[tag] = get_or_train(config, store=self.models_store, progress=False)
        return self.models[tag]

    def analysed(self, tag: str, phase: str, null: str = "layer") -> Any:
        if (tag, phase, null) not in self.results:
            model = self.model(tag)
            task = analysis_task(model, phase, n_clusters=K, null=null, n_samples=SMALL.n_nulls)
            self.results[tag, phase, null] = task.run(self.store, model, n_workers=1)
        return self.results[tag, phase, null]

    def init_row(self, tag: str) -> dict[str, Any]:
        from harness.cache import cached_random_init_ncuts

        ri = self.random_init
        init = {ri.model_tag(i): i for i in ri.INITS}[tag]
        spec = ri.INITS[init]
        ncuts = cached_random_init_ncuts(
            n_trials=ri.n_trials(init, SMALL), clusterable=spec["clusterable"],
            skip_first=spec["skip_first"], seed=ri.random_init_seed(init, SEED), store=self.store,
            network=spec["network"], n_clusters=K, n_workers=1,
        )  # fmt: skip
        return ri.random_init_row(init, ncuts, SEED)

    def row(self, study: str, cell: Any) -> dict[str, Any]:
        """The row of one cell for instance 0, as the study's ``test_claim`` builds it."""
        if cell.phase == "init":
            return self.init_row(cell.tag)
        model = self.model(cell.tag)
        if study == "clustering":
            result = self.analysed(cell.tag, cell.phase, cell.null)
            return self.clustering.factor_row(model, result, cell.tag, cell.phase, 0)
        if study == "null_models":
            by_null = {n: self.analysed(cell.tag, cell.phase, n) for n in self.null_models.NULLS}
            return self.null_models.two_null_row(model, by_null, cell.tag, cell.phase, 0)
        result = self.analysed(cell.tag, cell.phase, "layer")
        return {**result.to_row(), "model_tag": cell.tag, "phase": cell.phase, "instance": 0}

    def outcomes(self, claims: Iterable[str]) -> dict[str, Any]:
        """The outcome of each of ``claims`` (only their cells' networks are trained)."""
        out = {}
        for claim_id in claims:
            claim = REGISTRY[claim_id]
            rows = pd.DataFrame([self.row(claim.study, c) for c in claim.cells])
            out[claim_id] = claim.evaluate(rows)
        return out


def _failing(outcomes: dict[str, Any]) -> list[str]:
    return sorted(c for c, o in outcomes.items() if not o.holds)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """The unbroken networks (trained once for the module)."""
    return Store(tmp_path_factory.mktemp("models"))


def _evaluated(named: Iterable[str]) -> list[str]:
    """The claims a run evaluates: those named to catch a break, or every CI claim with
    ``HARNESS_BREAKS_ALL=1`` (to measure the README's table of everything a break fails;
    the other claims' cells cost about a minute more of training and analysis)."""
    return list(CI_CLAIMS) if os.environ.get("HARNESS_BREAKS_ALL") == "1" else sorted(set(named))


@pytest.fixture(scope="module")
def unbroken(models: Store, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    named = [c for claims in CAUGHT_BY.values() for c in claims]
    return _Rows(models, Store(tmp_path_factory.mktemp("analyses"))).outcomes(_evaluated(named))


# ----------------------------------------------------------------------------------------
# the breaks: each patches the library in this process for the duration of one test


def _shuffled_weights_clustered(mp: pytest.MonkeyPatch) -> None:
    """The network's clustering sees a layer-shuffled copy of its weights, shuffled as a null
    sample is (isolated neurons removed first): the network's n-cut is one more null draw."""
    import harness.analysis as analysis
    from harness.graph import remove_isolated
    from harness.nulls import shuffle_weights

    real = analysis.cluster_network

    def cluster_shuffled(weights: Any, spec: Any, **kw: Any) -> Any:
        kept, _ = remove_isolated(weights, isolation_rtol=spec.isolation_rtol)
        rng = np.random.default_rng(kw.get("seed"))
        return real(shuffle_weights(kept, "layer", rng), spec, **kw)

    mp.setattr(analysis, "cluster_network", cluster_shuffled)


def _pruning_disabled(mp: pytest.MonkeyPatch) -> None:
    """The pruning phase trains on without masking any weight (either trainer)."""
    from harness.pruning import Pruner, StackPruner

    mp.setattr(Pruner, "prune_to", lambda self, sparsity: None)
    mp.setattr(StackPruner, "prune_to", lambda self, targets: None)


def _null_from_unshuffled_network(mp: pytest.MonkeyPatch) -> None:
    """Every null sample is the network itself, unshuffled."""
    import harness.nulls as nulls

    mp.setattr(nulls, "shuffle_weights", lambda weights, null, rng: [np.array(w) for w in weights])


def _shuffled_labels(mp: pytest.MonkeyPatch) -> None:
    """Training sees the training labels in a random order (test labels intact)."""
    import harness.data as data_module

    real = data_module.load_dataset

    def load_shuffled(*args: Any, **kwargs: Any) -> Any:
        data = real(*args, **kwargs)
        labels = np.random.default_rng(0).permutation(data.y_train)
        return dataclasses.replace(data, y_train=labels)

    mp.setattr(data_module, "load_dataset", load_shuffled)


def _k_ignored(mp: pytest.MonkeyPatch) -> None:
    """Spectral clustering always makes two clusters, whatever K it is asked for."""
    import harness.cluster as cluster
    import harness.nulls as nulls

    real = cluster.cluster_graph

    def two_clusters(adj: Any, k: int, **kw: Any) -> Any:
        return real(adj, 2, **kw)

    mp.setattr(cluster, "cluster_graph", two_clusters)
    mp.setattr(nulls, "cluster_graph", two_clusters)


#: Each break and the step it breaks: "training" retrains the networks, "analysis" re-analyses
#: the unbroken ones.
BREAKS: dict[str, tuple[str, Callable[[pytest.MonkeyPatch], None]]] = {
    "shuffled-weights-clustered": ("analysis", _shuffled_weights_clustered),
    "pruning-disabled": ("training", _pruning_disabled),
    "null-from-unshuffled-network": ("analysis", _null_from_unshuffled_network),
    "shuffled-labels": ("training", _shuffled_labels),
    "k-ignored": ("analysis", _k_ignored),
}


@pytest.fixture
def broken(
    request: pytest.FixtureRequest, tmp_path: Path, models: Store, unbroken: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    step, apply = BREAKS[request.param]
    trained = Store(tmp_path / "models") if step == "training" else models
    with pytest.MonkeyPatch.context() as mp:
        apply(mp)
        rows = _Rows(trained, Store(tmp_path / "analyses"))
        yield rows.outcomes(_evaluated(CAUGHT_BY[request.param]))


def test_every_break_names_ci_claims() -> None:
    assert set(CAUGHT_BY) == set(BREAKS)
    for claims in CAUGHT_BY.values():
        assert claims and set(claims) <= set(CI_CLAIMS)


def test_the_unbroken_method_holds_the_named_claims(unbroken: dict[str, Any]) -> None:
    named = {c for claims in CAUGHT_BY.values() for c in claims}
    assert not named & set(_failing(unbroken)), {c: unbroken[c].observed for c in _failing(unbroken)}


@pytest.mark.parametrize("broken", list(BREAKS), indirect=True)
def test_break_fails_its_named_claims(
    request: pytest.FixtureRequest, broken: dict[str, Any], unbroken: dict[str, Any]
) -> None:
    name = request.node.callspec.params["broken"]
    failing = _failing(broken)
    print(f"\n{name}: fails {failing}")  # the README's table of which claim catches which break
    for claim_id in failing:
        before = unbroken[claim_id].observed if claim_id in unbroken else "not evaluated"
        print(f"  {claim_id}: {broken[claim_id].observed} (unbroken: {before})")
    for claim_id in CAUGHT_BY[name]:
        assert unbroken[claim_id].holds, f"{claim_id} fails without the break: {unbroken[claim_id].observed}"
    caught = [c for c in CAUGHT_BY[name] if not broken[c].holds]
    assert caught, f"{name} passes every claim named to catch it: {CAUGHT_BY[name]}"
