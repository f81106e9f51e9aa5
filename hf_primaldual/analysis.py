"""Analysis of experiment results: accuracy tables (mean +- std over seeds) and their plots."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

# Softmax-transformer test accuracy (%) on the mvts-transformer protocol, as published (Flowformer's table; SPEC.md).
PUBLISHED_SOFTMAX_UEA = {
    "EthanolConcentration": 32.7,
    "FaceDetection": 67.3,
    "Handwriting": 32.0,
    "Heartbeat": 76.1,
    "JapaneseVowels": 98.7,
    "PEMS-SF": 82.1,
    "SelfRegulationSCP1": 92.2,
    "SelfRegulationSCP2": 53.9,
    "SpokenArabicDigits": 98.4,
    "UWaveGestureLibrary": 85.6,
}


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), in the values' units."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean, std = mean_std([100 * v for v in values])
    return f"{mean:.1f} ± {std:.1f} ({len(values)})"


def render_uea_results(
    runs: Iterable[dict],
    report_dir: str | os.PathLike,
    *,
    published: dict[str, float],
    datasets: Sequence[str],
    types: Sequence[str],
) -> str:
    """Write ``uea_table.md`` and ``uea_accuracy.png`` into ``report_dir`` and return the table.

    Each cell is the mean ± std over seeds of the test accuracy (%), with the number of seeds in brackets, for the
    final epoch and for the best epoch (the protocol's number). The average row averages the per-set means over the
    sets where every type has at least one run.
    """
    by_cell: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"final": [], "best": []})
    for run in runs:
        cell = by_cell[run["dataset"], run["attention_type"]]
        cell["final"].append(run["test_accuracy_final"])
        cell["best"].append(run["test_accuracy_best_epoch"])

    lines = []
    for measure, title in (("final", "final-epoch"), ("best", "best-epoch")):
        lines += [
            f"### Test accuracy (%), {title}: mean ± std over seeds (seeds)",
            "",
            "| dataset | published softmax | " + " | ".join(types) + " |",
            "|---|---|" + "---|" * len(types),
        ]
        complete = [d for d in datasets if all(by_cell[d, t][measure] for t in types)]
        for dataset in datasets:
            reference = published.get(dataset)
            row = [dataset, f"{reference:.1f}" if reference is not None else "–"]
            row += [_cell(by_cell[dataset, t][measure]) for t in types]
            lines.append("| " + " | ".join(row) + " |")
        if complete:
            averages = [np.mean([100 * np.mean(by_cell[d, t][measure]) for d in complete]) for t in types]
            published_average = [published[d] for d in complete if d in published]
            reference = f"{np.mean(published_average):.1f}" if len(published_average) == len(complete) else "–"
            lines.append(
                f"| average over {len(complete)} complete sets | {reference} | "
                + " | ".join(f"{a:.1f}" for a in averages) + " |"
            )
        lines.append("")
    table = "\n".join(lines)

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "uea_table.md").write_text(table)
    _plot_grouped_bars(by_cell, datasets, types, published, report_dir / "uea_accuracy.png")
    return table


def _plot_grouped_bars(by_cell, datasets, types, published, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [d for d in datasets if any(by_cell[d, t]["final"] for t in types)]
    if not shown:
        return
    figure, axes = plt.subplots(figsize=(1.6 * len(shown) + 2, 4.2))
    width = 0.8 / len(types)
    positions = np.arange(len(shown))
    for index, attention_type in enumerate(types):
        stats = [mean_std([100 * v for v in by_cell[d, attention_type]["final"]]) if by_cell[d, attention_type]["final"]
                 else (np.nan, 0.0) for d in shown]
        axes.bar(positions + index * width, [s[0] for s in stats], width, yerr=[s[1] for s in stats],
                 label=attention_type, capsize=2)
    for position, dataset in zip(positions, shown):
        if dataset in published:
            axes.hlines(published[dataset], position - 0.05, position + 0.85, colors="black", linestyles="dashed")
    axes.set_xticks(positions + 0.4 - width / 2, shown, rotation=20, ha="right")
    axes.set_ylabel("test accuracy (%), final epoch")
    axes.set_title("UEA, mvts-transformer protocol: mean ± std over seeds (dashed: published softmax)")
    axes.legend(ncols=len(types), fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
