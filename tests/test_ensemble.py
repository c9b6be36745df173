"""The ensemble trainer (harness.ensemble): members trained together equal the same configs
trained alone, whatever the group; ensembles resume from the store; units in the plan.

Tiny real-MNIST subsets and schedules, on the CPU (one thread), so the file runs in about a
minute on one core.
"""

from __future__ import annotations

import pytest
import torch

from harness.configs import TrainConfig
from harness.data import DataUnavailableError, load_dataset
from harness.ensemble import default_trainer, get_or_train_group, group_key, train_ensemble
from harness.store import Store
from harness.training import MODEL_KIND, model_key_payload, train

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def mnist():
    try:
        return load_dataset("mnist")
    except DataUnavailableError as exc:  # pragma: no cover - the project fetches MNIST
        pytest.skip(f"MNIST unavailable: {exc}")


# 1000 examples in batches of 128: the last batch is partial (104), where kernels' vector
# tails would show; masks every 2 steps over 2 pruning epochs.
MLP = TrainConfig("mnist", epochs=2, pruning_epochs=2, n_train=1000, n_test=300,
                  pruning_frequency=2, trainer="ensemble")
MLP_MEMBERS = {
    "control": MLP.replace(seed=1),
    "dropout": MLP.replace(seed=2, dropout=0.5),
    "l1": MLP.replace(seed=3, l1=5e-5),
    "l2-quirk": MLP.replace(seed=4, l2=5e-5, first_layer_l1=True),
    "mod-init": MLP.replace(seed=5, init_modules=10),
}
# A narrow small CNN (16 filters) keeps the CPU time small; the code path is the paper's.
CNN = TrainConfig("mnist", arch="cnn", widths=(16, 16, 16), dense_widths=(32,), batch_size=64,
                  epochs=1, pruning_epochs=1, n_train=200, n_test=100, pruning_frequency=2,
                  trainer="ensemble")
CNN_MEMBERS = {
    "control": CNN.replace(seed=1),
    "dropout": CNN.replace(seed=2, dropout=0.5),
    "l2+mod-init": CNN.replace(seed=3, l2=5e-5, init_modules=10),
}


def assert_same(a, b):
    """Bit-identical weights of both phases and identical metrics."""
    for phase in ("unpruned", "pruned"):
        sa, sb = a.state(phase), b.state(phase)
        assert sa.keys() == sb.keys()
        for name in sa:
            assert torch.equal(sa[name], sb[name]), (phase, name)
    assert a.metrics == b.metrics


@pytest.fixture(scope="module")
def mlp_together(mnist):
    return train_ensemble(list(MLP_MEMBERS.values()), mnist, device="cpu")


@pytest.mark.parametrize("name", list(MLP_MEMBERS))
def test_mlp_member_equals_alone(name, mnist, mlp_together):
    index = list(MLP_MEMBERS).index(name)
    alone = train_ensemble([MLP_MEMBERS[name]], mnist, device="cpu")[0]
    assert_same(alone, mlp_together[index])
    # train() of an ensemble config is the ensemble of one.
    assert_same(train(MLP_MEMBERS[name], mnist, device="cpu"), alone)


def test_member_identical_in_groups_of_2_and_5(mnist, mlp_together):
    # Another group, another position: l2-quirk is member 3 of 5, then member 0 of 2.
    pair = train_ensemble([MLP_MEMBERS["l2-quirk"], MLP_MEMBERS["dropout"]], mnist, device="cpu")
    assert_same(pair[0], mlp_together[3])
    assert_same(pair[1], mlp_together[1])


def test_members_are_trained(mlp_together):
    for result in mlp_together:  # well above chance (0.1) after 2 epochs on 1000 images
        assert result.final_metrics("unpruned")["test_acc"] > 0.3
        assert result.metrics["pruned"][-1]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert mlp_together[2].metrics["unpruned"][-1]["penalty"] > 0
    assert mlp_together[0].metrics["unpruned"][-1]["penalty"] == 0


