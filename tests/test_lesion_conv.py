"""Lesions of conv filters (§6, the CNN rows; filters as units, §3.3): ablation, fast == reference.

Small versions of the paper's networks (``harness.models.SmallCNN`` and ``VGG``) keep every
evaluation to a few hundred tiny images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from harness import lesion as L
from harness.cluster import cluster_weights
from harness.lesion.evaluation import eval_mode
from harness.lesion.fast_conv import FastConv
from harness.model_kernels import module_filter_graph
from harness.models import VGG, SmallCNN, keras_init_

N_CLASSES = 4
SIDE = 12
CHANNELS = (6, 8, 8)  # small CNN: three conv layers, pooled after the second and third
VGG_FILTERS = (6, 8, 8)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images(n: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose class is the quadrant of a bright patch (and its channel mix)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = rng.normal(scale=0.4, size=(n, channels, SIDE, SIDE)).astype(np.float32)
    half = SIDE // 2
    mix = rng.uniform(0.5, 1.5, size=(N_CLASSES, channels))
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, :, r * half : (r + 1) * half, q * half : (q + 1) * half] += mix[c, :, None, None]
    return x, y


def _train(model: nn.Module, x: np.ndarray, y: np.ndarray, steps: int = 60) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    return model


def _small_cnn(channels: int = 1, seed: int = 0) -> SmallCNN:
    model = SmallCNN((channels, SIDE, SIDE), channels=CHANNELS, dense=(16,), n_classes=N_CLASSES)
    keras_init_(model, seed=seed)
    return model


def _small_vgg(seed: int = 0) -> VGG:
    model = VGG(
        (3, SIDE, SIDE),
        filters=VGG_FILTERS,
        pool_after=(False, True, True),
        conv_dropout=(0.3, 0.0, 0.4),
        dense=(16, 12),
        n_classes=N_CLASSES,
        dropout=True,
    )
    keras_init_(model, seed=seed)
    return model


@pytest.fixture(scope="module")
def cnn():
    """A small CNN trained briefly on the quadrant task (left in training mode on purpose)."""
    torch.set_num_threads(1)
    x, y = _images(700, 1, seed=1)
    model = _train(_small_cnn(), x[:400], y[:400])
    return model, x[400:], y[400:]


@pytest.fixture(scope="module")
def vgg():
    """A small VGG (conv -> ReLU -> [pool] -> BN) trained briefly; BN shifts made large, so
    that a kernel-zeroed filter is far from silent after its batch norm."""
    torch.set_num_threads(1)
    x, y = _images(600, 3, seed=2)
    model = _train(_small_vgg(), x[:350], y[:350], steps=50)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.add_(torch.randn(m.bias.shape, generator=gen))
    return model, x[350:], y[350:]


def _labels(sizes, k: int, seed: int, removed: float = 0.1) -> np.ndarray:
    """Filter labels over the conv layers, some -1 (isolated filters)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, sum(sizes))
    labels[rng.random(labels.size) < removed] = -1
    return labels


def _post_activations(model: nn.Module, x: torch.Tensor, kind: type) -> list[torch.Tensor]:
    """Outputs of every module of type ``kind`` (in forward order), in evaluation mode."""
    acts: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: acts.append(out.detach().clone()))
        for m in model.modules()
        if isinstance(m, kind)
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return acts


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k


# --- ablation: filters as units -------------------------------------------------------------------


def test_conv_lesion_silences_exactly_the_chosen_filters_and_restores_them():
    model = _small_cnn(seed=4)
    x = torch.as_tensor(_images(32, 1, seed=5)[0])
    before = _state(model)
    ptrs = {k: v.data_ptr() for k, v in model.state_dict().items()}
    clean = _post_activations(model, x, nn.ReLU)
    conv1, conv3 = model.features[0], model.features[5]
    lesion = {1: [0, 4], 3: np.array([2, 7])}
    with L.lesioned(model, lesion) as same:
        assert same is model
        assert torch.all(conv1.weight[[0, 4]] == 0) and torch.all(conv1.bias[[0, 4]] == 0)
        assert torch.all(conv3.weight[[2, 7]] == 0) and torch.all(conv3.bias[[2, 7]] == 0)
        # Only whole filters (output channels) are zeroed: the others keep every weight.
        assert torch.equal(conv1.weight[[1, 2, 3, 5]], before["features.0.weight"][[1, 2, 3, 5]])
        acts = _post_activations(model, x, nn.ReLU)
    # ReLU outputs: conv1, conv2, conv3, dense.
    assert torch.all(acts[0][:, [0, 4]] == 0) and torch.all(acts[2][:, [2, 7]] == 0)
    assert clean[0][:, [0, 4]].abs().sum() > 0 and clean[2][:, [2, 7]].abs().sum() > 0
    # The other filters of the first lesioned layer are untouched (it is upstream of the rest).
    assert torch.equal(acts[0][:, [1, 2, 3, 5]], clean[0][:, [1, 2, 3, 5]])
    _assert_state(model, before)
    assert {k: v.data_ptr() for k, v in model.state_dict().items()} == ptrs  # restored in place


