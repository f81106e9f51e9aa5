#!/usr/bin/env python
"""Accuracy and confusion matrix of a checkpoint folder or Hub id on a dataset split.

    python scripts/evaluate.py outputs/timeseries-JapaneseVowels-bn JapaneseVowels
    python scripts/evaluate.py outputs/image-fashion-mnist-bn ../shared/data/images/fashion-mnist
    python scripts/evaluate.py org/model SelfRegulationSCP2 --data_dir ../shared/data/uea --revision v1 \
        --trust_remote_code     # without the package installed: the checkpoint's own code
"""

from __future__ import annotations

import sys
from pathlib import Path

# scripts/evaluate.py shares its name with the `evaluate` library: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json

from hf_primaldual.evaluation import evaluate_checkpoint, plot_confusion_matrix


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="output folder or Hub repository id")
    parser.add_argument("dataset", help="UEA problem name (time series) or image dataset folder/zip/Hub name")
    parser.add_argument("--data_dir", help="UEA archive folder (default: the shipped data)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--output", help="confusion-matrix PNG (default: <checkpoint folder or .>/confusion_matrix.png)")
    args = parser.parse_args(argv)

    result = evaluate_checkpoint(
        args.checkpoint, args.dataset, split=args.split, data_dir=args.data_dir, batch_size=args.batch_size,
        revision=args.revision, trust_remote_code=args.trust_remote_code,
    )
    local = Path(args.checkpoint)
    output = Path(args.output) if args.output else (local if local.is_dir() else Path(".")) / "confusion_matrix.png"
    plot_confusion_matrix(result, output, title=f"{Path(args.checkpoint).name} on {args.dataset} ({args.split}): "
                                                f"accuracy {result.accuracy:.4f}")
    summary = {"checkpoint": str(args.checkpoint), "dataset": args.dataset, "split": args.split,
               "accuracy": result.accuracy, "examples": len(result.labels), "confusion_matrix": str(output)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
