"""What the training scripts share: offline accuracy through `evaluate`, the epoch-by-epoch test history, and the
hub-ready output folder (weights, config with auto_map and code, processor, metrics JSON, model card), written
so that a failure leaves no half-finished folder behind."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import datasets
import evaluate
import numpy as np
import torch
from transformers import (
    EvalPrediction,
    IntervalStrategy,
    PreTrainedModel,
    SchedulerType,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, SaveStrategy, get_last_checkpoint

from .attention import AttentionSettings, InvalidSetting
from .configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from .data.timeseries import TimeSeriesDataError
from .feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)
from .modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification
from .pipeline_timeseries import PrimalDualTimeSeriesClassificationPipeline

FINAL_FILES_MARKER = "training_metrics.json"
#: Config fields that may differ between a checkpoint and the run resuming from it (bookkeeping, not the model).
_RESUME_IGNORED_FIELDS = {
    "transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype", "auto_map",
    "problem_type",  # set by the model's first forward pass from the labels
    "custom_pipelines",  # written by the model's save_pretrained (the pipeline code beside the weights)
}


class UsageError(ValueError):
    """The command line asks for something that cannot be done; the scripts print the message and exit with 2."""


class TrainingDivergedError(RuntimeError):
    """The loss or the weights went NaN or infinite: the run stops and nothing is saved as finished."""


@dataclass
class AttentionArguments(AttentionSettings):
    """The attention of the primal-dual family, from the command line: the fields of `AttentionSettings`, with
    their defaults, allowed values and help."""

    def __post_init__(self) -> None:
        try:  # before any data is read: a typo should not cost a dataset load
            self.check_settings()
        except InvalidSetting as err:
            raise UsageError(f"--{err.setting}: {err}") from None

    def config_kwargs(self) -> dict[str, Any]:
        return asdict(self)


# HfArgumentParser rewrites the type of each field it parses in place (`list[int] | None` becomes `list[int]`). The
# fields of a dataclass subclass are its base's Field objects, so parsing the command line changed AttentionSettings'
# types too, and with them the strict type checks of every config built on it: after it, a config with the default
# head_scales=None was refused ("expected a list, got NoneType"). The arguments get their own copies.
AttentionArguments.__dataclass_fields__ = {
    name: copy.copy(item) for name, item in AttentionArguments.__dataclass_fields__.items()
}


@dataclass
class TimeSeriesAttentionArguments(AttentionArguments):
    attention_type: str = field(default="bn", metadata={"help": "the attention (default: Attention-BN)"})


@dataclass
class TimeSeriesModelArguments:
    """The size of a `PrimalDualTimeSeriesForClassification` (mvts-transformer's defaults)."""

    hidden_size: int = field(default=64, metadata={"help": "d_model"})
    num_hidden_layers: int = 3
    num_attention_heads: int = 8
    intermediate_size: int = 256
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout"})
    pooling: str = field(default="flatten", metadata={"help": "flatten (mvts-transformer), mean or cls"})
    norm_type: str = field(default="batch", metadata={"help": "batch (mvts-transformer) or layer"})


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
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "write into an --output_dir that holds files of something else than a run of this project"},
    )

    def __getstate__(self) -> dict[str, Any]:
        # The Trainer pickles the arguments into every checkpoint and, with --push_to_hub, uploads that
        # training_args.bin: a pickled copy never carries --hub_token (the object in memory keeps it for the pushes).
        state = dict(self.__dict__)
        for name in state:
            if name.endswith("_token"):
                state[name] = None
        return state

    def __post_init__(self):
        # On a machine without an accelerator, transformers only sets up a multi-process (gloo) run under
        # `accelerate launch` when told it is on CPU.
        if not self.use_cpu and not torch.accelerator.is_available():
            self.use_cpu = True
        super().__post_init__()


@dataclass
class TimeSeriesTrainingArguments(EpochTrainingArguments):
    """The mvts-transformer protocol of the paper (Zerveas et al. 2021, as in Flowformer): RAdam (see
    `timeseries_trainer`), learning rate 1e-3 held constant, batch 16, 100 epochs."""

    num_train_epochs: float = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    lr_scheduler_type: SchedulerType | str = "constant"
    seed: int = 42


def timeseries_setup(
    train: datasets.Dataset,
    max_length: int,
    attention: Mapping[str, Any],
    model_args: TimeSeriesModelArguments,
) -> tuple[PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesFeatureExtractor]:
    """The config of a new classifier for the classes of ``train`` and its feature extractor, fitted on the series of
    ``train`` (a split of `load_timeseries`: ``past_values`` (time, channels), ``label`` a `ClassLabel`).

    Args:
        max_length: the longest series the model takes (``max_sequence_length``).
        attention: the attention's settings, as the config takes them (``AttentionArguments.config_kwargs()``).
    """
    class_names = train.features["label"].names
    num_channels = train.features["past_values"].shape[1]
    feature_extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=max_length).fit(
        train.with_format("numpy")["past_values"]
    )
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=num_channels,
        max_sequence_length=max_length,
        hidden_size=model_args.hidden_size,
        num_hidden_layers=model_args.num_hidden_layers,
        num_attention_heads=model_args.num_attention_heads,
        intermediate_size=model_args.intermediate_size,
        hidden_dropout_prob=model_args.dropout,
        attention_probs_dropout_prob=model_args.dropout,
        pooling=model_args.pooling,
        norm_type=model_args.norm_type,
        **attention,
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    return config, feature_extractor