def test_conv_lesion_restores_after_exception():
    model = _small_cnn(seed=6)
    before = _state(model)
    with pytest.raises(RuntimeError, match="boom"), L.lesioned(model, {2: [1, 3]}):
        assert torch.all(model.features[2].weight[[1, 3]] == 0)
        raise RuntimeError("boom")
    _assert_state(model, before)


@settings(max_examples=25, deadline=None)
@given(
    picks=st.lists(st.lists(st.integers(0, 7), max_size=8), min_size=3, max_size=3),
    channels=st.sampled_from([1, 2, 3]),
)
def test_conv_lesion_property_exact_silence_and_restore(picks, channels):
    """Any filter sets (also empty ones) of any conv layers: exactly those filters output 0,
    an empty lesion changes nothing, and the model is restored bitwise."""
    torch.set_num_threads(1)
    model = _small_cnn(channels=channels, seed=7)
    x = torch.as_tensor(_images(8, channels, seed=8)[0])
    lesion = {
        layer: [u % CHANNELS[layer - 1] for u in units]
        for layer, units in zip((1, 2, 3), picks, strict=True)
    }
    before = _state(model)
    with eval_mode(model), torch.no_grad():
        clean_out = model(x)
    with L.lesioned(model, lesion):
        acts = _post_activations(model, x, nn.ReLU)
        with eval_mode(model), torch.no_grad():
            out = model(x)
    for layer, units in lesion.items():
        if units:
            assert torch.all(acts[layer - 1][:, sorted(set(units))] == 0)
    if not any(lesion.values()):
        assert torch.equal(out, clean_out)
    _assert_state(model, before)


def test_unit_norms_pair_vgg_layers_with_their_batch_norm():
    vgg = _small_vgg()
    norms = L.ablation.unit_norms(vgg)
    bn2d = [m for m in vgg.features if isinstance(m, nn.BatchNorm2d)]
    bn1d = [m for m in vgg.classifier if isinstance(m, nn.BatchNorm1d)]
    assert norms == {1: bn2d[0], 2: bn2d[1], 3: bn2d[2], 4: bn1d[0]}
    assert L.ablation.unit_norms(_small_cnn()) == {}
    assert L.ablation.conv_layers(vgg) == [1, 2, 3]


@pytest.mark.parametrize("ablation", L.ABLATIONS)
def test_vgg_lesion_after_batch_norm_output_vs_kernel(vgg, ablation):
    """'output' silences the filter after its batch norm; 'kernel' (the paper's) leaves the
    constant shift beta - gamma * mean / sqrt(var + eps) (reference §11 item 10)."""
    model, x, _ = vgg
    xt = torch.as_tensor(x[:16])
    before = _state(model)
    bn = [m for m in model.features if isinstance(m, nn.BatchNorm2d)][1]
    units = [1, 5]
    clean = _post_activations(model, xt, nn.BatchNorm2d)[1]
    with L.lesioned(model, {2: units}, ablation=ablation):
        acts = _post_activations(model, xt, nn.BatchNorm2d)[1]
    shift = (bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).detach()
    if ablation == "output":
        assert torch.all(acts[:, units] == 0)
    else:
        expected = shift[units].view(1, -1, 1, 1).expand_as(acts[:, units])
        torch.testing.assert_close(acts[:, units], expected)
        assert shift[units].abs().min() > 0.05  # far from silent
    others = [u for u in range(VGG_FILTERS[1]) if u not in units]
    assert torch.equal(acts[:, others], clean[:, others])
    _assert_state(model, before)


