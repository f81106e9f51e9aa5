"""Analysis of experiment results: accuracy tables (mean +- std over seeds), head redundancy, and their plots."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

# Softmax-transformer test accuracy (%) on the mvts-transformer protocol, as published (Flowformer's table, as the paper cites it).
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

# The UEA sets the three-seed grid covers: every set whose 100-epoch run takes minutes on one CPU core.
SHORT_UEA_SETS = ["JapaneseVowels", "NATOPS", "Epilepsy", "ArticularyWordRecognition", "Handwriting",
                  "UWaveGestureLibrary"]


def read_runs(path: str | os.PathLike) -> list[dict]:
    """The records of a JSON-lines results file (one finished run per line); none if it does not exist yet."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def complete_units(runs: Iterable[dict], types: Sequence[str]) -> set[tuple[str, int]]:
    """The (dataset, seed) pairs of ``runs`` that have a run of every one of ``types``."""
    present: dict[tuple[str, int], set[str]] = defaultdict(set)
    for record in runs:
        present[record["dataset"], record["seed"]].add(record["attention_type"])
    return {unit for unit, have in present.items() if set(types) <= have}


def with_complete_reruns(runs: Iterable[dict], reruns: Iterable[dict], types: Sequence[str]) -> list[dict]:
    """``runs`` with each (dataset, seed) that ``reruns`` holds for every one of ``types`` taken from ``reruns``
    instead: a set re-run on another code path joins a table whole, so that no row mixes the two paths; a rerun
    that is not complete yet stays out."""
    reruns = list(reruns)
    complete = complete_units(reruns, types)
    return ([r for r in runs if (r["dataset"], r["seed"]) not in complete]
            + [r for r in reruns if (r["dataset"], r["seed"]) in complete])


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value), in the values' units."""
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "–"
    mean, std = mean_std([100 * v for v in values])
    if len(values) == 1:  # one seed has no spread to report
        return f"{mean:.1f} (1)"
    return f"{mean:.1f} ± {std:.1f} ({len(values)})"


def render_accuracy_table(
    runs: Iterable[dict],
    report_dir: str | os.PathLike,
    *,
    name: str,
    datasets: Sequence[str],
    types: Sequence[str],
    published: dict[str, float] | None = None,
    title: str = "",
) -> str:
    """Write ``<name>_table.md`` and ``<name>_accuracy.png`` into ``report_dir`` and return the table.

    Each cell is the mean ± std over seeds of the test accuracy (%), with the number of seeds in brackets, for the
    final epoch and for the best epoch (the protocol's number). The average row averages the per-set means over the
    sets where every type has at least one run.

    Args:
        runs: records with ``dataset``, ``attention_type``, ``test_accuracy_final``, ``test_accuracy_best_epoch``.
        published: reference accuracies (%) per dataset, shown in their own column and as dashes on the plot.
    """
    published = published or {}
    by_cell: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"final": [], "best": []})
    for run in runs:
        cell = by_cell[run["dataset"], run["attention_type"]]
        cell["final"].append(run["test_accuracy_final"])
        cell["best"].append(run["test_accuracy_best_epoch"])

    lines = []
    for measure, label in (("final", "final-epoch"), ("best", "best-epoch")):
        reference_column = ["published softmax"] if published else []
        lines += [
            f"### Test accuracy (%), {label}: mean ± std over seeds (seeds)",
            "",
            "| " + " | ".join(["dataset", *reference_column, *types]) + " |",
            "|---|" + "---|" * (len(reference_column) + len(types)),
        ]
        complete = [d for d in datasets if all(by_cell[d, t][measure] for t in types)]
        for dataset in datasets:
            reference = published.get(dataset)
            row = [dataset] + ([f"{reference:.1f}" if reference is not None else "–"] if published else [])
            row += [_cell(by_cell[dataset, t][measure]) for t in types]
            lines.append("| " + " | ".join(row) + " |")
        if complete:
            averages = [np.mean([100 * np.mean(by_cell[d, t][measure]) for d in complete]) for t in types]
            published_average = [published[d] for d in complete if d in published]
            reference = f"{np.mean(published_average):.1f}" if len(published_average) == len(complete) else "–"
            row = [f"average over {len(complete)} complete sets", *([reference] if published else [])]
            lines.append("| " + " | ".join(row + [f"{a:.1f}" for a in averages]) + " |")
        lines.append("")
    table = "\n".join(lines)

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{name}_table.md").write_text(table)
    _plot_grouped_bars(by_cell, datasets, types, published, report_dir / f"{name}_accuracy.png", title)
    return table


