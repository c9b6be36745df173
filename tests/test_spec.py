"""The analysis spec: validation, and store keys that stay what they were before it existed."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.models import analysis_task
from harness.analysis import clusterability
from harness.cache import CLUSTERABILITY_KIND, random_init_payload
from harness.configs import TrainConfig
from harness.graph import ISOLATION_RTOL
from harness.spec import PAPER_K, AnalysisSpec
from harness.store import artifact_key
from harness.tasks import AnalysisTask, ModelTask, analysis_seed

# Store keys computed with the code before the spec existed (issue 22, commit 128bd2f): a
# refactor that changes one of them makes every stored analysis unreachable.
MLP = ModelTask(TrainConfig("mnist", seed=1), {}, "a" * 64)
CNN = ModelTask(TrainConfig("cifar10", arch="cnn", seed=1), {}, "b" * 64)
KEYS = [
    (({"model": "abc", "phase": "pruned"}, 7), {"n_clusters": 12, "n_samples": 50},
     "94e2b67d461557a3a201e1b513c28c11ecac0dfb7598b3e7b5db9603775d608b"),
    (({"model": "abc", "phase": "unpruned"}, 3),
     {"n_clusters": 4, "null": "layer_nonzero", "n_samples": 8, "method": "reference",
      "isolation_rtol": 0.0},
     "f28ecb333026fb7488b5ed49684ddbb3bc42a38a8f843018bef48096af162ed6"),
    (({"model": "def", "phase": "pruned", "graph": "filters", "filter_norm": "matrix1",
       "fold_batch_norm": False}, 123456789), {"n_samples": 20},
     "43aa8e0b01e7527b4aafd3aae44cad732fde926a96917b370e65d95abc885fbb"),
]
TASK_KEYS = [
    (MLP, "pruned", {"n_clusters": 12, "null": "layer", "n_samples": 50},
     "cc31682f5ed40626c441f2c13c5c769aa1e01f9a836651058a95a2c3a3799222"),
    (CNN, "pruned", {"n_clusters": 12, "null": "layer", "n_samples": 50},
     "4265e0cf46f278f745626666cbb57f62c1cb3c6bd0fba3c9e756b349d7a1feea"),
    (CNN, "unpruned", {"n_clusters": 7, "null": "layer_nonzero", "n_samples": 5,
                       "filter_norm": "l1", "fold_batch_norm": True, "isolation_rtol": 0.0,
                       "method": "reference"},
     "e55e16dbac88ae2d56b6c0d4dae92763e5c2c48524db0a5507bb50a5c86e82a9"),
    # an MLP's key does not depend on the filter options
    (MLP, "unpruned", {"n_clusters": 7, "null": "layer_all_distribution", "n_samples": 5,
                       "isolation_rtol": 1e-3, "method": "fast_ncut", "filter_norm": "l1"},
     "8381d07276dec4d66a9c436e58b6f50efa17a0afc7b3ae4b4875cd2ee466dda0"),
]


@pytest.mark.parametrize(("where", "settings", "key"), KEYS)
def test_payload_keys_are_the_pre_spec_keys(where, settings, key):
    identity, seed = where
    payload = AnalysisSpec(**settings).payload(identity, seed=seed)
    assert artifact_key(CLUSTERABILITY_KIND, payload) == key


@pytest.mark.parametrize(("model", "phase", "settings", "key"), TASK_KEYS)
def test_analysis_task_keys_are_the_pre_spec_keys(model, phase, settings, key):
    task = analysis_task(model, phase, **settings)
    assert task.key == key
    assert task.seed == analysis_seed(model, phase)
    assert AnalysisTask.of(model, phase, AnalysisSpec(**settings)).key == key


def test_random_init_keys_are_the_pre_spec_keys():
    common = {"n_trials": 10, "clusterable": True, "skip_first": True, "seed": 0,
              "n_clusters": PAPER_K, "method": "fast"}
    assert artifact_key("random_init", random_init_payload("mlp", **common)) == (
        "a83d996fe387d54a69c547e2f36319fc11125c98ed369e84aa4a8ee4f410fa21")
    assert artifact_key("random_init", random_init_payload("cnn", **common)) == (
        "a29942e6bfbe1f42fcfbac4f984912d24894629c8bfcf59df909742a6991464b")


def test_defaults_are_the_papers():
    spec = AnalysisSpec()
    assert (spec.n_clusters, spec.null, spec.n_samples, spec.method) == (12, "layer", 50, "fast")
    assert spec.isolation_rtol == ISOLATION_RTOL and spec.filter_norm == "matrix1"
    assert spec.fold_batch_norm is False
    assert spec.replace(n_samples=4) == AnalysisSpec(n_samples=4)


@pytest.mark.parametrize(("settings", "message"), [
    ({"null": "lyer"}, "null must be one of 'layer'"),
    ({"method": "slow"}, "method must be one of 'fast'"),
    ({"filter_norm": "frobenius"}, "filter_norm must be one of 'matrix1'"),
    ({"n_clusters": 1}, "n_clusters must be >= 2"),
    ({"n_clusters": 4.0}, "n_clusters must be an integer"),
    ({"n_clusters": True}, "n_clusters must be an integer"),
    ({"n_samples": -1}, "n_samples must be a non-negative integer"),
    ({"n_samples": 2.5}, "n_samples must be a non-negative integer"),
    ({"n_samples": "5"}, "n_samples must be a non-negative integer"),
    ({"isolation_rtol": -1.0}, "isolation_rtol must be >= 0"),
    ({"isolation_rtol": float("nan")}, "isolation_rtol must be >= 0"),
    ({"isolation_rtol": "small"}, "isolation_rtol must be a number"),
    ({"fold_batch_norm": "yes"}, "fold_batch_norm must be True or False"),
])
def test_bad_settings_one_clear_error(settings, message):
    with pytest.raises(ValueError, match=message):
        AnalysisSpec(**settings)
    with pytest.raises(ValueError, match=message):
        AnalysisSpec().replace(**settings)


def test_settings_are_normalised_to_builtins():
    spec = AnalysisSpec(n_clusters=np.int64(5), n_samples=5.0, isolation_rtol=np.float32(0.5),
                        fold_batch_norm=np.bool_(True))
    assert type(spec.n_clusters) is int and type(spec.n_samples) is int
    assert type(spec.isolation_rtol) is float and spec.fold_batch_norm is True


def test_clusterability_takes_a_spec_or_keywords_not_both():
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(6, 5)), rng.normal(size=(5, 4))]
    spec = AnalysisSpec(n_clusters=3, n_samples=4)
    a = clusterability(ws, spec=spec, seed=2, n_workers=1)
    b = clusterability(ws, 3, n_samples=4, seed=2, n_workers=1)
    assert a.ncut == b.ncut
    np.testing.assert_array_equal(a.null_distribution, b.null_distribution)
    with pytest.raises(ValueError, match="not both .*n_samples"):
        clusterability(ws, spec=spec, n_samples=5)
    with pytest.raises(TypeError, match="AnalysisSpec"):
        clusterability(ws, spec={"n_clusters": 3})
