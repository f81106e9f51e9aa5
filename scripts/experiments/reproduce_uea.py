"""Reproduce the paper's UEA experiment: the mvts-transformer protocol on every UEA set of ../shared/data that
belongs to the paper's benchmark, plus NATOPS, Epilepsy and ArticularyWordRecognition, for several attention
types and seeds, then render the accuracy table and plot.

Protocol (the paper's: mvts-transformer, Zerveas et al. 2021): the time-series training command (`hf_primaldual.cli.train_timeseries`) with its defaults —
d_model 64, 8 heads, 3 layers, feed-forward 256, dropout 0.1, batch norm, flattened output; RAdam, lr 1e-3,
batch 16, 100 epochs; the test split evaluated after every epoch; both the final-epoch and the best-epoch test
accuracy recorded. Nothing is tuned: every hyperparameter is the protocol's default, fixed before any run, and the
SH head scales are fixed once for all sets to (1, 1, 1, 2, 2, 2, 4, 4) (the package's default for 8 heads). No
choice looks at test accuracy.

Each finished run is appended to a JSON-lines results file; a run already in it is skipped, and a run cut short
goes on from its last epoch's checkpoint, so the script resumes where it stopped (run it in the background, across
sessions):

    nohup python scripts/reproduce_uea.py > uea.log 2>&1 &
    python scripts/reproduce_uea.py --render_only          # the table and plot from the runs so far
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from . import REPO
from .analysis import (
    PUBLISHED_SOFTMAX_UEA,
    SHORT_UEA_SETS,
    complete_units,
    read_runs,
    render_accuracy_table,
    render_paired_comparison,
    with_complete_reruns,
)

PAPER_SETS = ["JapaneseVowels", "SelfRegulationSCP1", "SelfRegulationSCP2", "Handwriting", "UWaveGestureLibrary"]
EXTRA_SETS = ["NATOPS", "Epilepsy", "ArticularyWordRecognition"]
TYPES = ["softmax", "linear", "bn", "sh", "bn_sh"]
SH_SCALES = [1, 1, 1, 2, 2, 2, 4, 4]


def run_key(record: dict) -> tuple[str, str, int]:
    return record["dataset"], record["attention_type"], int(record["seed"])


def train_once(dataset: str, attention_type: str, seed: int, args: argparse.Namespace) -> dict:
    """One protocol run in a fresh process; returns its `training_metrics.json`.

    The run checkpoints every epoch into ``args.work_dir`` and, started again after an interruption, resumes from
    its last checkpoint: a run longer than a session (SelfRegulationSCP2 on a CPU) finishes across sessions.
    """
    output = args.work_dir / f"{dataset}-{attention_type}-seed{seed}-{args.epochs}ep"
    command = [
        sys.executable, "-m", "hf_primaldual.cli.train_timeseries",
        "--dataset", dataset, "--data_dir", str(args.data_dir), "--attention_type", attention_type,
        "--seed", str(seed), "--output_dir", str(output), "--num_train_epochs", str(args.epochs),
        "--save_strategy", "epoch", "--save_total_limit", "1", "--disable_tqdm", "True", *args.extra,
    ]
    if attention_type.endswith("sh"):
        command += ["--head_scales", *map(str, SH_SCALES)]
    checkpoint = get_last_checkpoint(str(output)) if output.is_dir() else None
    if checkpoint:
        print(f"resuming from {checkpoint}", flush=True)
        command += ["--resume_from_checkpoint", checkpoint]
    # the run shares this process's working directory, so that relative paths in the arguments mean the same to it
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    metrics = json.loads((output / "training_metrics.json").read_text())
    # The final model stays (head redundancy and attention maps read it); only the resume checkpoints go.
    for checkpoint_dir in output.glob("checkpoint-*"):
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return metrics


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run what is missing, then render; 0. ``root``: where the default paths lie (default: the working directory;
    scripts/reproduce_uea.py passes the repository)."""
    root = REPO if root is None else root
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, default=root.parent / "shared" / "data" / "uea")
    parser.add_argument("--datasets", nargs="+", default=PAPER_SETS + EXTRA_SETS)
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--results", type=Path, default=root / "docs" / "results" / "uea_runs.jsonl")
    parser.add_argument("--report_dir", type=Path, default=root / "docs" / "results")
    parser.add_argument("--reruns", nargs="*", type=Path,
                        default=[root / "docs" / "results" / "uea_scp_kernel_runs.jsonl"],
                        help="records of sets re-run on another code path (the SCP sets on the CPU dropout kernel): "
                             "a set and seed with every --types there replaces its records of --results (the table; a long "
                             "set's seed 0 also pairs with the grid's seed 0 in uea_seed0_paired.md)")
    parser.add_argument("--work_dir", type=Path, default=root / "outputs" / "reproduce_uea",
                        help="one folder per run: its checkpoints, kept until the run is recorded (so an interrupted run "
                             "resumes), and its final model")
    parser.add_argument("--render_only", action="store_true", help="only render the table and plot")
    parser.add_argument("extra", nargs="*", help="after --: further arguments for train_timeseries.py")
    args = parser.parse_args(argv)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    done = {run_key(record) for record in read_runs(args.results)}
    # Seed-major order: a first complete pass over every set and type comes before the second seed.
    todo = [(d, t, s) for s in args.seeds for d in args.datasets for t in args.types if (d, t, s) not in done]
    if not args.render_only:
        print(f"{len(done)} runs in {args.results}; {len(todo)} to go", flush=True)
        for index, (dataset, attention_type, seed) in enumerate(todo, start=1):
            started = time.time()
            print(f"[{index}/{len(todo)}] {dataset} {attention_type} seed {seed}", flush=True)
            metrics = train_once(dataset, attention_type, seed, args)
            record = {
                "dataset": dataset, "attention_type": attention_type, "seed": seed, "epochs": args.epochs,
                "test_accuracy_final": metrics["test_accuracy_final"],
                "test_accuracy_best_epoch": metrics["test_accuracy_best_epoch"],
                "train_runtime_s": metrics["train_runtime_s"], "wall_s": round(time.time() - started, 1),
                "head_scales": SH_SCALES if attention_type.endswith("sh") else None,
            }
            with args.results.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)

    runs = read_runs(args.results)
    for path in args.reruns:
        runs = with_complete_reruns(runs, read_runs(path), args.types)
    title = "UEA, mvts-transformer protocol"
    print(render_accuracy_table(runs, args.report_dir, name="uea", datasets=args.datasets, types=args.types,
                                published=PUBLISHED_SOFTMAX_UEA, title=title))
    # Paired over the three-seed grid only: a long set's one or two seed-0 runs would weigh as much as a seed.
    grid_sets = [d for d in args.datasets if d in SHORT_UEA_SETS]
    print(render_paired_comparison(runs, args.report_dir, name="uea", types=args.types, datasets=grid_sets,
                                   title=f"{title}, {len(grid_sets)} sets x seeds"))
    # The long sets ran seed 0 only: they pair with the others in a seed-0 comparison, once all their types are in.
    seed0 = [r for r in runs if r["seed"] == 0]
    units = complete_units(seed0, args.types)
    complete = [d for d in args.datasets if (d, 0) in units]
    if set(complete) - set(grid_sets):
        print(render_paired_comparison(seed0, args.report_dir, name="uea_seed0", types=args.types,
                                       datasets=complete, title=f"{title}, seed 0, {len(complete)} sets"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
