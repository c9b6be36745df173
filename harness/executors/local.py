"""The local executor: each unit runs in the process that first asks for it."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.store import Store
from harness.tasks import AnalysisTask, ModelTask, Task, train_unit, training_units

if TYPE_CHECKING:
    from harness.stats import ClusterabilityResult
    from harness.trained_model import TrainedModel

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Units run in the asking process when first asked for: the harness without a cluster.

    Training runs here (once per key across the machine's processes, under the store's
    lock); null samples in local worker processes (:func:`harness.workers.parallel_map`).
    Nothing is computed ahead: :meth:`submit` only learns the run's training units
    (:func:`training_units`), so that the first test asking for a member of an ensemble
    trains its whole unit in this process (on the GPU when present), and the others read it.
    """

    name = "local"

    def __init__(self, store: Store) -> None:
        self.store = store
        self._units: dict[str, tuple[ModelTask, ...]] = {}

    @functools.cached_property
    def wants_plan(self) -> bool:
        """Whether the run's forecast is worth computing (ensembles train by default here).
        Asked only where a plugin plans tasks (the experiments' fixtures): it imports torch
        to look for CUDA."""
        from harness.ensemble import ensembles_by_default

        return ensembles_by_default()

    def submit(self, tasks: Sequence[Task]) -> int:
        for unit in training_units(tasks):
            if len(unit) > 1:
                self._units.update((task.key, unit) for task in unit)
        return 0

    def model(self, task: ModelTask) -> TrainedModel:
        from harness.training import get_or_train

        unit = self._units.get(task.key)
        if unit is None:
            return get_or_train(task.config, store=self.store)
        return train_unit(unit, self.store)[[t.key for t in unit].index(task.key)]

    def analysis(self, task: AnalysisTask) -> ClusterabilityResult:
        return task.run(self.store, self.model(task.model))

    def stats(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:
        pass
