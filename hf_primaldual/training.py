"""What the training scripts share: offline accuracy through `evaluate`, the epoch-by-epoch test history, and the
hub-ready output folder (weights, config with auto_map and code, processor, metrics JSON, model card), written
so that a failure leaves no half-finished folder behind."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
from transformers import EvalPrediction, IntervalStrategy, Trainer, TrainingArguments
from transformers.trainer_utils import SaveStrategy, get_last_checkpoint

FINAL_FILES_MARKER = "training_metrics.json"


@dataclass
class AttentionArguments:
    """The attention of the primal-dual family, from the command line (fields of `PrimalDualAttentionConfig`)."""

    attention_type: str = field(
        default="softmax",
        metadata={"help": "softmax, linear, sparse, bn, sh, bn_sh, linear_bn, linear_sh or linear_bn_sh"},
    )
    head_scales: list[int] | None = field(default=None, metadata={"help": "SH: one pooling factor per head"})
    sh_pooling: str = field(default="mean", metadata={"help": "SH: mean or max pooling"})
    attention_window: int = field(default=16, metadata={"help": "sparse: keys on each side of a query"})
    bn_mean_weight: float = field(default=1.0, metadata={"help": "BN: weight of the keys' mean subtracted"})
    bn_use_std: bool = field(default=True, metadata={"help": "BN: divide by the keys' standard deviation"})

    def config_kwargs(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EpochTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults of the project's scripts: evaluate, checkpoint and log every epoch,
    keep the two newest checkpoints, no pinned memory (CPU)."""

    output_dir: str | None = None
    eval_strategy: IntervalStrategy | str = "epoch"
    save_strategy: SaveStrategy | str = "epoch"
    logging_strategy: IntervalStrategy | str = "epoch"
    save_total_limit: int | None = 2
    dataloader_pin_memory: bool = False

    def __post_init__(self):
        # On a machine without an accelerator, transformers only sets up a multi-process (gloo) run under
        # `accelerate launch` when told it is on CPU.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


def set_default_output_dir(args: TrainingArguments, name: str) -> None:
    """Give a run without ``--output_dir`` the folder ``outputs/<name>`` (transformers would pick `trainer_output`)."""
    if args.output_dir in (None, "trainer_output"):
        args.output_dir = str(Path("outputs") / name)


