"""One training run for every kind of model: `run_training` does what the training commands share, a
`TrainingTask` what differs (load the data, build the model, prepare the splits, describe the run in its card).

The run, in order: parse the arguments once; refuse what cannot work before any data is read (the arguments, the
output folder, which it then holds against a second run, and with ``--push_to_hub`` the Hub and the repo); read the
data once; build the model and check a resumed checkpoint is this run's; train with the Trainer; test; write the
hub-ready folder; and visit the Hub once, at the end, to push it.
"""

from __future__ import annotations

import abc
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import datasets
from transformers import HfArgumentParser, PreTrainedModel, Trainer, TrainingArguments, set_seed

from ..data.timeseries import TimeSeriesDataError
from ..hub import EvaluationRow, hub_id, render_model_card
from .arguments import UsageError
from .output_folder import (
    RecordRun,
    TrainingDivergedError,
    check_checkpoint_matches,
    check_free_space,
    check_output_folder,
    check_run_matches,
    gather_full_state_dict,
    output_folder_lock,
    run_record,
    save_hub_ready_folder,
    set_default_output_dir,
)
from .trainer import StopOnNonFinite, accuracy_metric, selection_arguments, split_for_selection, train_and_test


class TrainingTask(abc.ABC):
    """What one training command trains: its arguments, its data, its model and how its card describes a run.

    A task is built from the parsed argument dataclasses (in the order of `arguments`) and used by `run_training`.
    """

    #: The command's argument dataclasses, in this order: attention, model, data, training (a `TrainingArguments`).
    arguments: ClassVar[tuple[type, type, type, type]]
    #: The model-card template of the family (``model_cards/<family>.md``).
    family: ClassVar[str]

    def __init__(self, attention: Any, model: Any, data: Any, training: TrainingArguments) -> None:
        self.attention, self.model_arguments, self.data, self.training = attention, model, data, training

    @property
    @abc.abstractmethod
    def run_name(self) -> str:
        """The run's name: a run without ``--output_dir`` writes into ``outputs/<run_name>``."""

    @property
    def validation_fraction(self) -> float:
        return getattr(self.data, "validation_fraction", 0.0)

    @property
    def dataset_source(self) -> str:
        """The data as the user named it (a Hub id, a path, a UEA name)."""
        return self.data.dataset

    @abc.abstractmethod
    def load(self) -> datasets.DatasetDict:
        """The ``train`` and ``test`` splits, ``label`` a `ClassLabel`; `UsageError` / `TimeSeriesDataError` when
        the data cannot be read."""

    @abc.abstractmethod
    def build(self, train: datasets.Dataset, test: datasets.Dataset) -> tuple[PreTrainedModel, Any]:
        """The model to train (``config.attention_type`` set) and its processor, for the classes of ``train``."""

    def prepare(self, split: datasets.Dataset, *, training: bool) -> datasets.Dataset:
        """``split`` as the Trainer reads it (a format or an on-the-fly transform)."""
        return split

    def trainer_options(self, processor: Any) -> dict[str, Any]:
        """Keywords of the `Trainer` particular to the task (a data collator, an optimizer)."""
        return {}

    @abc.abstractmethod
    def describe(self, model: PreTrainedModel, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, Any]:
        """The card's description of the run: ``dataset_name``, ``dataset_description``, the task's
        ``hyperparameters`` (the optimizer and what the model was built with), and optionally ``limitations``,
        ``base_model``, ``base_model_revision``."""

    def dataset_name(self, train: datasets.Dataset) -> str:
        """The dataset's name in the metrics and the card."""
        return train.info.dataset_name or Path(self.dataset_source.rstrip("/")).stem


def run_training(task_class: type[TrainingTask], argv: Sequence[str]) -> dict[str, Any]:
    """Train, test and save the hub-ready folder of a run of ``task_class`` on the command line ``argv``; the run's
    metrics. `UsageError` on wrong arguments or an output folder in use, before any data is read; `UsageError` or
    `TimeSeriesDataError` on data that cannot be read, before any training."""
    parser = HfArgumentParser(task_class.arguments)
    task = task_class(*parser.parse_args_into_dataclasses(args=list(argv)))
    args = task.training
    set_default_output_dir(args, task.run_name)
    check_output_folder(args, validation_fraction=task.validation_fraction)
    with output_folder_lock(args):
        if args.push_to_hub:
            from ..hub import check_hub_access

            check_hub_access(args.hub_model_id or Path(args.output_dir).absolute().name, token=args.hub_token,
                             private=args.hub_private_repo)
        set_seed(args.seed)
        splits = task.load()
        test = splits["test"]
        train, validation = split_for_selection(splits["train"], task.validation_fraction, args.seed)
        selection_arguments(args, validation)
        model, processor = task.build(train, test)
        check_checkpoint_matches(model.config, args.resume_from_checkpoint)
        record = run_record(args, asdict(task.data))
        check_run_matches(record, args.resume_from_checkpoint)
        check_free_space(args, model)

        try:
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=task.prepare(train, training=True),
                eval_dataset=task.prepare(validation if validation is not None else test, training=False),
                processing_class=processor,
                compute_metrics=accuracy_metric(),
                callbacks=[StopOnNonFinite(), RecordRun(record)],
                **task.trainer_options(processor),
            )
        except (RuntimeError, ValueError) as err:  # accelerate's FSDP plugin without a GPU, the Trainer's `--fsdp`
            # in one process: their own messages name neither the device nor the alternative
            if fsdp_requested(args) and args.device.type == "cpu":
                raise UsageError(fsdp_without_accelerator(args)) from err
            raise
        if fsdp_requested(args) and args.device.type == "cpu" and not trainer.is_fsdp_enabled:
            raise UsageError(fsdp_without_accelerator(args))  # Accelerate fell back to data-parallel, silently
        metrics = {
            "dataset": task.dataset_name(train),
            "attention_type": model.config.attention_type,
            **train_and_test(trainer, task.prepare(test, training=False)),
        }
        description = task.describe(model, train, test)
        card = render_model_card(
            task.family,
            model_name=Path(args.output_dir).name,
            config=model.config,
            dataset_id=description.pop("dataset_id", None) or hub_dataset_id(task.dataset_source),
            hyperparameters={
                **{key: value for key, value in asdict(task.attention).items() if value is not None},
                **description.pop("hyperparameters"),
                "learning_rate": args.learning_rate,
                "batch_size": args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
                "epochs": args.num_train_epochs,
                "seed": args.seed,
            },
            results=[EvaluationRow("test", "accuracy", round(metrics["test_accuracy_final"], 4))],
            protocol_note=f"Model selection: {metrics['selection']}.",
            **description,
        )
        publish_run(trainer, metrics, str(card), processor)
        # A process group left to the interpreter's exit can abort a launched process after a finished run
        # (gloo: SIGABRT, "terminate called without an active exception"), failing the whole launch.
        trainer.accelerator.end_training()
    return metrics