def _plot_grouped_bars(by_cell, datasets, types, published, path: Path, title: str) -> None:
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
    axes.set_title(f"{title}: mean ± std over seeds" + (" (dashed: published softmax)" if published else ""),
                   fontsize=10)
    axes.legend(ncols=len(types), fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------------------------
# Paired comparison against a baseline type
# ----------------------------------------------------------------------------------------------------------------


def paired_comparison(
    runs: Iterable[dict], types: Sequence[str], *, baseline: str = "softmax", measure: str = "final",
    datasets: Sequence[str] | None = None,
) -> list[dict]:
    """Each type against ``baseline`` over every (dataset, seed) pair that has runs of both.

    Per type: the number of pairs, wins / ties / losses (accuracy differences in percentage points, a tie being an
    equal accuracy), the mean difference with its 95% t-interval, and the two-sided Wilcoxon signed-rank p-value
    (zero differences dropped, Wilcoxon's treatment; None below two non-zero pairs).
    """
    from scipy import stats

    key = {"final": "test_accuracy_final", "best": "test_accuracy_best_epoch"}[measure]
    accuracy = {(r["dataset"], r["attention_type"], int(r["seed"])): 100 * r[key] for r in runs}
    rows = []
    for attention_type in types:
        if attention_type == baseline:
            continue
        pairs = sorted((d, s) for d, t, s in accuracy if t == attention_type and (d, baseline, s) in accuracy
                       and (datasets is None or d in datasets))
        differences = np.array([accuracy[d, attention_type, s] - accuracy[d, baseline, s] for d, s in pairs])
        row = {"attention_type": attention_type, "baseline": baseline, "measure": measure, "pairs": len(pairs),
               "datasets": len({d for d, _ in pairs}),
               "wins": int((differences > 1e-9).sum()), "ties": int((np.abs(differences) <= 1e-9).sum()),
               "losses": int((differences < -1e-9).sum()),
               "mean_difference": float(differences.mean()) if len(pairs) else None,
               "ci95": None, "wilcoxon_p": None}
        if len(pairs) > 1:
            half_width = stats.t.ppf(0.975, len(pairs) - 1) * differences.std(ddof=1) / np.sqrt(len(pairs))
            row["ci95"] = (row["mean_difference"] - half_width, row["mean_difference"] + half_width)
        if (np.abs(differences) > 1e-9).sum() >= 2:
            row["wilcoxon_p"] = float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)
        rows.append(row)
    return rows


def render_paired_comparison(
    runs: Iterable[dict], report_dir: str | os.PathLike, *, name: str, types: Sequence[str],
    baseline: str = "softmax", datasets: Sequence[str] | None = None, title: str = "",
) -> str:
    """Write ``<name>_paired.md`` and ``<name>_paired.png`` (mean difference and 95% interval per type, final and
    best epoch) into ``report_dir`` and return the table."""
    runs = list(runs)
    results = {m: paired_comparison(runs, types, baseline=baseline, measure=m, datasets=datasets)
               for m in ("final", "best")}
    lines = [f"### Each type against {baseline}, paired over (dataset, seed): accuracy difference (points)", "",
             "| type | epoch | pairs (sets) | wins / ties / losses | mean difference [95% interval] | Wilcoxon p |",
             "|---|---|---|---|---|---|"]
    for measure, label in (("final", "final"), ("best", "best")):
        for row in results[measure]:
            interval = "–" if row["ci95"] is None else f"[{row['ci95'][0]:+.2f}, {row['ci95'][1]:+.2f}]"
            mean = "–" if row["mean_difference"] is None else f"{row['mean_difference']:+.2f}"
            p = "–" if row["wilcoxon_p"] is None else f"{row['wilcoxon_p']:.3f}"
            lines.append(f"| {row['attention_type']} | {label} | {row['pairs']} ({row['datasets']}) | "
                         f"{row['wins']} / {row['ties']} / {row['losses']} | {mean} {interval} | {p} |")
    table = "\n".join(lines) + "\n"
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{name}_paired.md").write_text(table)
    _plot_paired(results, report_dir / f"{name}_paired.png", baseline, title)
    return table


def _plot_paired(results: dict[str, list[dict]], path: Path, baseline: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["final"] if r["mean_difference"] is not None]
    if not rows:
        return
    figure, axes = plt.subplots(figsize=(6, 0.6 * len(rows) + 1.6))
    for offset, (measure, colour) in zip((-0.12, 0.12), (("final", "tab:blue"), ("best", "tab:orange"))):
        for index, row in enumerate(r for r in results[measure] if r["mean_difference"] is not None):
            low, high = row["ci95"] or (row["mean_difference"], row["mean_difference"])
            axes.errorbar(row["mean_difference"], index + offset, xerr=[[row["mean_difference"] - low],
                          [high - row["mean_difference"]]], fmt="o", color=colour, capsize=3,
                          label=f"{measure} epoch" if index == 0 else None)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_yticks(range(len(rows)), [f"{r['attention_type']} (n={r['pairs']})" for r in rows])
    axes.set_xlabel(f"accuracy - {baseline} accuracy (points), mean and 95% interval over (set, seed) pairs")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------------------------