def timeseries_trainer(
    model: PrimalDualTimeSeriesForClassification,
    args: TrainingArguments,
    train: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
    feature_extractor: PrimalDualTimeSeriesFeatureExtractor,
) -> Trainer:
    """The Trainer of the time-series protocol: RAdam with ``args``' learning rate and weight decay, rows collated by
    ``feature_extractor``, accuracy computed on ``eval_dataset``, stopped when training diverges."""
    # Rows as NumPy arrays: the collator takes them as it takes lists, and Arrow hands them over without building
    # a Python float per value (that took about a tenth of a UWaveGestureLibrary epoch).
    return Trainer(
        model=model,
        args=args,
        train_dataset=train.with_format("numpy"),
        eval_dataset=eval_dataset.with_format("numpy") if eval_dataset is not None else None,
        data_collator=DataCollatorForTimeSeriesClassification(feature_extractor),
        processing_class=feature_extractor,
        compute_metrics=accuracy_metric(),
        callbacks=[StopOnNonFinite()],
        optimizer_cls_and_kwargs=(torch.optim.RAdam, {"lr": args.learning_rate, "weight_decay": args.weight_decay}),
    )


def folder_name(text: str) -> str:
    """``text`` as one safe folder name: path separators, ``..`` and other characters outside ``[A-Za-z0-9._+-]``
    become ``-``, so that a name built from user input cannot point outside its parent folder."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^\w.+-]+|\.{2,}", "-", text, flags=re.ASCII)).strip(".-")
    return name or "run"


def set_default_output_dir(args: TrainingArguments, name: str) -> None:
    """Give a run without ``--output_dir`` the folder ``outputs/<name>`` (transformers would pick `trainer_output`);
    ``name`` is made a single folder name (`folder_name`), so the folder is always directly under ``outputs/``."""
    if args.output_dir in (None, "trainer_output"):
        args.output_dir = str(Path("outputs") / folder_name(name))


def is_run_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an output folder of this project's training scripts: a finished one (its
    ``training_metrics.json``) or one with Trainer checkpoints."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / FINAL_FILES_MARKER).read_text())
        if isinstance(metrics, dict) and "eval_history" in metrics:
            return True
    except (OSError, ValueError):
        pass
    return any((path / "trainer_state.json").is_file() for path in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"))


def check_run_arguments(args: TrainingArguments, *, validation_fraction: float = 0.0) -> None:
    """Refuse, before any data is read, a run whose arguments cannot work (`UsageError`), and, for
    ``--push_to_hub``, check that the Hub answers and takes the token (`hub.HubPushError`).

    * ``--output_dir`` must be a folder; one that holds other files than a run of this project (the user's own
      README.md, config.json...) is only written into with ``--overwrite_output_dir``.
    * ``--resume_from_checkpoint last`` becomes the newest checkpoint of ``--output_dir`` (an error if there is none).
    * ``validation_fraction`` must leave a training split: 0 <= fraction < 1.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output_dir {output_dir} is a file: give a folder (a new one, or a run's output folder).")
    if not 0 <= validation_fraction < 1:
        raise UsageError(
            f"--validation_fraction {validation_fraction}: give a fraction of the training split in [0, 1) to hold "
            "out (0: no validation split, the test split is evaluated every epoch)."
        )
    args.resume_from_checkpoint = resolve_resume(args)
    if args.resume_from_checkpoint is not None and not Path(args.resume_from_checkpoint, "trainer_state.json").is_file():
        raise UsageError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint} is not a Trainer checkpoint (no trainer_state.json):"
            " give a checkpoint-N folder, or `last` for the newest one of --output_dir."
        )
    others = [p.name for p in sorted(output_dir.iterdir()) if not p.name.startswith(".")] if output_dir.is_dir() else []
    if others and not is_run_folder(output_dir) and not getattr(args, "overwrite_output_dir", False):
        raise UsageError(
            f"--output_dir {output_dir} already holds files that are not from a training run of this project "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}), which the run would overwrite. Give a new "
            "or empty folder, or pass --overwrite_output_dir to write into this one anyway."
        )
    if args.push_to_hub:
        from .hub import check_hub_access

        check_hub_access(args.hub_model_id or output_dir.absolute().name, token=args.hub_token)


