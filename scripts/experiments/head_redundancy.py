"""Head redundancy of trained checkpoints (the paper's head-redundancy measure): per layer, how far apart the
attention of the heads is, averaged over pairs of heads and over test inputs.

The measure (`experiments.analysis.pairwise_head_distance`): for heads h != h' of a layer, the mean over real
query positions i of the Euclidean distance between their attention distributions over the keys,
||A_h[i, :] - A_h'[i, :]||_2, averaged over all pairs of heads and then over inputs (0: identical heads, at most
sqrt(2)). Attention-SH heads attend to pooled keys; their probabilities are brought to the original keys by
spreading each pooled slot's weight evenly over its real members, which for mean pooling is exactly the map that
reproduces the head's output, so heads of every scale compare on the same N x N maps.

    python scripts/head_redundancy.py outputs/ts-softmax outputs/ts-bn outputs/ts-bn_sh --dataset JapaneseVowels
    python scripts/head_redundancy.py outputs/img-* --dataset ../shared/data/images/fashion-mnist --max_examples 500

Writes `head_redundancy.json`, `head_redundancy.png` (one line per checkpoint) and, per checkpoint,
`attention_maps-<name>.png` (every head of every layer for the first test input) into --output_dir.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .analysis import eager_attention, head_redundancy, plot_attention_maps, plot_head_redundancy
from hf_primaldual.evaluation import load_checkpoint_data


def run(argv: list[str] | None = None) -> dict:
    """Measure, plot and write the results; the mean distances per checkpoint and layer."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="output folders or Hub ids")
    parser.add_argument("--dataset", required=True, help="UEA problem name or image dataset folder/zip")
    parser.add_argument("--data_dir", help="UEA archive folder (default: the shipped data)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--max_examples", type=int, default=256)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/head_redundancy"))
    args = parser.parse_args(argv)

    args.output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for checkpoint in args.checkpoints:
        data = load_checkpoint_data(checkpoint, args.dataset, split=args.split, data_dir=args.data_dir,
                                    batch_size=args.batch_size)
        name = f"{Path(checkpoint).name} ({data.model.config.attention_type})"
        results[name] = head_redundancy(data, args.max_examples)
        first = data.example_batch(0)  # alone, so that it is not padded
        first.pop("labels")
        with torch.inference_mode(), eager_attention(data.model):
            attentions = data.model(**first, output_attentions=True).attentions
        plot_attention_maps([a[0] for a in attentions], args.output_dir / f"attention_maps-{Path(checkpoint).name}.png",
                            title=f"{name}: attention of each head, first {args.split} input")
        print(json.dumps({name: results[name]}))

    plot_head_redundancy(results, args.output_dir / "head_redundancy.png",
                         title=f"Head redundancy on {Path(args.dataset).name} ({args.split})")
    (args.output_dir / "head_redundancy.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output_dir / "head_redundancy.md").write_text(redundancy_table(results, args.checkpoints))
    return results


def redundancy_table(results: dict[str, dict], checkpoints: list[str]) -> str:
    """Markdown: one row per checkpoint (its recorded test accuracy, when it has one), mean ± std per layer."""
    layers = max(len(result["mean"]) for result in results.values())
    lines = ["| model | test accuracy | " + " | ".join(f"layer {i + 1}" for i in range(layers)) + " |",
             "|---|---|" + "---|" * layers]
    for (name, result), checkpoint in zip(results.items(), checkpoints):
        metrics = Path(checkpoint, "training_metrics.json")
        accuracy = (f"{100 * json.loads(metrics.read_text())['test_accuracy_final']:.2f}%"
                    if metrics.is_file() else "–")
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(result["mean"], result["std"])]
        lines.append(f"| {name} | {accuracy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