def fsdp_requested(args: TrainingArguments) -> bool:
    """Whether the run was asked to shard the model: ``accelerate launch --use_fsdp`` (which says so through the
    environment) or the Trainer's own ``--fsdp``."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true" or bool(getattr(args, "fsdp", None))


def fsdp_without_accelerator(args: TrainingArguments) -> str:
    """Why a run that asked for FSDP is refused where Accelerate does not shard: on CPU, Accelerate (1.x) either
    fails building its FSDP plugin or, with ``--fsdp_sync_module_states false`` or the Trainer's ``--fsdp``,
    silently trains whole copies of the model data-parallel instead, which is not what was asked for."""
    return (
        f"FSDP was asked for (accelerate launch --use_fsdp, or --fsdp), but this run is on {args.device.type}, and "
        "Accelerate shards a model only on GPUs or other accelerators (CUDA, XPU, NPU, MLU, MUSA, HPU): here it "
        "would fail or silently train unsharded copies. Leave FSDP out on CPU (accelerate launch --multi_gpu "
        "--num_processes N ... trains data-parallel, each process holding the whole model), or run on GPUs."
    )


def hub_dataset_id(source: str) -> str | None:
    """``source`` when it names a Hub dataset (``owner/name``, not a local path; a bare name is a UEA problem),
    for the card's ``datasets:``."""
    return hub_id(source) if "/" in source else None


def publish_run(trainer: Trainer, metrics: dict[str, Any], model_card: str, processor) -> None:
    """On the main process: write the hub-ready folder, print where it is and the accuracy, and push it to the
    Hub when the run was started with ``--push_to_hub`` (our folder and card, not `Trainer.push_to_hub`'s).

    Raises `TrainingDivergedError` for a model with non-finite weights (nothing is written) and `hub.HubPushError`
    when the push fails (the folder is saved).
    """
    from ..hub import push_from_trainer

    state_dict = gather_full_state_dict(trainer)  # on every process: FSDP gathers the shards collectively
    if not trainer.is_world_process_zero():
        return
    output_dir = trainer.args.output_dir
    if trainer.args.push_to_hub:
        # A checkpoint push still uploading the folder in the background would pick up the staging folder too.
        trainer._finish_current_push()
    save_hub_ready_folder(trainer.model, output_dir, metrics, model_card, processor, state_dict)
    print(summary_line(metrics, output_dir))
    if trainer.args.push_to_hub:
        commit = push_from_trainer(trainer, output_dir)
        print(f"Pushed to {commit.commit_url}")


def run_script(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> int:
    """A training script's exit status: 0 done, 2 the arguments or the data are wrong (`UsageError`,
    `TimeSeriesDataError`: before any training), 1 the run failed (training diverged, a Hub call failed); the
    message is printed without a traceback. ``argv`` defaults to the command line."""
    from ..hub import HubPushError

    try:
        main(list(sys.argv[1:] if argv is None else argv))
    except (UsageError, TimeSeriesDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (TrainingDivergedError, HubPushError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def summary_line(metrics: dict[str, Any], output_dir: str | os.PathLike) -> str:
    """What a script prints at the end: the accuracies as JSON, and where the model is."""
    keys = ("dataset", "attention_type", "test_accuracy_final", "test_accuracy_best_epoch", "validation_accuracy_best")
    summary = {key: metrics[key] for key in keys if metrics.get(key) is not None}
    # the model kept is the final epoch's, or with a validation split the best validation epoch's
    kept = "best validation epoch" if metrics.get("validation_accuracy_best") is not None else "final epoch"
    return (
        f"{json.dumps(summary)}\nTest accuracy {metrics['test_accuracy_final']:.4f} (model of the {kept}); "
        f"hub-ready model in {output_dir}"
    )
