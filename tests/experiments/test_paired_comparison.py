"""The paired comparison of each attention type against softmax over (dataset, seed) pairs, against values worked
out by hand."""

from __future__ import annotations

import pytest

from experiments.analysis import paired_comparison, render_paired_comparison


def run(dataset, attention_type, seed, final, best=None):
    return {"dataset": dataset, "attention_type": attention_type, "seed": seed, "test_accuracy_final": final,
            "test_accuracy_best_epoch": final if best is None else best}


RUNS = [
    # bn beats softmax by 1, 2, 3 and 4 points on four (set, seed) pairs; sh ties one, loses one
    run("A", "softmax", 0, 0.50), run("A", "bn", 0, 0.51), run("A", "sh", 0, 0.50),
    run("A", "softmax", 1, 0.60), run("A", "bn", 1, 0.62), run("A", "sh", 1, 0.58),
    run("B", "softmax", 0, 0.70), run("B", "bn", 0, 0.73),
    run("B", "softmax", 1, 0.80), run("B", "bn", 1, 0.84),
    run("C", "bn", 0, 0.99),  # no softmax run for this pair: left out
]


def test_paired_differences_wins_interval_and_exact_wilcoxon():
    bn, sh = paired_comparison(RUNS, ["softmax", "bn", "sh"])
    assert (bn["pairs"], bn["datasets"], bn["wins"], bn["ties"], bn["losses"]) == (4, 2, 4, 0, 0)
    assert bn["mean_difference"] == pytest.approx(2.5)
    # sd of (1, 2, 3, 4) = sqrt(5/3); t(0.975, 3) = 3.18245
    half_width = 3.182446305284263 * (5 / 3) ** 0.5 / 2
    assert bn["ci95"] == pytest.approx((2.5 - half_width, 2.5 + half_width))
    # four positive differences: the exact two-sided p is 2 * (1/2)^4
    assert bn["wilcoxon_p"] == pytest.approx(0.125)
    assert (sh["pairs"], sh["wins"], sh["ties"], sh["losses"]) == (2, 0, 1, 1)
    assert sh["mean_difference"] == pytest.approx(-1.0) and sh["wilcoxon_p"] is None  # one non-zero pair


def test_the_rendered_table_and_plot(tmp_path):
    table = render_paired_comparison(RUNS, tmp_path, name="toy", types=["softmax", "bn", "sh"])
    assert "| bn | final | 4 (2) | 4 / 0 / 0 | +2.50 [" in table and "| 0.125 |" in table
    assert (tmp_path / "toy_paired.md").read_text() == table
    assert (tmp_path / "toy_paired.png").stat().st_size > 5_000
