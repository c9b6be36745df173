"""The filter graph of conv networks (reference §3.3): hand-computed edges, norms, batch-norm
folding, and conv networks through the clusterability test, the loaders and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from harness.analysis import clusterability, load_weights
from harness.cli import FILTER_NORMS as CLI_FILTER_NORMS
from harness.cli import main
from harness.filters import FILTER_NORMS, filter_adjacency, filter_graph_weights
from harness.model_kernels import batch_norm_scales, module_filter_graph
from harness.models import SmallCNN, conv_kernels


def _two_layer_stack():
    """conv1: 1 -> 2 filters, conv2: 2 -> 3 filters, 3x3 kernels (Keras layout)."""
    k1 = np.arange(18, dtype=float).reshape(3, 3, 1, 2) - 9
    k2 = np.zeros((3, 3, 2, 3))
    # slice (in 0, out 0): column sums |.| = (1+2+0, 0+0+4, 1+1+1) = (3, 4, 3)
    k2[:, :, 0, 0] = [[1, 0, -1], [-2, 0, 1], [0, -4, 1]]
    # slice (in 1, out 2): one entry
    k2[1, 2, 1, 2] = -5.0
    # slice (in 1, out 0): a rank-one slice with singular value |u| |v| = 3 * 2 = 6
    k2[:, :, 1, 0] = np.outer([1.0, 2.0, 2.0], [0.0, 2.0, 0.0])
    return [k1, k2]


def test_hand_computed_edges_both_norms():
    kernels = _two_layer_stack()
    (m1,) = filter_graph_weights(kernels, filter_norm="matrix1")
    (l1,) = filter_graph_weights(kernels, filter_norm="l1")
    (sp,) = filter_graph_weights(kernels, filter_norm="spectral")
    assert m1.shape == l1.shape == sp.shape == (2, 3)
    # matrix 1-norm: the largest column sum of |slice|
    assert m1[0, 0] == 4.0 and m1[1, 2] == 5.0 and m1[1, 0] == 10.0
    # element-wise L1: the sum of |slice|
    assert l1[0, 0] == 1 + 1 + 2 + 1 + 4 + 1 and l1[1, 2] == 5.0 and l1[1, 0] == 10.0
    assert sp[1, 0] == pytest.approx(6.0) and sp[1, 2] == pytest.approx(5.0)
    for m in (m1, l1, sp):
        assert m[0, 1] == m[0, 2] == m[1, 1] == 0.0  # empty slices have no edge


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["matrix1", "spectral"]))
def test_matches_numpy_matrix_norm_of_each_slice(seed, norm):
    """The vectorised norms equal numpy's ``linalg.norm(|slice|, ord)`` (the paper's call)."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(3, 3, 4, 5))
    got = filter_adjacency(k, norm)
    order = 1 if norm == "matrix1" else 2
    want = np.array(
        [[np.linalg.norm(np.abs(k[:, :, i, j]), order) for j in range(5)] for i in range(4)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.floats(1e-30, 1e30), st.sampled_from(list(FILTER_NORMS)))
def test_filter_graph_is_homogeneous(c, norm):
    kernels = _two_layer_stack()
    base = filter_graph_weights(kernels, filter_norm=norm)
    scaled = filter_graph_weights([c * k for k in kernels], filter_norm=norm)
    np.testing.assert_allclose(scaled[0], c * base[0], rtol=1e-12)


def test_bn_folding_scales_columns():
    kernels = _two_layer_stack()
    scales = [np.array([3.0, -7.0]), np.array([2.0, -0.5, 10.0])]
    (plain,) = filter_graph_weights(kernels)
    (folded,) = filter_graph_weights(kernels, bn_scales=scales)
    # the matrix of conv2 is scaled by conv2's |scale| per output filter (column)
    np.testing.assert_allclose(folded, plain * np.array([2.0, 0.5, 10.0])[None, :])
    with pytest.raises(ValueError, match="bn_scales"):
        filter_graph_weights(kernels, bn_scales=[None])


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 3, padding=1)
        self.r = nn.ReLU()
        self.b1 = nn.BatchNorm2d(2, eps=1e-3)
        self.c2 = nn.Conv2d(2, 3, 3, padding=1)
        self.b2 = nn.BatchNorm2d(3, eps=1e-3)


def test_bn_scales_from_a_module_and_folded_graph():
    torch.manual_seed(0)
    m = _ConvBN()
    with torch.no_grad():
        m.b2.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
        m.b2.running_var.copy_(torch.tensor([3.0, 0.999, 0.249]))
    scales = batch_norm_scales(m)
    assert len(scales) == 2
    np.testing.assert_allclose(scales[1], [2.0 / np.sqrt(3.001), -1.0, 1.0])
    plain = module_filter_graph(m)
    folded = module_filter_graph(m, fold_batch_norm=True)
    np.testing.assert_allclose(folded[0], plain[0] * np.abs(scales[1])[None, :], rtol=1e-6)
    # a conv without batch norm has no scale
    assert batch_norm_scales(SmallCNN()) == [None, None, None]


