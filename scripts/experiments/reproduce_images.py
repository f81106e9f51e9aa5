"""Reproduce the paper's image claim at CPU scale: a small ViT (32 px, patch 4) trained from scratch on
Fashion-MNIST and on the CIFAR-10 JPEG copy with softmax, bn, sh and bn_sh attention, the same budget for each,
over seeds; then the conversion path: a transformers ViTForImageClassification checkpoint trained here as softmax,
loaded as PrimalDualViT with Attention-BN, evaluated as is and after fine-tuning.

Two budgets, each fixed before any run and identical for every type (nothing is tuned on test accuracy); both
train a ViT with hidden size 96, 4 layers, 3 heads (SH scales 1, 2, 4), MLP 192 with AdamW, lr 1e-3, weight
decay 0.05, a cosine schedule with 10% warm-up, batch 128, and evaluate the test split after every epoch:

- ``small`` (default): patch 4 (64 patches), a fixed random subset of `--train_samples` training images for
  `--epochs` epochs, a fixed random subset of `--test_samples` test images;
- ``full``: patch 8 (16 patches, a quarter of the tokens, so that the whole training split fits a CPU budget),
  every training image for `--epochs` epochs (default 10), horizontal flips but no random crops (with crops of
  padding 4 this model underfits: softmax's training loss equalled its test loss and stayed near 0.6 after 6
  epochs), the whole test split.

Runs are appended to a JSON-lines file and skipped when already there, so the script resumes where it stopped.

    nohup python scripts/reproduce_images.py > images.log 2>&1 &
    nohup python scripts/reproduce_images.py --budget full --datasets fashion-mnist --seeds 0 > full.log 2>&1 &
    python scripts/reproduce_images.py --render_only

"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import REPO
from .analysis import read_runs, render_accuracy_table

# Where each dataset lies under --data_root (default ../shared/data/images).
DATASETS = {"fashion-mnist": "fashion-mnist", "cifar10-jpg": "cifar10-jpg/CIFAR-10-images.zip"}
TYPES = ["softmax", "bn", "sh", "bn_sh"]
MODEL = ["--image_size", "32", "--hidden_size", "96", "--num_hidden_layers", "4", "--num_attention_heads", "3",
         "--intermediate_size", "192"]


@dataclass(frozen=True)
class Budget:
    patch_size: int
    epochs: int  # the default of --epochs
    subset: bool  # fixed random subsets of --train_samples / --test_samples images, instead of the whole splits
    random_crop_padding: int


BUDGETS = {"small": Budget(patch_size=4, epochs=3, subset=True, random_crop_padding=4),
           "full": Budget(patch_size=8, epochs=10, subset=False, random_crop_padding=0)}


def train(dataset: Path, output: Path, seed: int, args: argparse.Namespace, *extra: str) -> dict:
    command = [
        sys.executable, "-m", "hf_primaldual.cli.train_image", "--dataset", str(dataset),
        "--output_dir", str(output), "--seed", str(seed), "--num_train_epochs", str(args.epochs),
        *(["--max_train_samples", str(args.train_samples), "--max_eval_samples", str(args.test_samples)]
          if BUDGETS[args.budget].subset else []),
        "--random_crop_padding", str(BUDGETS[args.budget].random_crop_padding),
        "--per_device_train_batch_size", "128", "--save_strategy", "no", "--disable_tqdm", "True", *extra,
    ]
    # the run shares this process's working directory, so that relative paths in the arguments mean the same to it
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads((output / "training_metrics.json").read_text())


def record_run(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)


def budget_of(record: dict) -> str:
    return record.get("budget", "small")  # rows written before the full budget existed


def scratch_runs(args: argparse.Namespace, done: set) -> None:
    todo = [(s, d, t) for s in args.seeds for d in args.datasets for t in args.types
            if ("scratch", args.budget, d, t, s) not in done]
    for index, (seed, dataset, attention_type) in enumerate(todo, start=1):
        print(f"[{index}/{len(todo)}] {dataset} {attention_type} seed {seed} ({args.budget} budget)", flush=True)
        suffix = "" if args.budget == "small" else f"-{args.budget}"
        output = args.work_dir / f"{dataset}-{attention_type}-{seed}{suffix}"
        started = time.time()
        extra = ["--attention_type", attention_type, "--patch_size", str(BUDGETS[args.budget].patch_size), *MODEL]
        if attention_type.endswith("sh"):
            extra += ["--head_scales", "1", "2", "4"]
        metrics = train(args.data_root / DATASETS[dataset], output, seed, args, *extra)
        record_run(args.results, {
            "experiment": "scratch", "budget": args.budget, "dataset": dataset, "attention_type": attention_type,
            "seed": seed, "epochs": args.epochs, "patch_size": BUDGETS[args.budget].patch_size,
            **({"train_samples": args.train_samples, "test_samples": args.test_samples} if BUDGETS[args.budget].subset
               else {"train_samples": "all", "test_samples": "all"}),
            "test_accuracy_final": metrics["test_accuracy_final"],
            "test_accuracy_best_epoch": metrics["test_accuracy_best_epoch"],
            "train_runtime_s": metrics["train_runtime_s"], "wall_s": round(time.time() - started, 1),
        })
        if not (attention_type == "softmax" and seed == args.seeds[0] and args.budget == "small"):
            shutil.rmtree(output, ignore_errors=True)  # the first softmax model is the conversion's starting point


def conversion_runs(args: argparse.Namespace, done: set) -> None:
    """Softmax-trained weights saved as a transformers ViT checkpoint, loaded as Attention-BN, fine-tuned."""
    import hf_primaldual  # noqa: F401
    from transformers import AutoImageProcessor, ViTForImageClassification

    from hf_primaldual.evaluation import evaluate_checkpoint

    seed = args.seeds[0]
    if args.budget != "small":  # the conversion starts from the small budget's first softmax model
        return
    for dataset in args.datasets:
        if ("conversion", "small", dataset, "bn", seed) in done:
            continue
        softmax_dir = args.work_dir / f"{dataset}-softmax-{seed}"
        if not (softmax_dir / "training_metrics.json").exists():
            continue
        vit_dir = args.work_dir / f"{dataset}-transformers-vit"
        ViTForImageClassification.from_pretrained(softmax_dir).save_pretrained(vit_dir)
        AutoImageProcessor.from_pretrained(softmax_dir).save_pretrained(vit_dir)
        switched_dir = args.work_dir / f"{dataset}-vit-as-bn"
        from hf_primaldual import PrimalDualViTForImageClassification

        PrimalDualViTForImageClassification.from_pretrained(vit_dir, attention_type="bn").save_pretrained(switched_dir)
        AutoImageProcessor.from_pretrained(vit_dir).save_pretrained(switched_dir)
        started = time.time()
        finetuned_dir = args.work_dir / f"{dataset}-finetuned-bn"
        train(args.data_root / DATASETS[dataset], finetuned_dir, seed, args, "--model_name_or_path", str(vit_dir),
              "--attention_type", "bn", "--learning_rate", "3e-4", "--num_train_epochs", str(args.finetune_epochs))

        def full_test_accuracy(checkpoint: Path) -> float:  # all three on the whole test split
            return evaluate_checkpoint(checkpoint, str(args.data_root / DATASETS[dataset]), batch_size=256).accuracy

        record_run(args.results, {
            "experiment": "conversion", "dataset": dataset, "attention_type": "bn", "seed": seed,
            "source": "transformers ViTForImageClassification trained here as softmax",
            "test_accuracy_softmax_source": full_test_accuracy(vit_dir),
            "test_accuracy_switched_no_training": full_test_accuracy(switched_dir),
            "test_accuracy_final": full_test_accuracy(finetuned_dir),
            "finetune_epochs": args.finetune_epochs, "wall_s": round(time.time() - started, 1),
        })


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Run what is missing, then render; 0. ``root``: where the default paths lie (default: the working directory;
    scripts/reproduce_images.py passes the repository)."""
    root = REPO if root is None else root
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", type=Path, default=root.parent / "shared" / "data" / "images")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--types", nargs="+", default=TYPES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", choices=tuple(BUDGETS), default="small", help="see above")
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (small budget), 10 (full)")
    parser.add_argument("--finetune_epochs", type=int, default=1)
    parser.add_argument("--train_samples", type=int, default=10000)
    parser.add_argument("--test_samples", type=int, default=2000)
    parser.add_argument("--results", type=Path, default=root / "docs" / "results" / "image_runs.jsonl")
    parser.add_argument("--report_dir", type=Path, default=root / "docs" / "results")
    parser.add_argument("--work_dir", type=Path, default=root / "outputs" / "reproduce_images")
    parser.add_argument("--render_only", action="store_true")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = BUDGETS[args.budget].epochs

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    runs = read_runs(args.results)
    done = {(r["experiment"], budget_of(r), r["dataset"], r["attention_type"], r["seed"]) for r in runs}
    if not args.render_only:
        scratch_runs(args, done)
        conversion_runs(args, done)
        runs = read_runs(args.results)
    scratch = [r for r in runs if r["experiment"] == "scratch" and budget_of(r) == args.budget]
    if args.budget == "full":
        print(render_accuracy_table(
            scratch, args.report_dir, name="image_full", datasets=args.datasets, types=args.types,
            title="ViT 32 px / patch 8, full budget (whole training split), same budget per type",
        ))
        return 0
    table = render_accuracy_table(
        scratch, args.report_dir, name="image", datasets=args.datasets, types=args.types,
        title="ViT 32 px / patch 4, small budget (a training subset, 3 epochs), same budget per type",
    )
    conversions = [r for r in runs if r["experiment"] == "conversion"]
    if conversions:
        table += "\n### Conversion: transformers ViT (trained as softmax) -> Attention-BN\n\n"
        table += "Test accuracy (%) on the whole test split.\n\n"
        table += "| dataset | softmax source | switched to bn, no training | bn after fine-tuning (epochs) |\n|---|---|---|---|\n"
        for r in conversions:
            table += (f"| {r['dataset']} | {100 * r['test_accuracy_softmax_source']:.1f} | "
                      f"{100 * r['test_accuracy_switched_no_training']:.1f} | "
                      f"{100 * r['test_accuracy_final']:.1f} ({r['finetune_epochs']}) |\n")
        (args.report_dir / "image_table.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
