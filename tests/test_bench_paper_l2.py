"""bench/paper_l2.py: its variants are configs the harness knows, bad input is one line, and
the summary puts the paper's row above ours and says whether ours reproduces it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import paper_l2
from harness.configs import config_for_tag


def test_variants_are_valid_configs_with_distinct_keys() -> None:
    configs = {v: config_for_tag("MNIST+L2REG").replace(**o) for v, o in paper_l2.VARIANTS.items()}
    assert configs["paper"] == config_for_tag("MNIST+L2REG")
    assert configs["l2-all"] == config_for_tag("MNIST+L2REG-ALL")
    assert len(set(configs.values())) == len(configs)


@pytest.mark.parametrize(
    "argv, message",
    [(["--variants", "paper,bogus"], "unknown variant(s) ['bogus']"),
     (["--instances", "0"], "--instances and --workers must be >= 1")],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(argv, message, tmp_path: Path, capsys) -> None:
    assert paper_l2.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_summary_puts_the_papers_row_first() -> None:
    rows = [
        {"tag": "MNIST+L2REG", "variant": "paper", "instance": i, "phase": "pruned",
         "isolation": "negligible", "ncut": 9.4 + 0.2 * i, "null_mean": 7.9, "null_std": 0.1,
         "z": 14.0, "p": 1.0, "is_sig": False, "n_removed": 30, "test_acc": 0.98, "wall_s": 1.0}
        for i in range(2)
    ]  # fmt: skip
    lines = paper_l2.summary(rows).splitlines()
    assert lines[2].startswith("| MNIST+L2REG | pruned | **paper** | exact-zero | 5 | 8.335 | 1.880 | 8.599")
    assert lines[3] == (
        "| MNIST+L2REG | pruned | paper | negligible | 2 | 9.500 | 0.141 | 7.900 | 14.0 | 0 | 2 | 0.980 "
        "| no: n-cut +1.165 beyond ±0.417; significant in 0 of 2 (paper 3 of 5) |"
    )
    assert paper_l2.summary([]) == "No network finished.\n"


@pytest.mark.parametrize(
    "ncut, n_sig, expected",
    [(8.335 + 0.41, 3, "reproduced"),  # within the capped tolerance, 3 of 5 as the paper
     (8.335 - 0.42, 4, "no: n-cut -0.420 beyond ±0.417"),
     (8.335, 2, "no: significant in 2 of 5 (paper 3 of 5)"),
     (9.7, 0, "no: n-cut +1.365 beyond ±0.417; significant in 0 of 5 (paper 3 of 5)")],
)  # fmt: skip
def test_fidelity_needs_the_tolerance_and_the_significance_pattern(ncut, n_sig, expected) -> None:
    paper = {"ncut": 8.335, "ncut_sd": 1.88, "n_sig": 3.0, "n": 5.0}  # MNIST+L2REG pruned
    assert paper_l2.fidelity(ncut, n_sig, 5, paper) == expected


def test_summarize_rewrites_the_table_from_the_csv(tmp_path: Path, capsys) -> None:
    assert paper_l2.main(["--out", str(tmp_path), "--summarize"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    row = {"tag": "FASHION+L2REG", "variant": "l2-all", "instance": 0, "phase": "pruned",
           "isolation": "negligible", "ncut": 8.6, "null_mean": 9.0, "null_std": 0.04, "z": -10.0,
           "p": 0.02, "is_sig": True, "n_removed": 3, "test_acc": 0.89, "wall_s": 1.0}  # fmt: skip
    (tmp_path / "l2_variants.csv").write_text(",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")
    assert paper_l2.main(["--out", str(tmp_path), "--summarize"]) == 0
    assert "| FASHION+L2REG | pruned | l2-all | negligible | 1 | 8.600 |" in (tmp_path / "l2_variants.md").read_text()