def test_bad_kernels_one_clear_error():
    with pytest.raises(ValueError, match="at least two conv layers"):
        filter_graph_weights([np.ones((3, 3, 1, 2))])
    with pytest.raises(ValueError, match=r"permute torch's \(out, in, kh, kw\)"):
        filter_graph_weights([np.ones((3, 3, 1, 2)), np.ones((3, 3, 5, 4))])
    with pytest.raises(ValueError, match="filter_norm"):
        filter_adjacency(np.ones((3, 3, 1, 2)), "frobenius")


def test_small_cnn_graph_has_192_nodes():
    graph = module_filter_graph(SmallCNN())
    assert [w.shape for w in graph] == [(64, 64), (64, 64)]


def test_cli_filter_norms_match_the_library():
    assert tuple(CLI_FILTER_NORMS) == FILTER_NORMS


def test_module_npz_and_state_dict_give_the_same_result(tmp_path):
    torch.manual_seed(1)
    model = SmallCNN()
    npz, pt = tmp_path / "cnn.npz", tmp_path / "cnn.pt"
    # the dense head after the kernels is dropped, as the paper clusters conv->conv only
    np.savez(npz, *conv_kernels(model), np.ones((3136, 128)))
    torch.save(model.state_dict(), pt)
    for source in (npz, pt, conv_kernels(model)):
        np.testing.assert_array_equal(load_weights(source)[0], module_filter_graph(model)[0])
    a = clusterability(model, 12, n_samples=3, seed=4, n_workers=1)
    b = clusterability(npz, 12, n_samples=3, seed=4, n_workers=1)
    assert a.ncut == b.ncut and list(a.null_distribution) == list(b.null_distribution)
    with pytest.raises(ValueError, match="fold_batch_norm needs a torch module"):
        load_weights(npz, fold_batch_norm=True)


def test_cli_clusters_an_npz_of_conv_kernels(tmp_path, capsys):
    torch.manual_seed(2)
    path = tmp_path / "kernels.npz"
    np.savez(path, *conv_kernels(SmallCNN()))
    code = main(["cluster", str(path), "--samples", "4", "--workers", "1", "--json", "--quiet"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["ncut"] <= 12 and len(out["labels"]) == 192
    code = main(["cluster", str(path), "--samples", "0", "--filter-norm", "l1", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ncut"] != out["ncut"]


def test_torch_layout_kernels_are_refused_not_clustered(tmp_path, capsys):
    """Torch's (out, in, 3, 3) kernels read as Keras' (3, 3, in, out) chain as a 3-3-3
    network; they are refused with the permutation that fixes them."""
    torch_layout = [np.ones((8, 1, 3, 3)), np.ones((8, 8, 3, 3)), np.ones((8, 8, 3, 3))]
    path = tmp_path / "torch_layout.npz"
    np.savez(path, *torch_layout)
    with pytest.raises(ValueError, match=r"torch layout.*\.transpose\(2, 3, 1, 0\)"):
        load_weights(path)
    assert main(["cluster", str(path), "--samples", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and ".transpose(2, 3, 1, 0)" in err and "\n" not in err
    keras = [k.transpose(2, 3, 1, 0) for k in torch_layout]
    assert [w.shape for w in load_weights(keras)] == [(8, 8), (8, 8)]


@pytest.mark.parametrize(("shapes", "torch_like"), [
    ([(16, 1, 3, 3), (16, 16, 3, 3)], True),
    ([(16, 16, 3, 3), (32, 16, 3, 3)], True),  # both chain: 16x16 "kernels" are channels
    ([(3, 3, 1, 16), (3, 3, 16, 16)], False),
    ([(3, 3, 3, 3), (3, 3, 3, 3)], False),  # the same either way: Keras
    ([(1, 1, 64, 64), (1, 1, 64, 64)], False),
])
def test_torch_layout_detection(shapes, torch_like):
    from harness.filters import looks_like_torch_layout

    assert looks_like_torch_layout(shapes) is torch_like


def test_grouped_convolutions_are_refused():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3))
    with pytest.raises(ValueError, match=r"conv layer 1 is a grouped convolution \(groups=2\).*"
                                         "not supported"):
        load_weights(model)
    # a grouped conv's kernels saved as arrays: the chain error names grouping too
    kernels = [k.detach().numpy().transpose(2, 3, 1, 0) for k in (model[0].weight, model[1].weight)]
    with pytest.raises(ValueError, match="grouped convolution .* not supported"):
        load_weights(kernels)