# Head redundancy
# ----------------------------------------------------------------------------------------------------------------


def pairwise_head_distance(attention: torch.Tensor, query_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The distance between the heads of one layer, per example.

    For heads ``h != h'`` of a layer with attention probabilities ``A_h`` (rows: queries, columns: keys), the
    distance is the mean over the real queries ``i`` of the Euclidean distance between the two heads' attention
    distributions, ``||A_h[i, :] - A_h'[i, :]||_2``; the result is its mean over the ``H (H - 1) / 2`` pairs. It is 0
    for identical heads (fully redundant) and at most ``sqrt(2)`` (disjoint one-hot attention). Padded keys carry
    no probability, so they add nothing.

    Args:
        attention: ``(B, H, N, N)`` probabilities, as ``output_attentions=True`` returns them. For Attention-SH
            heads they are over the original keys (each pooled slot's weight spread over its members, which for
            mean pooling reproduces the head's output exactly), so heads of different scales compare directly.
        query_mask: ``(B, N)`` boolean, ``True`` for real queries.

    Returns:
        ``(B,)`` distances.
    """
    batch, heads, length, _ = attention.shape
    attention = attention.float()
    first, second = torch.triu_indices(heads, heads, offset=1)
    distances = (attention[:, first] - attention[:, second]).norm(dim=-1)  # (B, pairs, N)
    weights = torch.ones(batch, length) if query_mask is None else query_mask.float()
    per_pair = (distances * weights[:, None, :]).sum(-1) / weights.sum(-1, keepdim=True)
    return per_pair.mean(dim=1)


@contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """The model with ``attn_implementation="eager"`` inside the block (attention matrices are materialised and
    returned by ``output_attentions=True``), its own implementation after it."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)


def head_redundancy(data, max_examples: int = 256) -> dict[str, list[float]]:
    """Per layer, the mean and std over ``max_examples`` inputs of :func:`pairwise_head_distance`.

    Args:
        data: a :class:`hf_primaldual.evaluation.CheckpointData` (a model and a prepared dataset split).
    """
    per_layer: list[list[torch.Tensor]] = []
    with torch.inference_mode(), eager_attention(data.model):
        for batch in data.batches(limit=max_examples):
            batch.pop("labels", None)
            attentions = data.model(**batch, output_attentions=True).attentions
            query_mask = batch.get("attention_mask")
            for layer, attention in enumerate(attentions):
                mask = query_mask
                if mask is not None and mask.shape[1] != attention.shape[-1]:  # a class token in front
                    mask = torch.nn.functional.pad(mask, (attention.shape[-1] - mask.shape[1], 0), value=1)
                if len(per_layer) <= layer:
                    per_layer.append([])
                per_layer[layer].append(pairwise_head_distance(attention, None if mask is None else mask.bool()))
    values = [torch.cat(layer) for layer in per_layer]
    return {
        "mean": [float(v.mean()) for v in values],
        "std": [float(v.std()) if len(v) > 1 else 0.0 for v in values],
        "examples": int(values[0].numel()),
    }


def plot_head_redundancy(results: dict[str, dict[str, list[float]]], path: str | os.PathLike, title: str) -> Path:
    """One line per model: mean ± std head distance against layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4))
    for name, result in results.items():
        layers = np.arange(1, len(result["mean"]) + 1)
        mean, std = np.asarray(result["mean"]), np.asarray(result["std"])
        axes.plot(layers, mean, marker="o", label=name)
        axes.fill_between(layers, mean - std, mean + std, alpha=0.15)
    axes.set_xlabel("layer")
    axes.set_ylabel("mean L2 distance between heads' attention\n(higher = less redundant)")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_attention_maps(attentions: Sequence[torch.Tensor], path: str | os.PathLike, title: str) -> Path:
    """The attention map of every head of every layer for one input: ``attentions[l]`` is ``(H, N, N)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, heads = len(attentions), attentions[0].shape[0]
    figure, grid = plt.subplots(layers, heads, figsize=(2.2 * heads, 2.2 * layers), squeeze=False)
    for layer, attention in enumerate(attentions):
        for head in range(heads):
            axes = grid[layer][head]
            axes.imshow(attention[head].float().numpy(), cmap="viridis", interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if layer == 0:
                axes.set_title(f"head {head + 1}", fontsize=9)
            if head == 0:
                axes.set_ylabel(f"layer {layer + 1}", fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