def split_for_selection(train: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """``(train, validation)``: a stratified ``fraction`` of the training split held out to select the best epoch,
    or ``(train, None)`` for ``fraction == 0`` (the test split is then evaluated every epoch, as the paper's
    protocol does, and the final epoch is kept)."""
    if fraction <= 0:
        return train, None
    held_out = train.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    return held_out["train"], held_out["test"]


def train_and_test(trainer: Trainer, test: datasets.Dataset) -> dict[str, Any]:
    """Train (resuming as ``--resume_from_checkpoint`` says), evaluate the final model on ``test``, and return the
    run's metrics: final test accuracy, and the best epoch's test (protocol) or validation accuracy.

    The per-epoch evaluations are read from ``trainer.state.log_history``, which the Trainer restores from the
    checkpoint it resumes from: the best epoch of a run resumed across sessions is the best of all its epochs.
    """
    args = trainer.args
    train_result = trainer.train(resume_from_checkpoint=resolve_resume(args))
    epochs = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    best = max(epochs, key=lambda entry: entry["eval_accuracy"]) if epochs else None
    test_metrics = trainer.evaluate(test, metric_key_prefix="test")
    metrics: dict[str, Any] = {
        "seed": args.seed,
        "epochs": args.num_train_epochs,
        "train_runtime_s": train_result.metrics["train_runtime"],
        "global_step": trainer.state.global_step,
        "world_size": args.world_size,
        "test_accuracy_final": test_metrics["test_accuracy"],
    }
    if args.load_best_model_at_end:
        metrics["selection"] = "best validation epoch"
        metrics["validation_accuracy_best"] = best["eval_accuracy"]
    else:
        metrics["selection"] = "final epoch (test split evaluated after every epoch)"
        metrics["test_accuracy_best_epoch"] = best["eval_accuracy"] if best else None
    metrics["eval_history"] = epochs
    return metrics


def selection_arguments(args: TrainingArguments, validation: datasets.Dataset | None) -> None:
    """Select the best epoch on the validation split when there is one; otherwise keep the final epoch."""
    args.load_best_model_at_end = validation is not None
    args.metric_for_best_model = "accuracy" if validation is not None else None


def publish_run(trainer: Trainer, metrics: dict[str, Any], model_card: str, processor) -> None:
    """On the main process: write the hub-ready folder, print where it is and the accuracy, and push it to the
    Hub when the run was started with ``--push_to_hub`` (our folder and card, not `Trainer.push_to_hub`'s)."""
    from .hub import HubPushError, push_from_trainer

    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    save_hub_ready_folder(trainer, output_dir, metrics, model_card, processor)
    print(summary_line(metrics, output_dir))
    if trainer.args.push_to_hub:
        try:
            commit = push_from_trainer(trainer, output_dir)
        except HubPushError as err:
            sys.exit(f"Pushing to the Hub failed: {err}")
        print(f"Pushed to {commit.commit_url}")


def summary_line(metrics: dict[str, Any], output_dir: str | os.PathLike) -> str:
    """What a script prints at the end: the accuracies as JSON, and where the model is."""
    keys = ("dataset", "attention_type", "test_accuracy_final", "test_accuracy_best_epoch", "validation_accuracy_best")
    summary = {key: metrics[key] for key in keys if metrics.get(key) is not None}
    return (
        f"{json.dumps(summary)}\nTest accuracy {metrics['test_accuracy_final']:.4f} (final epoch); "
        f"hub-ready model in {output_dir}"
    )


class Accuracy(evaluate.Metric):
    """Top-1 accuracy as an `evaluate` metric defined here, so that it needs no download from the Hub
    (`evaluate.load("accuracy")` fetches its script and fails offline)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description="Fraction of predictions equal to the reference label.",
            citation="",
            inputs_description="predictions and references: class indices, one per example.",
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


def accuracy_metric() -> Callable[[EvalPrediction], dict[str, float]]:
    """A `compute_metrics` for the Trainer: logits -> accuracy."""
    metric = Accuracy()

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return metric.compute(predictions=np.argmax(logits, axis=-1), references=prediction.label_ids)

    return compute_metrics


def resolve_resume(args: TrainingArguments) -> str | None:
    """``--resume_from_checkpoint``: a checkpoint folder, or ``last`` for the newest `checkpoint-N` of
    ``output_dir`` (an error if there is none, rather than silently starting over)."""
    resume = args.resume_from_checkpoint
    if resume is None or resume.lower() not in ("last", "true"):
        return resume
    checkpoint = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if checkpoint is None:
        raise FileNotFoundError(
            f"--resume_from_checkpoint {resume}: no checkpoint-N folder in {args.output_dir} to resume from."
        )
    return checkpoint


def save_hub_ready_folder(
    trainer: Trainer,
    output_dir: str | os.PathLike,
    metrics: dict[str, Any],
    model_card: str,
    processor=None,
) -> Path:
    """Write the final model, its processor, ``training_metrics.json`` and ``README.md`` into ``output_dir``.

    Everything is first written to a staging folder beside it and moved in only once all of it exists, so an
    interrupted save never leaves a folder that looks finished. Checkpoint folders of the run are kept.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
    try:
        trainer.model.save_pretrained(staging)
        if processor is not None:
            processor.save_pretrained(staging)
        (staging / "README.md").write_text(model_card)
        (staging / FINAL_FILES_MARKER).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        for path in sorted(staging.iterdir(), key=lambda p: p.name == FINAL_FILES_MARKER):  # marker last
            destination = output_dir / path.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
