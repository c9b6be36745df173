"""Loading networks, the clusterability entry point and the ``cluster`` CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.analysis import clusterability, load_weights
from harness.cli import main
from harness.files import natural_key
from harness.nulls import null_distribution
from harness.stats import ClusterabilityResult


def planted_network(sizes, n_modules, seed=0, within=1.0, between=0.03):
    rng = np.random.default_rng(seed)
    modules = [np.arange(s) % n_modules for s in sizes]
    ws = []
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        same = modules[layer][:, None] == modules[layer + 1][None, :]
        ws.append(np.where(same, within, between) * rng.uniform(0.5, 1.5, (a, b)))
    return ws


def chain(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]


# ---------------------------------------------------------------- load_weights


def test_natural_key():
    keys = ["arr_10", "arr_2", "arr_0", "arr_1"]
    assert sorted(keys, key=natural_key) == ["arr_0", "arr_1", "arr_2", "arr_10"]
    assert sorted(["W10", "W9", "W1"], key=natural_key) == ["W1", "W9", "W10"]


def test_load_sequence():
    ws = chain([4, 3, 2])
    out = load_weights(ws)
    assert [w.shape for w in out] == [(4, 3), (3, 2)]
    assert out[0] is not ws[0]


def test_load_npz_in_natural_key_order(tmp_path):
    # 12 layers of distinct widths: a lexicographic order (arr_10 before arr_2) cannot chain.
    ws = chain(list(range(2, 15)))
    path = tmp_path / "net.npz"
    np.savez(path, *ws)
    out = load_weights(path)
    assert len(out) == 12
    for a, b in zip(out, ws, strict=True):
        np.testing.assert_array_equal(a, b)
    named = tmp_path / "named.npz"
    np.savez(named, **{f"W{i}": w for i, w in enumerate(ws)})
    assert [w.shape for w in load_weights(str(named))] == [w.shape for w in ws]


def test_load_torch_module_transposes_linear_weights():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)
    )
    out = load_weights(net)
    assert [w.shape for w in out] == [(5, 4), (4, 3)]
    np.testing.assert_allclose(out[0], net[1].weight.detach().numpy().T)
    with pytest.raises(ValueError, match="no nn.Linear"):
        load_weights(torch.nn.Sequential(torch.nn.ReLU()))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.npz")
    txt = tmp_path / "w.txt"
    txt.write_text("1 2 3")
    with pytest.raises(ValueError, match="not a .npz file"):
        load_weights(txt)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match="bad.npz"):
        load_weights(bad)
    objects = tmp_path / "objects.npz"
    np.savez(objects, np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="unpickling"):
        load_weights(objects)
    with pytest.raises(TypeError, match="a path to a .npz file"):
        load_weights(42)
    with pytest.raises(TypeError, match="single array"):
        load_weights(np.ones((3, 3)))


def _npz_with_header(path, shape, dtype="<f8", data=b"\0" * 64, compression=zipfile.ZIP_STORED):
    """A .npz whose one member's header claims ``shape`` but holds only ``data``."""
    buf = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(data)
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("arr_0.npy", buf.getvalue())
    return path


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_load_npz_checks_the_header_before_allocating(tmp_path, compression):
    path = _npz_with_header(tmp_path / "huge.npz", (10**6, 10**6), compression=compression)
    with pytest.raises(ValueError) as info:
        load_weights(path)
    message = str(info.value)
    assert "arr_0.npy" in message and "(1000000, 1000000)" in message
    assert "8000000000000 bytes" in message and "holds 64 bytes" in message


def test_load_npz_rejects_a_truncated_member(tmp_path):
    path = _npz_with_header(tmp_path / "short.npz", (3, 2), data=np.ones(5).tobytes())
    with pytest.raises(ValueError, match=r"claims shape \(3, 2\).*48 bytes.*holds 40 bytes"):
        load_weights(path)


