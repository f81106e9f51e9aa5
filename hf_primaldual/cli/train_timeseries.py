"""Train a PrimalDualTimeSeries classifier on a UEA problem with the HF Trainer (Accelerate underneath).

The defaults are the mvts-transformer protocol used by the paper (Zerveas et al. 2021, as in Flowformer):
RAdam, lr 1e-3, batch 16, 100 epochs, the test split evaluated after every epoch, and both the final-epoch and the
best-epoch test accuracy reported (say which when you quote one). With ``--validation_fraction > 0`` a stratified
validation split is carved from the training set instead: it selects the best epoch, and the test split is
evaluated once, on that model.

    hf-primaldual-train-timeseries                                      # JapaneseVowels (shipped), Attention-BN
    python scripts/train_timeseries.py                                  # the same, from a checkout
    python scripts/train_timeseries.py --resume_from_checkpoint last    # go on from the newest checkpoint
    python scripts/train_timeseries.py --dataset SelfRegulationSCP2 --data_dir ../shared/data/uea \
        --attention_type bn_sh --head_scales 1 1 1 2 2 2 4 4 --output_dir outputs/scp2-bn_sh
    accelerate launch --num_processes 2 scripts/train_timeseries.py ...   # the same script, several processes
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser, SchedulerType, Trainer, set_seed

from hf_primaldual import PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesForClassification
from hf_primaldual.data.uea import load_uea
from hf_primaldual.feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)
from hf_primaldual.hub import EvaluationRow, render_model_card
from hf_primaldual.training import (
    AttentionArguments,
    EpochTrainingArguments,
    StopOnNonFinite,
    accuracy_metric,
    check_checkpoint_matches,
    check_run_arguments,
    publish_run,
    run_script,
    selection_arguments,
    set_default_output_dir,
    split_for_selection,
    train_and_test,
)


@dataclass
class TimeSeriesAttentionArguments(AttentionArguments):
    attention_type: str = field(default="bn", metadata={"help": "the attention (default: Attention-BN)"})


@dataclass
class ModelArguments:
    hidden_size: int = field(default=64, metadata={"help": "d_model"})
    num_hidden_layers: int = 3
    num_attention_heads: int = 8
    intermediate_size: int = 256
    dropout: float = field(default=0.1, metadata={"help": "hidden and attention dropout"})
    pooling: str = field(default="flatten", metadata={"help": "flatten (mvts-transformer), mean or cls"})
    norm_type: str = field(default="batch", metadata={"help": "batch (mvts-transformer) or layer"})


@dataclass
class DataArguments:
    dataset: str = field(default="JapaneseVowels", metadata={"help": "UEA problem name"})
    data_dir: str | None = field(default=None, metadata={"help": "UEA archive folder (default: the shipped one)"})
    train_path: str | None = None
    test_path: str | None = None
    validation_fraction: float = field(
        default=0.0, metadata={"help": "carve a stratified validation split from train to select the best epoch"}
    )


@dataclass
class TimeSeriesTrainingArguments(EpochTrainingArguments):
    num_train_epochs: float = 100
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 64
    lr_scheduler_type: SchedulerType | str = "constant"
    seed: int = 42


def problem_name(train_path: str) -> str:
    """The problem a UEA training file is of, from its name: ``.../BasicMotions_TRAIN.ts.gz`` -> ``BasicMotions``."""
    name = Path(train_path).name.removesuffix(".gz").removesuffix(".ts")
    return name[: -len("_TRAIN")] if name.upper().endswith("_TRAIN") else name


def run(argv: list[str]) -> dict:
    """Train, test and save the hub-ready folder; the metrics. `UsageError` on wrong arguments, before any data
    is read."""
    parser = HfArgumentParser((TimeSeriesAttentionArguments, ModelArguments, DataArguments, TimeSeriesTrainingArguments))
    attention_args, model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    problem = problem_name(data_args.train_path) if data_args.train_path else data_args.dataset
    set_default_output_dir(training_args, f"timeseries-{problem}-{attention_args.attention_type}")
    check_run_arguments(training_args, validation_fraction=data_args.validation_fraction)
    set_seed(training_args.seed)

    if data_args.train_path or data_args.test_path:
        splits = load_uea(train_path=data_args.train_path, test_path=data_args.test_path)
    else:
        splits = load_uea(data_args.dataset, data_dir=data_args.data_dir)
    test = splits["test"]
    train, validation = split_for_selection(splits["train"], data_args.validation_fraction, training_args.seed)
    selection_arguments(training_args, validation)
    class_names = train.features["label"].names
    max_length = max(max(train["length"]), max(test["length"]))
    num_channels = len(train[0]["past_values"][0])

    feature_extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=max_length).fit(train["past_values"])
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
        **attention_args.config_kwargs(),
        id2label=dict(enumerate(class_names)),
        label2id={name: i for i, name in enumerate(class_names)},
    )
    check_checkpoint_matches(config, training_args.resume_from_checkpoint)
    model = PrimalDualTimeSeriesForClassification(config)

    # Rows as NumPy arrays: the collator takes them as it takes lists, and Arrow hands them over without building
    # a Python float per value (that took about a tenth of a UWaveGestureLibrary epoch).
    train, test = train.with_format("numpy"), test.with_format("numpy")
    if validation is not None:
        validation = validation.with_format("numpy")
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=validation if validation is not None else test,
        data_collator=DataCollatorForTimeSeriesClassification(feature_extractor),
        processing_class=feature_extractor,
        compute_metrics=accuracy_metric(),
        callbacks=[StopOnNonFinite()],
        optimizer_cls_and_kwargs=(
            torch.optim.RAdam,
            {"lr": training_args.learning_rate, "weight_decay": training_args.weight_decay},
        ),
    )
    metrics = {
        "dataset": train.info.dataset_name or data_args.dataset,
        "attention_type": config.attention_type,
        **train_and_test(trainer, test),
    }

    card = render_model_card(
        "primaldual-timeseries",
        model_name=Path(training_args.output_dir).name,
        config=config,
        dataset_name=metrics["dataset"],
        dataset_description=(
            f"UEA multivariate time-series archive (Bagnall et al. 2018), problem {metrics['dataset']}: "
            f"{len(train)} training and {len(test)} test series, {num_channels} channels, up to {max_length} "
            f"time steps, {len(class_names)} classes. Channels standardised with training-split statistics."
        ),
        hyperparameters={
            **{k: v for k, v in {**asdict(attention_args), **asdict(model_args)}.items() if v is not None},
            "optimizer": "RAdam",
            "learning_rate": training_args.learning_rate,
            "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
            "epochs": training_args.num_train_epochs,
            "seed": training_args.seed,
        },
        results=[EvaluationRow("test", "accuracy", round(metrics["test_accuracy_final"], 4))],
        task_type="time-series-classification",
        protocol_note=f"Model selection: {metrics['selection']}.",
    )
    publish_run(trainer, metrics, str(card), feature_extractor)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """The command's exit status (see `hf_primaldual.training.run_script`)."""
    return run_script(run, argv)


if __name__ == "__main__":
    sys.exit(main())