def test_output_ablation_needs_affine_batch_norm():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.BatchNorm2d(4, affine=False),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * SIDE * SIDE, N_CLASSES),
    )
    before = _state(model)
    with pytest.raises(ValueError, match="affine"), L.lesioned(model, {1: [0]}):
        pass
    _assert_state(model, before)
    with L.lesioned(model, {1: [0]}, ablation="kernel"):
        assert torch.all(model[0].weight[0] == 0)
    with pytest.raises(ValueError, match="ablation must be one of 'output', 'kernel'; got 'bn'"):
        with L.lesioned(model, {1: [0]}, ablation="bn"):
            pass


# --- which filters: sub-clusters of conv layers -----------------------------------------------------


def test_conv_sub_clusters_and_pools_start_at_conv_layer_one():
    sizes = (3, 4, 2)
    labels = np.array([0, 1, 0] + [1, -1, 1, 2] + [2, 2])
    subs = L.sub_clusters(labels, sizes, first_layer=1)
    got = [(s.layer, s.label, s.units, s.proportion) for s in subs]
    assert got == [
        (1, 0, (0, 2), 2 / 3),
        (1, 1, (1,), 1 / 3),
        (2, 1, (0, 2), 2 / 3),
        (2, 2, (3,), 1 / 3),
        (3, 2, (0, 1), 1.0),
    ]
    np.testing.assert_array_equal(L.layer_pool(labels, sizes, 2, first_layer=1), [0, 2, 3])
    assert [s.layer for s in L.sub_clusters(labels, sizes, layers=[3], first_layer=1)] == [3]
    with pytest.raises(ValueError, match="cover layers 1..3"):
        L.sub_clusters(labels, sizes, layers=[0], first_layer=1)


def test_label_layout_checks_filter_counts():
    cnn, vgg = _small_cnn(), _small_vgg()
    assert L.label_layout(cnn, CHANNELS) == 1 and L.label_layout(vgg, VGG_FILTERS) == 1
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert L.label_layout(mlp, (3, 4, 2)) == 0
    with pytest.raises(ValueError, match=r"filter counts \[6, 8, 8\]"):
        L.label_layout(cnn, (1, 6, 8, 8, 16, 4))


def test_conv_single_test_draws_random_filters_from_the_same_conv_layer(cnn, monkeypatch):
    model, x, y = cnn
    labels = _labels(CHANNELS, k=3, seed=9)
    seen: list[dict[int, np.ndarray]] = []
    original = L.evaluation.lesioned

    def spy(net, lesion, **kwargs):
        seen.append({k: np.asarray(v) for k, v in lesion.items()})
        return original(net, lesion, **kwargs)

    monkeypatch.setattr(L.evaluation, "lesioned", spy)
    res = L.single_lesion_test(
        model, labels, CHANNELS, x[:40], y[:40], n_trials=3, seed=2, method="reference"
    )
    assert {s.layer for s in res.sub_clusters} == {1, 2, 3}
    assert len(seen) == 1 + len(res.sub_clusters) * 4
    for s, sub in enumerate(res.sub_clusters):
        pool = L.layer_pool(labels, CHANNELS, sub.layer, first_layer=1)
        for r in range(3):
            lesion = seen[1 + s * 4 + 1 + r]
            assert list(lesion) == [sub.layer] and lesion[sub.layer].size == sub.size
            assert np.all(np.isin(lesion[sub.layer], pool))


# --- fast == reference ------------------------------------------------------------------------------


def _fast_outputs(model, lesions, x, *, ablation="output", batch_elements=2**20):
    """Raw outputs of the fast method, shape (M, N, n_out)."""
    groups = L.specs.group_lesions(lesions)
    xt = torch.as_tensor(x)
    out = torch.zeros(len(lesions), xt.shape[0], N_CLASSES)

    def record(index, outputs, samples=slice(None)):
        out[list(index), samples] = outputs

    with eval_mode(model), torch.inference_mode():
        FastConv(model, xt, torch.device("cpu"), batch_elements, ablation).evaluate(groups, record)
    return out


def _reference_outputs(model, lesions, x, *, ablation="output"):
    xt = torch.as_tensor(x)
    outs = []
    with eval_mode(model), torch.inference_mode():
        for lesion in lesions:
            with L.lesioned(model, lesion, ablation=ablation):
                outs.append(model(xt))
    return torch.stack(outs)