def test_load_npz_rejects_a_member_declaring_an_impossible_size(tmp_path):
    path = _npz_with_header(tmp_path / "liar.npz", (4, 4), data=np.ones(16).tobytes())
    raw = bytearray(path.read_bytes())
    # Stored (uncompressed) members declare the same size twice; make the directory lie.
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (2**31).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="arr_0.npy declares"):
        load_weights(path)


def test_load_npz_reads_compressed_fortran_and_integer_arrays(tmp_path):
    ws = [np.asfortranarray(np.arange(12.0).reshape(4, 3)), np.arange(6).reshape(3, 2)]
    path = tmp_path / "mixed.npz"
    np.savez_compressed(path, *ws)
    out = load_weights(path)
    for a, b in zip(out, ws, strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_npy_renamed_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.ones((3, 2)))
    with pytest.raises(ValueError, match="single .npy array, not a .npz archive"):
        load_weights(path)


def test_load_text_named_npz(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("W0 = [[1, 2], [3, 4]]\n")
    with pytest.raises(ValueError, match="is not a .npz archive") as info:
        load_weights(path)
    assert "pickl" not in str(info.value)


def test_load_rejects_non_array_members(tmp_path):
    path = tmp_path / "extra.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README.txt", "weights follow")
    with pytest.raises(ValueError, match="member README.txt is not a .npy array"):
        load_weights(path)
    strings = tmp_path / "strings.npz"
    np.savez(strings, np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="not a numeric type"):
        load_weights(strings)


def test_load_rejects_complex_weights_naming_the_layer(tmp_path):
    ws = [np.ones((3, 2)), np.ones((2, 2)) * (1 + 1j)]
    with pytest.raises(ValueError, match=r"layer 1 holds complex values \(dtype complex128\)"):
        load_weights(ws)
    with pytest.raises(ValueError, match="layer 0 holds complex"):
        load_weights([[[1j, 2], [3, 4]], np.ones((2, 2))])
    with pytest.raises(ValueError, match="layer 0 holds complex values \\(dtype torch.complex64"):
        load_weights([torch.ones(2, 2, dtype=torch.complex64)])
    path = tmp_path / "complex.npz"
    np.savez(path, *ws)
    with pytest.raises(ValueError, match=r"layer 1 \(arr_1.npy\) holds complex values"):
        load_weights(path)


# ---------------------------------------------------------------- clusterability


@pytest.mark.parametrize("method", ["fast", "reference"])
def test_planted_modules_are_significant(method):
    ws = planted_network([16, 12, 12, 8], 4, seed=1)
    res = clusterability(ws, 4, n_samples=8, seed=0, method=method, n_workers=1)
    assert isinstance(res, ClusterabilityResult)
    assert res.pvalue == pytest.approx(1 / 9)
    assert res.is_sig and res.z < -3
    assert res.ncut < res.null_distribution.min()
    assert res.labels.shape == (48,)


def test_clusterability_uses_the_null_distribution_seeds():
    ws = chain([10, 8, 6], seed=2)
    res = clusterability(ws, 3, n_samples=5, seed=9, n_workers=1)
    np.testing.assert_array_equal(
        res.null_distribution, null_distribution(ws, 3, n_samples=5, seed=9, n_workers=1)
    )
    again = clusterability(ws, 3, n_samples=5, seed=9, n_workers=1)
    assert again.ncut == res.ncut and np.array_equal(again.labels, res.labels)


def test_clusterability_validates_options_before_work():
    with pytest.raises(ValueError, match="null must be one of"):
        clusterability(chain([4, 3]), 2, null="bogus")
    with pytest.raises(ValueError, match="method must be one of"):
        clusterability(chain([4, 3]), 2, method="bogus")
    with pytest.raises(ValueError, match="n_workers"):
        clusterability(chain([4, 3]), 2, n_workers=0)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "net.npz"
    np.savez(path, *planted_network([12, 8, 8, 4], 2, seed=3))
    return path


def test_cli_json(npz, capsys):
    code = main(["cluster", str(npz), "-k", "2", "--samples", "4", "--seed", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("ncut", "ave_in_out", "labels", "null_mean", "null_std", "z", "p", "n_samples"):
        assert key in out
    assert len(out["labels"]) == 32
    assert out["n_samples"] == 4 and out["seed"] == 1 and out["method"] == "fast"


def test_cli_summary(npz, capsys):
    assert main(["cluster", str(npz), "-k", "2", "--samples", "3", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "n-cut" in text and "layers 12-8-8-4" in text and "p = 0.25" in text


def test_cli_plot_hook(npz, capsys, monkeypatch):
    import harness.report

    calls = []
    monkeypatch.setattr(
        harness.report,
        "plot_clusterability",
        lambda result, weights, path: calls.append((result, len(weights), path)),
        raising=False,
    )
    assert main(["cluster", str(npz), "-k", "2", "--samples", "0", "--plot", "out.png"]) == 0
    assert len(calls) == 1 and calls[0][1:] == (3, "out.png")
    assert isinstance(calls[0][0], ClusterabilityResult)


def _bad_inputs(tmp_path):
    nan = tmp_path / "nan.npz"
    w = np.ones((3, 2))
    w[0, 1] = np.nan
    np.savez(nan, w, np.ones((2, 2)))
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, np.ones((3, 4)), np.ones((5, 2)))
    good = tmp_path / "good.npz"
    np.savez(good, np.ones((3, 2)), np.ones((2, 2)))
    text = tmp_path / "w.csv"
    text.write_text("1,2")
    return [
        ([str(tmp_path / "missing.npz")], "no such file"),
        ([str(text)], "not a .npz file"),
        ([str(nan)], "non-finite"),
        ([str(shapes)], "layer 0 has 4 outputs but layer 1 expects 5 inputs"),
        ([str(good), "-k", "1"], "n_clusters must be >= 2"),
        ([str(good), "-k", "99"], "n_clusters=99"),
        ([str(good), "--samples", "-3"], "--samples"),
    ]


def test_cli_bad_input_exit_code_2(tmp_path, capsys):
    for args, message in _bad_inputs(tmp_path):
        assert main(["cluster", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (args, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("option", [["--null", "global"], ["--method", "slow"]])
def test_cli_closed_choices(npz, capsys, option):
    assert main(["cluster", str(npz), *option]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and err.startswith("error: ") and err.count("\n") == 1


def test_cli_choices_match_the_library():
    from harness.cli import METHOD_CHOICES, NULL_CHOICES
    from harness.cluster import METHODS
    from harness.nulls import NULL_METHODS

    assert tuple(NULL_CHOICES) == tuple(NULL_METHODS)
    assert tuple(METHOD_CHOICES) == tuple(METHODS)


@pytest.mark.integration
def test_cli_subprocess(npz, tmp_path):
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "cluster",
            str(npz),
            "-k",
            "2",
            "--samples",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["labels"]) == 32
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "cluster", str(tmp_path / "nope.npz")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "error: no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_plot_writes_the_clustered_network(npz, tmp_path):
    out = tmp_path / "net.png"
    assert main(["cluster", str(npz), "-k", "2", "--samples", "3", "--plot", str(out)]) == 0
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    assert pixels.shape[0] > 100 and pixels.std() > 0.01


@pytest.mark.parametrize(("content", "why"), [
    (b"", "the file is empty"),
    (b"W0 = [[1, 2], [3, 4]]\n", "neither the zip archive nor the pickle"),
])
def test_a_pt_that_is_no_checkpoint_is_one_clear_line(tmp_path, capsys, content, why):
    from harness.cli import main

    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=f"weights.pt: not a torch checkpoint \\({why}"):
        load_weights(path)
    assert main(["cluster", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a torch checkpoint" in err and err.count("\n") == 1


def test_save_weights_round_trips_and_never_leaves_half_a_file(tmp_path: Path) -> None:
    import harness

    weights = harness.random_mlp_weights([6, 5, 4], seed=0)
    path = harness.save_weights(tmp_path / "w.npz", weights)
    loaded = harness.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(weights, loaded, strict=True))
    with pytest.raises(ValueError, match="no weight matrices"):
        harness.save_weights(tmp_path / "empty.npz", [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npz"]
