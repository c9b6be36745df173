"""The heavy units of a run, as values: training one network, analysing one.

A *task* is a pure function of its inputs whose result is one artifact of the store
(:mod:`harness.store`), named by the same key wherever it is computed:

:class:`ModelTask`
    Training one network (:func:`harness.training.get_or_train`): config, seed, dataset content.
:class:`AnalysisTask`
    One clusterability analysis of a trained network, its null distribution included
    (:func:`harness.cache.cached_clusterability`): weights, K, null, samples, seed.

Executors (:mod:`harness.executors`) decide where tasks run; the plan groups model tasks into
training units (:func:`training_units`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.seeding import derive_seed
from harness.spec import AnalysisSpec
from harness.store import Store, artifact_key

if TYPE_CHECKING:
    from harness.configs import TrainConfig
    from harness.stats import ClusterabilityResult
    from harness.trained_model import TrainedModel

__all__ = [
    "AnalysisTask",
    "Artifact",
    "ExecutorUnavailable",
    "ModelTask",
    "Task",
    "analysis_seed",
    "dependency_order",
    "train_unit",
    "training_units",
]


class ExecutorUnavailable(RuntimeError):
    """The executor cannot start (Ray not installed, cluster unreachable, bad settings)."""


def analysis_seed(model: Any, *parts: Any) -> int:
    """The seed of an analysis of ``model`` (a phase's clustering, its lesions, a snapshot).

    ``derive_seed(0, model.key, *parts)``: from the model's store key (a trained model or its
    task), so every study that analyses the same network gets the same numbers and the
    cache is shared.
    """
    return derive_seed(0, model.key, *parts)


@dataclass(frozen=True, eq=False)
class ModelTask:
    """Training one network: the artifact of ``get_or_train(config)``.

    Attributes
    ----------
    config : TrainConfig
        The config as the experiment asks for it (resolved where it is trained).
    payload : dict
        The store key payload (:func:`harness.training.model_key_payload`): the resolved
        config and the dataset's content hash.
    key : str
        The artifact's key.
    """

    kind: ClassVar[str] = "model"
    config: TrainConfig
    payload: Mapping[str, Any]
    key: str

    @classmethod
    def of(cls, config: TrainConfig) -> ModelTask:
        """The task of ``config``; loads its dataset here for the content hash of the key.

        Raises
        ------
        harness.data.DatasetUnavailable
            The dataset cannot be obtained on this machine.
        """
        from harness.training import MODEL_KIND, model_key_payload

        dataset = _dataset(config.dataset, config.data_seed)
        payload = model_key_payload(config.resolved(dataset), dataset)
        return cls(config, payload, artifact_key(MODEL_KIND, payload))

    @classmethod
    def of_trained(cls, model: TrainedModel) -> ModelTask:
        """The task that produced ``model`` (read from its artifact's ``meta.json``)."""
        import json

        with open(Path(model.path) / "meta.json", encoding="utf-8") as fh:
            payload = json.load(fh)["key_payload"]
        return cls(model.config, payload, model.key)

    @property
    def dependencies(self) -> tuple[ModelTask, ...]:
        return ()

    def build(self, store: Store, *, n_workers: int | None = None) -> Path:
        """Train (or read) the model in ``store``; returns the artifact directory."""
        del n_workers  # training runs in this process
        from harness.training import get_or_train

        model = get_or_train(self.config, store=store, progress=False)
        if model.key != self.key:
            raise ExecutorUnavailable(
                f"the dataset {self.config.dataset!r} on this machine differs from the "
                f"driver's (model key {model.key[:12]} instead of {self.key[:12]}); give "
                "every node the same data (HARNESS_DATA_DIR)"
            )
        return Path(model.path)

    def __repr__(self) -> str:
        return f"ModelTask({self.config.dataset}, seed={self.config.seed}, key={self.key[:12]})"


@functools.lru_cache(maxsize=2)
def _dataset(name: str, seed: int) -> Any:
    # Consecutive tasks mostly share a dataset; two keep memory bounded.
    from harness.data import load_dataset

    return load_dataset(name, seed=seed)


@dataclass(frozen=True, eq=False)
class AnalysisTask:
    """One clusterability analysis (true clustering and null distribution) of a network.

    Attributes
    ----------
    model : ModelTask
        The network's training task.
    phase : str
        ``"unpruned"`` or ``"pruned"``.
    spec : AnalysisSpec
        The analysis's settings.
    seed : int
        Its seed (:meth:`of`: :func:`analysis_seed` of the model and the phase).
    identity : dict
        What identifies the weights in the key: the model's key and the phase, and for a
        conv network its filter graph's options (:meth:`AnalysisSpec.filter_options`).
    """

    kind: ClassVar[str] = "clusterability"
    model: ModelTask
    phase: str
    spec: AnalysisSpec
    seed: int
    identity: Mapping[str, Any]

    @classmethod
    def of(cls, model: ModelTask, phase: str, spec: AnalysisSpec) -> AnalysisTask:
        """The analysis of ``model``'s ``phase`` that every study shares.

        An MLP is clustered as its dense kernels; a CNN or VGG as its filter graph (§3.3),
        whose options then enter the identity (MLP keys do not depend on them).
        """
        identity: dict[str, Any] = {"model": model.key, "phase": phase}
        if model.config.arch != "mlp":
            identity.update(graph="filters", **spec.filter_options())
        return cls(model, phase, spec, analysis_seed(model, phase), identity)

    @property
    def payload(self) -> dict[str, Any]:
        return self.spec.payload(self.identity, seed=self.seed)

    @property
    def key(self) -> str:
        return artifact_key(self.kind, self.payload)

    @property
    def dependencies(self) -> tuple[ModelTask, ...]:
        return (self.model,)

    def run(
        self, store: Store, model: TrainedModel, *, n_workers: int | None = None
    ) -> ClusterabilityResult:
        """The analysis of ``model`` through ``store``'s cache (computed if absent)."""
        from harness.cache import cached_clusterability

        weights = model.graph_weights(self.phase, **self.spec.filter_options())
        return cached_clusterability(
            weights,
            self.spec,
            seed=self.seed,
            store=store,
            identity=self.identity,
            n_workers=n_workers,
        )

    def build(self, store: Store, *, n_workers: int | None = None) -> Path:
        """Compute the analysis in ``store`` (whose model artifact must be there)."""
        from harness.trained_model import TrainedModel

        model = TrainedModel.from_path(store.path_for(self.model.kind, self.model.key))
        self.run(store, model, n_workers=n_workers)
        return store.path_for(self.kind, self.key)

    def __repr__(self) -> str:
        spec = self.spec
        return (
            f"AnalysisTask({self.model!r}, {self.phase}, K={spec.n_clusters}, {spec.null}, "
            f"n={spec.n_samples}, key={self.key[:12]})"
        )


Task = ModelTask | AnalysisTask


@dataclass(frozen=True, eq=False)
class Artifact:
    """A complete artifact in transit (every file, manifest included) and where it was made."""

    kind: str
    key: str
    files: Mapping[str, bytes]
    info: Mapping[str, Any] = field(default_factory=dict)


def dependency_order(tasks: Iterable[Task]) -> list[Task]:
    """Distinct tasks (by key), every task after the ones it needs: models, then analyses."""
    seen: dict[str, Task] = {}
    for task in tasks:
        for dep in task.dependencies:
            seen.setdefault(dep.key, dep)
        seen.setdefault(task.key, task)
    ordered = list(seen.values())
    return [t for t in ordered if not t.dependencies] + [t for t in ordered if t.dependencies]


def training_units(tasks: Iterable[Task]) -> list[tuple[ModelTask, ...]]:
    """The distinct model tasks of ``tasks`` grouped into training units.

    Tasks whose config has ``trainer="ensemble"`` and that share what an ensemble shares
    (:func:`harness.ensemble.group_key` of the resolved config, and the dataset's content) form
    one unit, its members ordered by key; every other model task is a unit of its own. A
    member's weights do not depend on its unit, so the units of a run only decide what trains
    together, never what is stored.
    """
    from harness.configs import TrainConfig
    from harness.ensemble import group_key

    seen: dict[str, ModelTask] = {}
    for task in tasks:
        for model in (*task.dependencies, task):
            if isinstance(model, ModelTask):
                seen.setdefault(model.key, model)
    units: dict[Any, list[ModelTask]] = {}
    for key, task in seen.items():
        config = TrainConfig.from_dict(task.payload["config"])
        ident: Any = (("ensemble", group_key(config), task.payload["dataset"])
                      if config.trainer == "ensemble" else key)
        units.setdefault(ident, []).append(task)
    return [tuple(sorted(unit, key=lambda t: t.key)) for unit in units.values()]


def train_unit(unit: Sequence[ModelTask], store: Store) -> list[TrainedModel]:
    """The trained models of a unit (:func:`training_units`), the missing ones trained
    together (:func:`harness.ensemble.get_or_train_group`)."""
    from harness.ensemble import get_or_train_group
    from harness.training import get_or_train

    if len(unit) == 1:
        return [get_or_train(unit[0].config, store=store, progress=False)]
    models = get_or_train_group([t.config for t in unit], store=store, progress=False)
    for task, model in zip(unit, models, strict=True):
        if model.key != task.key:
            raise ExecutorUnavailable(
                f"the dataset {task.config.dataset!r} on this machine differs from the "
                f"driver's (model key {model.key[:12]} instead of {task.key[:12]}); give "
                "every node the same data (HARNESS_DATA_DIR)"
            )
    return models