LESIONS = [
    {},
    {1: [0, 2]},  # low-rank step into conv2
    {1: [0, 1, 2, 3, 4]},  # more than half the layer: dense step
    {2: [3]},  # low-rank step into conv3
    {3: [0, 5, 6]},  # last conv: into the dense head through Flatten
    {1: [1], 3: [2, 4]},  # a fixed lesion above the deepest one
    {1: [1], 2: [0, 7], 3: [3]},  # prefix shared, lesion in three layers
    {4: [0, 3, 9]},  # dense hidden layer
]


@pytest.mark.parametrize("batch_elements", [2**20, 900])
def test_fast_conv_outputs_equal_reference(cnn, batch_elements):
    model, x, _ = cnn
    fast = _fast_outputs(model, LESIONS, x[:100], batch_elements=batch_elements)
    ref = _reference_outputs(model, LESIONS, x[:100])
    # Float32 rounding (the low-rank step sums in another order; convolutions of other
    # batch sizes may use other kernels).
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
    if batch_elements > 100 * 6 * SIDE * SIDE:  # one block of samples, as the reference
        assert torch.equal(fast[0], ref[0])  # unlesioned: the model's own modules, bitwise
    assert not torch.allclose(ref[1], ref[0])  # the lesions change the outputs


_WIDTHS = {1: CHANNELS[0], 2: CHANNELS[1], 3: CHANNELS[2], 4: 16}