def test_cnn_members_equal_alone(mnist):
    configs = list(CNN_MEMBERS.values())
    together = train_ensemble(configs, mnist, device="cpu")
    for config, result in zip(configs, together, strict=True):
        assert_same(train_ensemble([config], mnist, device="cpu")[0], result)
    assert together[0].metrics["pruned"][-1]["sparsity"] == pytest.approx(0.9, abs=1e-3)


def test_close_to_single_trainer_without_dropout(mnist, mlp_together):
    """Without dropout a member follows train()'s computation: the weights after the
    unpruned phase agree to float rounding (batched kernels round differently)."""
    single = train(MLP_MEMBERS["control"].replace(trainer="single"), mnist, device="cpu")
    ours = mlp_together[0]
    for name, w in single.state("unpruned").items():
        assert torch.allclose(w, ours.state("unpruned")[name], atol=1e-5, rtol=0), name
    assert single.final_metrics("unpruned")["test_acc"] == pytest.approx(
        ours.final_metrics("unpruned")["test_acc"], abs=0.01)


def test_ensemble_key_differs_from_single(mnist):
    config = MLP_MEMBERS["control"]
    ensemble = model_key_payload(config, mnist)
    single = model_key_payload(config.replace(trainer="single"), mnist)
    assert ensemble["config"]["trainer"] == "ensemble"
    assert "trainer" not in single["config"]  # the single trainer's keys are unchanged
    assert Store("unused").key(MODEL_KIND, ensemble) != Store("unused").key(MODEL_KIND, single)


