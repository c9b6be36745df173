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

from harness.graph import ISOLATION_RTOL
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
    "dependency_order",
    "train_unit",
    "training_units",
]


class ExecutorUnavailable(RuntimeError):
    """The executor cannot start (Ray not installed, cluster unreachable, bad settings)."""




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
    n_clusters, null, n_samples, seed, method, isolation_rtol
        As :func:`harness.cache.cached_clusterability`.
    identity : dict
        What identifies the weights in the key (the model's key and the phase, plus any
        option that changes the weights).
    weights : str
        The :class:`~harness.trained_model.TrainedModel` method that gives the matrices
        (``"weights"``, or ``"graph_weights"``), called as ``weights(phase, **options)``.
    weights_options : dict
        Keyword arguments of that method.
    """

    kind: ClassVar[str] = "clusterability"
    model: ModelTask
    phase: str
    n_clusters: int
    null: str
    n_samples: int
    seed: int
    identity: Mapping[str, Any]
    method: str = "fast"
    isolation_rtol: float = ISOLATION_RTOL
    weights: str = "weights"
    weights_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def payload(self) -> dict[str, Any]:
        from harness.cache import clusterability_payload

        return clusterability_payload(
            identity=self.identity, n_clusters=self.n_clusters, null=self.null,
            n_samples=self.n_samples, seed=self.seed, method=self.method,
            isolation_rtol=self.isolation_rtol,
        )

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

        weights = getattr(model, self.weights)(self.phase, **dict(self.weights_options))
        return cached_clusterability(
            weights,
            n_clusters=self.n_clusters,
            null=self.null,
            n_samples=self.n_samples,
            seed=self.seed,
            store=store,
            identity=self.identity,
            method=self.method,
            n_workers=n_workers,
            isolation_rtol=self.isolation_rtol,
        )

    def build(self, store: Store, *, n_workers: int | None = None) -> Path:
        """Compute the analysis in ``store`` (whose model artifact must be there)."""
        from harness.trained_model import TrainedModel

        model = TrainedModel.from_path(store.path_for(self.model.kind, self.model.key))
        self.run(store, model, n_workers=n_workers)
        return store.path_for(self.kind, self.key)

    def __repr__(self) -> str:
        return (
            f"AnalysisTask({self.model!r}, {self.phase}, K={self.n_clusters}, {self.null}, "
            f"n={self.n_samples}, key={self.key[:12]})"
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