@settings(max_examples=15, deadline=None)
@given(
    lesions=st.lists(
        st.dictionaries(
            st.sampled_from(sorted(_WIDTHS)), st.lists(st.integers(0, 15), max_size=10), max_size=3
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fast_conv_property_equals_reference_on_any_lesions(cnn, lesions):
    """Any lesions (empty, overlapping, several layers, conv and dense) give the reference's
    outputs."""
    torch.set_num_threads(1)
    model, x, _ = cnn
    lesions = [{k: [u % _WIDTHS[k] for u in v] for k, v in d.items()} for d in lesions]
    fast = _fast_outputs(model, lesions, x[:20])
    ref = _reference_outputs(model, lesions, x[:20])
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_conv_evaluation_matches_direct_computation_in_sample_blocks(cnn, monkeypatch):
    model, x, y = cnn
    lesions = [{}, {1: [0, 3]}, {2: range(5), 3: [1]}]
    whole = L.evaluate_lesions(model, lesions, x, y, method="reference")
    monkeypatch.setattr(L.evaluation, "REFERENCE_CONV_SAMPLES", 7)  # 300 samples: 43 blocks
    blocked = L.evaluate_lesions(model, lesions, x, y, method="reference")
    np.testing.assert_array_equal(blocked.per_class, whole.per_class)
    np.testing.assert_array_equal(blocked.proportions, whole.proportions)
    for i, lesion in enumerate(lesions):
        with eval_mode(model), torch.no_grad(), L.lesioned(model, lesion):
            pred = model(torch.as_tensor(x)).argmax(1).numpy()
        assert whole.overall[i] == np.mean(pred == y)
        for c in range(N_CLASSES):
            assert whole.per_class[i, c] == np.mean(pred[y == c] == c)
    assert model.training  # the caller's mode is restored


@pytest.mark.parametrize("ablation", L.ABLATIONS)
def test_fast_conv_outputs_equal_reference_vgg(vgg, ablation):
    model, x, _ = vgg
    lesions = [{}, {1: [0, 2]}, {2: [1, 2, 3, 4, 5]}, {3: [7]}, {1: [3], 3: [0, 1]}, {4: [2]}]
    fast = _fast_outputs(model, lesions, x[:60], ablation=ablation)
    ref = _reference_outputs(model, lesions, x[:60], ablation=ablation)
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))


def test_cnn_single_lesion_test_fast_equals_reference_with_filter_graph_labels(cnn):
    """The experiment's call: labels from clustering the filter graph (§3.3)."""
    model, x, y = cnn
    clustering = cluster_weights(module_filter_graph(model), 3, seed=0)
    assert clustering.layer_sizes == CHANNELS
    kw = {"n_trials": 4, "seed": 3}
    fast = L.single_lesion_test(model, clustering.labels, clustering.layer_sizes, x, y, **kw)
    ref = L.single_lesion_test(
        model, clustering.labels, clustering.layer_sizes, x, y, method="reference", **kw
    )
    assert fast.method == "fast" and ref.method == "reference"
    assert {s.layer for s in fast.sub_clusters} <= {1, 2, 3}
    np.testing.assert_array_equal(fast.true_outcomes, ref.true_outcomes)
    np.testing.assert_array_equal(fast.random_outcomes, ref.random_outcomes)
    np.testing.assert_array_equal(fast.true_proportions, ref.true_proportions)
    assert fast.to_frame().equals(ref.to_frame())
    assert fast.unlesioned > 0.6  # trained: lesions have something to damage
    assert min(r.diff for r in fast.rows) < -0.02
    assert fast.to_row()["ablation"] == "output"


@pytest.mark.parametrize("mode", ["joint", "conditional"])
def test_cnn_double_lesion_fast_equals_reference(cnn, mode):
    model, x, y = cnn
    labels = _labels(CHANNELS, k=2, seed=10)
    kw = {"n_trials": 2, "seed": 4, "mode": mode, "layers": [1, 3]}
    fast = L.double_lesion_test(model, labels, CHANNELS, x[:120], y[:120], **kw)
    ref = L.double_lesion_test(model, labels, CHANNELS, x[:120], y[:120], method="reference", **kw)
    assert fast.to_frame().equals(ref.to_frame())
    assert fast.to_row()["ablation"] == "output"


def test_vgg_single_lesion_test_both_ablations(vgg):
    model, x, y = vgg
    labels = _labels(VGG_FILTERS, k=3, seed=11, removed=0.0)
    results = {}
    for ablation in L.ABLATIONS:
        kw = {"n_trials": 3, "seed": 5, "ablation": ablation}
        fast = L.single_lesion_test(model, labels, VGG_FILTERS, x, y, **kw)
        ref = L.single_lesion_test(model, labels, VGG_FILTERS, x, y, method="reference", **kw)
        assert fast.to_frame().equals(ref.to_frame())
        np.testing.assert_array_equal(fast.random_outcomes, ref.random_outcomes)
        assert fast.to_row()["ablation"] == ablation
        results[ablation] = fast
    # Same lesions, different damage: the batch-norm shift of a kernel-zeroed filter matters.
    assert not np.array_equal(results["output"].true_outcomes, results["kernel"].true_outcomes)


def test_conv_option_and_input_validation(cnn):
    model, x, y = cnn
    labels = _labels(CHANNELS, k=2, seed=12)
    with pytest.raises(ValueError, match="filter counts"):
        L.single_lesion_test(model, labels, (6, 8, 9), x, y)
    with pytest.raises(ValueError, match="ablation must be one of 'output', 'kernel'"):
        L.single_lesion_test(model, labels, CHANNELS, x, y, ablation="bn")
    with pytest.raises(ValueError, match="batch of"):
        L.single_lesion_test(model, labels, CHANNELS, x[:, :, :10], y)
    with pytest.raises(ValueError, match="hidden"):
        L.evaluate_lesions(model, [{5: [0]}], x, y)  # the output layer


class _Residual(nn.Module):
    """Conv layers with a skip connection: not a chain of its leaf modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * SIDE * SIDE, N_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv1(x))
        return self.head(h + torch.relu(self.conv2(h)))


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (_Residual(), "does not reproduce its forward pass"),
        (
            nn.Sequential(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.LocalResponseNorm(2),
                nn.Conv2d(4, 4, 3, padding=1),
                nn.Flatten(),
                nn.Linear(4 * SIDE * SIDE, N_CLASSES),
            ),
            "LocalResponseNorm",
        ),
    ],
    ids=["residual", "channel-mixing"],
)
def test_fast_conv_rejects_networks_that_are_not_chains(model, match):
    torch.manual_seed(0)
    x, y = _images(30, 1, seed=13)
    labels = _labels((4, 4), k=2, seed=14, removed=0.0)
    with pytest.raises(ValueError, match=match) as info:
        L.single_lesion_test(model, labels, (4, 4), x, y, n_trials=2)
    assert "method='reference'" in str(info.value)
    res = L.single_lesion_test(model, labels, (4, 4), x, y, n_trials=2, method="reference")
    assert len(res.rows) == len(L.sub_clusters(labels, (4, 4), first_layer=1))
