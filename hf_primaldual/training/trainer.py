"""The Trainer's side of a run: the model-selection split, train-then-test with the epoch history, the callback
that stops a diverged run, and offline accuracy through `evaluate`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
from transformers import EvalPrediction, Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import HubStrategy, get_last_checkpoint

from .output_folder import FINAL_FILES_MARKER, TrainingDivergedError, non_finite_parameters, resolve_resume


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
    if trainer.is_world_process_zero() and args.push_to_hub and args.hub_strategy != HubStrategy.END:
        # The Trainer's checkpoint pushes copy each checkpoint's weights and config over the folder's own: a
        # finished folder of an earlier run must not look finished again until this run's final save.
        Path(args.output_dir, FINAL_FILES_MARKER).unlink(missing_ok=True)
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
    # TrainingArguments derives greater_is_better from metric_for_best_model only at construction; left None here,
    # the Trainer would keep the epoch of the *lowest* accuracy
    args.greater_is_better = True if validation is not None else None


class StopOnNonFinite(TrainerCallback):
    """Stops training with `TrainingDivergedError` as soon as the weights (after an optimizer step) or an
    evaluation loss are NaN or infinite, before the Trainer checkpoints, evaluates or pushes the broken model.

    The Trainer's own logs hide a diverged run: ``logging_nan_inf_filter`` drops non-finite step losses, so the
    logged training loss of a NaN model reads 0.
    """

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        model: torch.nn.Module | None = None, **kwargs: Any,
    ) -> None:
        bad = non_finite_parameters(model) if model is not None else []
        flag = torch.tensor(float(bool(bad)))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # FSDP shards the weights: every process must stop if one of them holds a non-finite shard.
            flag = flag.to(next(model.parameters()).device)
            torch.distributed.all_reduce(flag)
        if flag.item():
            shown = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "") if bad else "on another process"
            raise TrainingDivergedError(self._message(args, state, f"the weights are NaN or infinite ({shown})"))

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
        metrics: dict[str, float] | None = None, **kwargs: Any,
    ) -> None:
        losses = {k: v for k, v in (metrics or {}).items() if k.endswith("_loss") and not np.isfinite(v)}
        if losses:
            raise TrainingDivergedError(self._message(args, state, f"the evaluation loss is not finite ({losses})"))

    @staticmethod
    def _message(args: TrainingArguments, state: TrainerState, what: str) -> str:
        last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        kept = f"the last good checkpoint is {last}" if last else "no checkpoint was saved"
        return (
            f"Training diverged at step {state.global_step} (epoch {state.epoch or 0:.2f}): {what}. The run stopped and "
            f"nothing was saved as finished ({kept}). Lower --learning_rate (now {args.learning_rate}), or check "
            "the data for extreme values, and run again."
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