def check_checkpoint_matches(config: Any, checkpoint: str | os.PathLike | None) -> None:
    """Refuse (`UsageError`) to resume from ``checkpoint`` a model whose config differs from the checkpoint's:
    the Trainer would load the weights into the other model (a ``bn`` checkpoint continued as ``softmax``...)."""
    if checkpoint is None:
        return
    try:  # through the config class, so that fields the file leaves out get the same defaults on both sides
        saved_config = type(config).from_json_file(Path(checkpoint) / "config.json")
    except (OSError, ValueError) as err:
        raise UsageError(f"--resume_from_checkpoint {checkpoint}: cannot read its config.json ({err}).") from err
    saved, wanted = (json.loads(c.to_json_string(use_diff=False)) for c in (saved_config, config))
    differences = sorted(
        key for key in set(saved) | set(wanted)
        if key not in _RESUME_IGNORED_FIELDS and saved.get(key) != wanted.get(key)
    )
    if differences:
        listed = ", ".join(f"{key}={saved.get(key)!r} (this run: {wanted.get(key)!r})" for key in differences[:8])
        raise UsageError(
            f"--resume_from_checkpoint {checkpoint} was trained with other model settings: {listed}. Resume with the "
            "checkpoint's settings, or start a new run in another --output_dir."
        )


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


def publish_run(trainer: Trainer, metrics: dict[str, Any], model_card: str, processor) -> None:
    """On the main process: write the hub-ready folder, print where it is and the accuracy, and push it to the
    Hub when the run was started with ``--push_to_hub`` (our folder and card, not `Trainer.push_to_hub`'s).

    Raises `TrainingDivergedError` for a model with non-finite weights (nothing is written) and `hub.HubPushError`
    when the push fails (the folder is saved).
    """
    from .hub import push_from_trainer

    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    if trainer.args.push_to_hub:
        # A checkpoint push still uploading the folder in the background would pick up the staging folder too.
        trainer._finish_current_push()
    save_hub_ready_folder(trainer.model, output_dir, metrics, model_card, processor)
    print(summary_line(metrics, output_dir))
    if trainer.args.push_to_hub:
        commit = push_from_trainer(trainer, output_dir)
        print(f"Pushed to {commit.commit_url}")


def run_script(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """A training script's exit status: 0 done, 2 the arguments or the data are wrong (`UsageError`,
    `TimeSeriesDataError`: before any training), 1 the run failed (training diverged, a Hub call failed); the
    message is printed without a traceback. ``argv`` defaults to the command line."""
    from .hub import HubPushError

    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (UsageError, TimeSeriesDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrainingDivergedError, HubPushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def non_finite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of the parameters of ``model`` holding a NaN or an infinity."""
    named = [(name, p) for name, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(p.detach()).all() for _, p in named]).cpu()  # one device sync
    return [name for (name, _), ok in zip(named, finite.tolist()) if not ok]


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
        raise UsageError(
            f"--resume_from_checkpoint {resume}: no checkpoint-N folder in {args.output_dir} to resume from. Give the "
            "--output_dir of the run to resume, or leave --resume_from_checkpoint out to start a new run."
        )
    return checkpoint


def save_model_and_processor(model: PreTrainedModel, processor, folder: str | os.PathLike) -> None:
    """Save ``model`` and ``processor`` into ``folder``; a time-series classifier with its feature extractor is saved
    through its `time-series-classification` pipeline, whose `save_pretrained` also copies the pipeline's code and
    writes ``custom_pipelines`` into config.json, so ``pipeline(model=folder, trust_remote_code=True)`` classifies
    raw series without this package."""
    if isinstance(model, PrimalDualTimeSeriesForClassification) and processor is not None:
        # device: the pipeline would otherwise move the model to the first GPU.
        PrimalDualTimeSeriesClassificationPipeline(
            model=model, feature_extractor=processor, device=model.device
        ).save_pretrained(folder)
        return
    model.save_pretrained(folder)
    if processor is not None:
        processor.save_pretrained(folder)


def save_hub_ready_folder(
    model: PreTrainedModel,
    output_dir: str | os.PathLike,
    metrics: dict[str, Any],
    model_card: str,
    processor=None,
) -> Path:
    """Write ``model``, its processor, ``training_metrics.json`` and ``README.md`` into ``output_dir``.

    Everything is first written to a staging folder inside it; the marker of a finished folder
    (``training_metrics.json``) of an earlier run is removed before anything is moved in and the new one is moved
    in last, so an interrupted save never leaves a folder that looks finished (new weights with old metrics).
    Checkpoint folders of the run are kept. A model with NaN or infinite weights is refused
    (`TrainingDivergedError`) and nothing is written.
    """
    bad = non_finite_parameters(model)
    if bad:
        raise TrainingDivergedError(
            f"The trained model has NaN or infinite weights ({', '.join(bad[:3])}): it is not saved as finished. "
            "Lower --learning_rate and run again."
        )
    if not all(np.isfinite(v) for v in metrics.values() if isinstance(v, float)):
        raise TrainingDivergedError(f"The run's metrics are not finite ({metrics}): it is not saved as finished.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
    try:
        save_model_and_processor(model, processor, staging)
        (staging / "README.md").write_text(model_card)
        (staging / FINAL_FILES_MARKER).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (output_dir / FINAL_FILES_MARKER).unlink(missing_ok=True)
        for path in sorted(staging.iterdir(), key=lambda p: p.name == FINAL_FILES_MARKER):  # marker last
            destination = output_dir / path.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir
