"""Training with the HF Trainer: the commands' arguments (`arguments`), one run for every kind of model
(`run`: `run_training` and the `TrainingTask` each command defines), the Trainer's side of it (`trainer`: model
selection, train-then-test, divergence stop, accuracy), the output folder (`output_folder`: lock, checks, resuming,
the hub-ready folder) and the time-series protocol shared with the scikit-learn estimator (`timeseries`)."""

from .arguments import (
    AttentionArguments,
    EpochTrainingArguments,
    TimeSeriesAttentionArguments,
    TimeSeriesModelArguments,
    TimeSeriesTrainingArguments,
    UsageError,
    encoder_config_kwargs,
)
from .output_folder import (
    FINAL_FILES_MARKER,
    TrainingDivergedError,
    folder_name,
    is_run_folder,
    non_finite_parameters,
    resolve_resume,
    save_hub_ready_folder,
    save_model_and_processor,
    set_default_output_dir,
)
from .run import TrainingTask, run_script, run_training, summary_line
from .timeseries import as_rows, timeseries_setup, timeseries_trainer, timeseries_trainer_options
from .trainer import Accuracy, StopOnNonFinite, accuracy_metric, split_for_selection, train_and_test

__all__ = [
    "FINAL_FILES_MARKER",
    "Accuracy",
    "AttentionArguments",
    "EpochTrainingArguments",
    "StopOnNonFinite",
    "TimeSeriesAttentionArguments",
    "TimeSeriesModelArguments",
    "TimeSeriesTrainingArguments",
    "TrainingDivergedError",
    "TrainingTask",
    "UsageError",
    "accuracy_metric",
    "encoder_config_kwargs",
    "as_rows",
    "folder_name",
    "is_run_folder",
    "non_finite_parameters",
    "resolve_resume",
    "run_script",
    "run_training",
    "save_hub_ready_folder",
    "save_model_and_processor",
    "set_default_output_dir",
    "split_for_selection",
    "summary_line",
    "timeseries_setup",
    "timeseries_trainer",
    "timeseries_trainer_options",
    "train_and_test",
]
