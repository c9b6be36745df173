"""Feature visualisation of sub-clusters (reference §7.5): the optimiser and the statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from harness.feature_vis import feature_vis_test, visualise
from harness.models import SmallCNN

PATTERN = np.array([[1, -1, 1, -1], [-1, -1, 1, 1], [1, 1, -1, -1], [-1, 1, -1, 1]], dtype=np.float32)


def _detector() -> nn.Sequential:
    """A hand-built 16-2-3 MLP whose hidden unit 0 detects PATTERN (weights +-1)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 2), nn.ReLU(), nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight[0] = torch.as_tensor(PATTERN.ravel())
        net[0].bias.zero_()
    return net


def test_single_unit_recovers_its_pattern():
    images, objective, entropy = visualise(_detector(), 1, [[0]], image_shape=(1, 4, 4))
    image = images[0, 0]
    assert images.shape == (1, 1, 4, 4) and 0 <= image.min() and image.max() <= 1
    # Bright where the unit's weight is +1, dark where it is -1, far from the grey start.
    assert (image[PATTERN > 0] > 0.8).all() and (image[PATTERN < 0] < 0.2).all(), image
    # The objective is the unit's activation on the image, near its maximum 8 (0.5 at start).
    assert objective[0] > 6.0
    assert entropy.shape == (1,) and 0 <= entropy[0] <= np.log(3) + 1e-9


def test_bad_input():
    net = _detector()
    with pytest.raises(ValueError, match="layer must be in 1..2"):
        visualise(net, 3, [[0]], image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="unit set 0 must hold units in 0..1"):
        visualise(net, 1, [[2]], image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="image_shape must be"):
        visualise(net, 1, [[0]], image_shape=(4, 4))
    with pytest.raises(ValueError, match="n_random must be"):
        feature_vis_test(net, np.zeros(21, dtype=int), [16, 2, 3], image_shape=(1, 4, 4),
                         n_random=0)


def _mlp_with_strong_cluster():
    """A 16-20-20-4 MLP whose layer-1 units 0..5 have ten times the others' weights."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(16, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, 4))
    with torch.no_grad():
        net[0].weight[:6] *= 10
    sizes = [16, 20, 20, 4]
    labels = np.full(sum(sizes), -1)
    labels[16:36] = np.r_[np.zeros(6, int), np.ones(7, int), np.full(7, 2)]
    labels[36:56] = np.r_[np.full(10, 3), np.full(10, 4)]
    return net, labels, sizes


def test_feature_vis_statistics():
    net, labels, sizes = _mlp_with_strong_cluster()
    result = feature_vis_test(net, labels, sizes, image_shape=(1, 4, 4), n_random=9, steps=40,
                              seed=0)
    # Sizes 6 and 7 in layer 1 qualify (5 < size < 16); layer 2's halves (10 < 16) too.
    assert [(s.layer, s.size) for s in result.sub_clusters] == [(1, 6), (1, 7), (1, 7), (2, 10), (2, 10)]
    assert result.random_objective.shape == (5, 9) and result.images.shape == (5, 1, 4, 4)
    # The strong units reach more than every random set of their layer.
    assert result.p_objective[0] == pytest.approx(0.1)
    p = np.r_[result.p_objective, result.p_entropy]
    assert ((p >= 0.1 - 1e-12) & (p <= 1)).all()
    row = result.to_row()
    assert row["n_sub_clusters"] == 5 and 0 < row["fisher_p_objective"] <= 1
    assert 0 < row["chi2_p_entropy"] <= 1 and row["effect_objective"] > 0
    assert row["frac_min_p_objective"] == pytest.approx(np.mean(result.p_objective <= 0.1 + 1e-9))
    assert row["frac_min_p_objective"] >= 0.2  # the strong sub-cluster, at least
    frame = result.to_frame()
    assert list(frame["size"]) == [6, 7, 7, 10, 10]
    again = feature_vis_test(net, labels, sizes, image_shape=(1, 4, 4), n_random=9, steps=40, seed=0)
    np.testing.assert_array_equal(again.true_objective, result.true_objective)


def test_no_eligible_sub_cluster_warns():
    net, labels, sizes = _mlp_with_strong_cluster()
    labels[16:56] = 0  # one cluster per layer: 100% of it
    with pytest.warns(RuntimeWarning, match="nothing to visualise"):
        result = feature_vis_test(net, labels, sizes, image_shape=(1, 4, 4), steps=2)
    assert result.to_row()["n_sub_clusters"] == 0 and np.isnan(result.to_row()["fisher_p_entropy"])


def test_small_cnn_filters():
    """The harness's small CNN: filter labels cover its conv layers (first_layer=1)."""
    cnn = SmallCNN()
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, size=192)
    result = feature_vis_test(cnn, labels, [64, 64, 64], image_shape=(1, 28, 28), first_layer=1,
                              n_random=2, steps=2, seed=0)
    assert {s.layer for s in result.sub_clusters} == {1, 2, 3}
    assert result.images.shape[1:] == (1, 28, 28)
    assert np.isfinite(result.true_entropy).all()


def test_plot_feature_images(tmp_path):
    import matplotlib.image

    from harness.report import plot_feature_images

    images = np.zeros((3, 1, 7, 7))
    images[:, :, 3] = 1.0  # a white bar on black
    (png,) = plot_feature_images(images, tmp_path / "f", labels=["a", "b", "c"], formats=["png"])
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and float(img[..., :3].std()) > 0.05
    assert plot_feature_images(np.zeros((0, 1, 7, 7)), tmp_path / "e", formats=["png"])
    with pytest.raises(ValueError, match="got 2 labels for 3 images"):
        plot_feature_images(images, tmp_path / "g", labels=["a", "b"])
    with pytest.raises(ValueError, match="images must have shape"):
        plot_feature_images(np.zeros(5), tmp_path / "h")
