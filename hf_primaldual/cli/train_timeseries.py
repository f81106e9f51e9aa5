"""Train a PrimalDualTimeSeries classifier with the HF Trainer (Accelerate underneath) on a UEA problem, a local file or
folder (.ts, .csv/.tsv, .parquet, .json/.jsonl, .npz/.npy, a save_to_disk folder) or a `datasets` Hub dataset; see
`hf_primaldual.data.load_timeseries` for the layouts (long, nested, wide) and the options that read them.

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
    hf-primaldual-train-timeseries --dataset my_steps.csv --series_id_column id --time_column t   # long table
    hf-primaldual-train-timeseries --dataset train.parquet --test_file test.parquet --label_column activity
    hf-primaldual-train-timeseries --dataset org/dataset --dataset_revision v1                        # a Hub dataset
    accelerate launch --num_processes 2 scripts/train_timeseries.py ...   # the same script, several processes
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, set_seed

from hf_primaldual import PrimalDualTimeSeriesForClassification
from hf_primaldual.data.timeseries import TimeSeriesDataArguments, load_timeseries, source_name
from hf_primaldual.hub import EvaluationRow, render_model_card
from hf_primaldual.training import (
    TimeSeriesAttentionArguments,
    TimeSeriesModelArguments,
    TimeSeriesTrainingArguments,
    check_checkpoint_matches,
    check_run_arguments,
    publish_run,
    run_script,
    selection_arguments,
    set_default_output_dir,
    split_for_selection,
    timeseries_setup,
    timeseries_trainer,
    train_and_test,
)


@dataclass
class DataArguments(TimeSeriesDataArguments):
    dataset: str = field(
        default="JapaneseVowels",
        metadata={"help": "UEA problem name, local file or folder, or datasets Hub id (see load_timeseries)"},
    )
    validation_fraction: float = field(
        default=0.0, metadata={"help": "carve a stratified validation split from train to select the best epoch"}
    )
    class_names: list[str] | None = field(
        default=None, metadata={"help": "the classes, in the order of the model's labels (default: sorted)"}
    )


def run(argv: list[str]) -> dict:
    """Train, test and save the hub-ready folder; the metrics. `UsageError` on wrong arguments, before any data
    is read, and on data that cannot be read, before any training."""
    parser = HfArgumentParser((TimeSeriesAttentionArguments, TimeSeriesModelArguments, DataArguments, TimeSeriesTrainingArguments))
    attention_args, model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    set_default_output_dir(training_args, f"timeseries-{source_name(data_args.dataset)}-{attention_args.attention_type}")
    check_run_arguments(training_args, validation_fraction=data_args.validation_fraction)
    set_seed(training_args.seed)

    splits = load_timeseries(data_args.dataset, class_names=data_args.class_names, **data_args.options())
    test = splits["test"]
    train, validation = split_for_selection(splits["train"], data_args.validation_fraction, training_args.seed)
    selection_arguments(training_args, validation)
    max_length = max(max(train["length"]), max(test["length"]))
    config, feature_extractor = timeseries_setup(train, max_length, attention_args.config_kwargs(), model_args)
    check_checkpoint_matches(config, training_args.resume_from_checkpoint)
    model = PrimalDualTimeSeriesForClassification(config)
    trainer = timeseries_trainer(
        model, training_args, train, validation if validation is not None else test, feature_extractor
    )
    metrics = {
        "dataset": train.info.dataset_name or source_name(data_args.dataset),
        "attention_type": config.attention_type,
        **train_and_test(trainer, test.with_format("numpy")),
    }

    card = render_model_card(
        "primaldual-timeseries",
        model_name=Path(training_args.output_dir).name,
        config=config,
        dataset_name=metrics["dataset"],
        dataset_description=(
            f"{train.info.description} {len(train)} training and {len(test)} test series, up to {max_length} time "
            "steps. Channels standardised with training-split statistics."
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
