"""The time-series part of a training run, shared by the training command and the scikit-learn estimator: the
config and fitted feature extractor of a new classifier, and the Trainer of the mvts-transformer protocol."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import datasets
import torch
from transformers import Trainer, TrainingArguments

from ..configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from ..feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)
from ..modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification
from .arguments import TimeSeriesModelArguments, encoder_config_kwargs
from .trainer import StopOnNonFinite, accuracy_metric


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
        **encoder_config_kwargs(model_args),
        pooling=model_args.pooling,
        norm_type=model_args.norm_type,
        **attention,
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    return config, feature_extractor


def timeseries_trainer_options(
    args: TrainingArguments, feature_extractor: PrimalDualTimeSeriesFeatureExtractor
) -> dict[str, Any]:
    """The `Trainer` keywords of the time-series protocol: rows collated by ``feature_extractor``, RAdam with
    ``args``' learning rate and weight decay."""
    return {
        # compiled: every batch padded to the model's length, one shape (padding to each batch's longest series
        # made inductor recompile per length, minutes each on a CPU)
        "data_collator": DataCollatorForTimeSeriesClassification(
            feature_extractor, padding="max_length" if args.torch_compile else "longest"),
        # foreach: one kernel per step for all the parameters (PyTorch's default is per parameter on CPU)
        "optimizer_cls_and_kwargs": (
            torch.optim.RAdam, {"lr": args.learning_rate, "weight_decay": args.weight_decay, "foreach": True}
        ),
    }


#: Splits of up to this many bytes are read out of Arrow once, as a list of rows; larger ones stay memory-mapped.
IN_MEMORY_ROWS_MAX_BYTES = 1 << 30


def as_rows(split: datasets.Dataset) -> datasets.Dataset | list[dict[str, Any]]:
    """``split``'s rows as the collator takes them, with the series as NumPy arrays: read out of Arrow once into a
    list when the split holds at most `IN_MEMORY_ROWS_MAX_BYTES` (decoding each batch's nested series out of Arrow
    again every epoch took a sixth of a JapaneseVowels epoch, test evaluation included), else the split itself in
    NumPy format (Arrow hands the arrays over without a Python float per value)."""
    rows = split.with_format("numpy")
    if split.data.nbytes > IN_MEMORY_ROWS_MAX_BYTES:
        return rows
    columns = rows[:]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def timeseries_trainer(
    model: PrimalDualTimeSeriesForClassification,
    args: TrainingArguments,
    train: datasets.Dataset,
    eval_dataset: datasets.Dataset | None,
    feature_extractor: PrimalDualTimeSeriesFeatureExtractor,
) -> Trainer:
    """The Trainer of the time-series protocol (`timeseries_trainer_options`), accuracy computed on
    ``eval_dataset``, stopped when training diverges."""
    return Trainer(
        model=model,
        args=args,
        train_dataset=as_rows(train),
        eval_dataset=as_rows(eval_dataset) if eval_dataset is not None else None,
        processing_class=feature_extractor,
        compute_metrics=accuracy_metric(),
        callbacks=[StopOnNonFinite()],
        **timeseries_trainer_options(args, feature_extractor),
    )