def test_resume_skips_finished_members(mnist, tmp_path, monkeypatch, mlp_together):
    import harness.ensemble as ensemble

    configs = list(MLP_MEMBERS.values())
    store = Store(tmp_path / "store")
    calls: list[list[int]] = []
    real = ensemble.train_ensemble

    def interrupted(members, *args, on_result=None, **kwargs):
        calls.append([c.seed for c in members])

        def stop_after_first_chunk(i, result):
            on_result(i, result)
            if i == 1:
                raise KeyboardInterrupt

        return real(members, *args, on_result=stop_after_first_chunk, **kwargs)

    monkeypatch.setattr(ensemble, "train_ensemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        get_or_train_group(configs, store=store, dataset=mnist, device="cpu", slots=2)
    assert calls == [[1, 2, 3, 4, 5]]
    stored = [store.exists(MODEL_KIND, model_key_payload(c, mnist)) for c in configs]
    assert stored == [True, True, False, False, False]

    calls.clear()
    monkeypatch.setattr(ensemble, "train_ensemble", lambda members, *a, **k: (
        calls.append([c.seed for c in members]), real(members, *a, **k))[1])
    models = get_or_train_group(configs, store=store, dataset=mnist, device="cpu")
    assert calls == [[3, 4, 5]]  # the two finished members are read, not retrained
    for model, expected in zip(models, mlp_together, strict=True):
        for phase in ("unpruned", "pruned"):
            state = model.state_dict(phase)
            for name, w in expected.state(phase).items():
                assert torch.equal(state[name], w)
    # Everything stored now: nothing trains.
    calls.clear()
    get_or_train_group(configs, store=store, dataset=mnist, device="cpu")
    assert calls == []


def test_local_executor_trains_a_unit_once(mnist, tmp_path, monkeypatch):
    from harness.executors import LocalExecutor, ModelTask, training_units

    small = MLP.replace(epochs=1, pruning_epochs=0, n_train=256, n_test=100)
    members = [small.replace(seed=s) for s in (1, 2, 3)]
    other = small.replace(seed=9, batch_size=64)  # another schedule: its own unit
    single = small.replace(seed=1, trainer="single")
    tasks = [ModelTask.of(c) for c in (*members, other, single)]
    units = training_units(tasks)
    sizes = sorted(len(u) for u in units)
    assert sizes == [1, 1, 3]
    executor = LocalExecutor(Store(tmp_path / "store"))
    executor.submit(tasks)
    model = executor.model(tasks[1])
    assert model.key == tasks[1].key
    # Asking for one member trained its unit (and nothing else).
    assert [executor.store.exists(MODEL_KIND, t.payload) for t in tasks] == [
        True, True, True, False, False]


def test_group_key_and_validation(mnist):
    a = MLP_MEMBERS["control"].resolved(mnist)
    assert group_key(a) == group_key(MLP_MEMBERS["dropout"].resolved(mnist))
    assert group_key(a) != group_key(a.replace(batch_size=64))
    with pytest.raises(ValueError, match="differ in batch_size"):
        train_ensemble([a, a.replace(batch_size=64)], mnist, device="cpu")
    with pytest.raises(ValueError, match="trainer='ensemble'"):
        train_ensemble([a.replace(trainer="single")], mnist, device="cpu")
    # Settings only the single trainer implements are refused, not silently ignored.
    with pytest.raises(ValueError, match="no clusterability regulariser"):
        train_ensemble([a.replace(cluster_lambda=0.5)], mnist, device="cpu")
    with pytest.raises(ValueError, match="pruning_penalty=False"):
        train_ensemble([a.replace(l2=5e-5, pruning_penalty=False)], mnist, device="cpu")
    with pytest.raises(ValueError, match="MLPs and small CNNs"):
        TrainConfig("cifar10_full", arch="vgg", trainer="ensemble")
    with pytest.raises(ValueError, match="trainer must be one of"):
        TrainConfig("mnist", trainer="fast")


def test_default_trainer(monkeypatch):
    mlp, vgg = TrainConfig("mnist"), TrainConfig("cifar10_full", arch="vgg")
    monkeypatch.setenv("HARNESS_TRAINER", "ensemble")
    assert default_trainer(mlp) == "ensemble"
    assert default_trainer(vgg) == "single"  # the ensemble cannot train it
    # Nor the clusterability regulariser, nor a pruning phase without the L1/L2 penalty.
    assert default_trainer(mlp.replace(cluster_lambda=0.5)) == "single"
    assert default_trainer(mlp.replace(l2=5e-5, pruning_penalty=False)) == "single"
    assert default_trainer(mlp.replace(pruning_penalty=False)) == "ensemble"  # no penalty: a no-op
    monkeypatch.setenv("HARNESS_TRAINER", "single")
    assert default_trainer(mlp) == "single"
    monkeypatch.setenv("HARNESS_TRAINER", "auto")
    assert default_trainer(mlp) == ("ensemble" if torch.cuda.is_available() else "single")
    monkeypatch.setenv("HARNESS_TRAINER", "gpu")
    with pytest.raises(ValueError, match="HARNESS_TRAINER must be one of"):
        default_trainer(mlp)


@pytest.mark.integration
def test_a_run_trains_its_units_as_ensembles(mnist, tmp_path):
    """``pytest experiments`` with ensembles on (as on a GPU): the selected tests' models
    train as one unit, each stored under its own key; nothing else is trained."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    store = tmp_path / "store"
    env = {**os.environ, "HARNESS_TRAINER": "ensemble", "HARNESS_PROGRESS": "0",
           "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "experiments/test_clustering.py::test_factor", "-k",
         "unpruned and (MNIST-unpruned or MNIST+DROPOUT-unpruned or MNIST+L2REG-unpruned) "
         "and not HALVES", "--profile", "smoke", "-n", "0", "-q", "-p", "no:cacheprovider",
         "--store", str(store), "--reports-dir", str(tmp_path / "reports")],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "3 passed" in result.stdout
    metas = [json.loads(p.read_text()) for p in (store / "model").glob("*/meta.json")]
    assert len(metas) == 3  # the three selected models, nothing else
    assert {m["config"]["trainer"] for m in metas} == {"ensemble"}
    assert [m["info"]["ensemble"]["members"] for m in metas] == [3, 3, 3]
    assert {m["config"]["dropout"] for m in metas} == {0.0, 0.5}
