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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import datasets

from hf_primaldual import PrimalDualTimeSeriesForClassification
from hf_primaldual.data.timeseries import TimeSeriesDataArguments, load_timeseries, source_name
from hf_primaldual.training import (
    TimeSeriesAttentionArguments,
    TimeSeriesModelArguments,
    TimeSeriesTrainingArguments,
    TrainingTask,
    as_rows,
    run_script,
    run_training,
    timeseries_setup,
    timeseries_trainer_options,
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


class TimeSeriesClassificationTask(TrainingTask):
    """A `PrimalDualTimeSeriesForClassification` on the mvts-transformer protocol, channels standardised by a
    feature extractor fitted on the training series."""

    arguments = (TimeSeriesAttentionArguments, TimeSeriesModelArguments, DataArguments, TimeSeriesTrainingArguments)
    family = "primaldual-timeseries"

    @property
    def run_name(self) -> str:
        return f"timeseries-{source_name(self.data.dataset)}-{self.attention.attention_type}"

    def load(self) -> datasets.DatasetDict:
        return load_timeseries(self.data.dataset, class_names=self.data.class_names, **self.data.options())

    def build(self, train: datasets.Dataset, test: datasets.Dataset) -> tuple[PrimalDualTimeSeriesForClassification, Any]:
        self.max_length = max(max(train["length"]), max(test["length"]))
        config, feature_extractor = timeseries_setup(
            train, self.max_length, self.attention.config_kwargs(), self.model_arguments
        )
        return PrimalDualTimeSeriesForClassification(config), feature_extractor

    def prepare(self, split: datasets.Dataset, *, training: bool) -> datasets.Dataset:
        return as_rows(split)

    def trainer_options(self, processor: Any) -> dict[str, Any]:
        return timeseries_trainer_options(self.training, processor)

    def dataset_name(self, train: datasets.Dataset) -> str:
        return train.info.dataset_name or source_name(self.data.dataset)

    def describe(self, model, train: datasets.Dataset, test: datasets.Dataset) -> dict[str, Any]:
        return {
            "dataset_name": self.dataset_name(train),
            "dataset_description": (
                f"{train.info.description} {len(train)} training and {len(test)} test series, up to "
                f"{self.max_length} time steps. Channels standardised with training-split statistics."
            ),
            "hyperparameters": {**asdict(self.model_arguments), "optimizer": "RAdam"},
        }


def run(argv: Sequence[str]) -> dict:
    """Train, test and save the hub-ready folder (`hf_primaldual.training.run_training`); the metrics."""
    return run_training(TimeSeriesClassificationTask, argv)


def main(argv: list[str] | None = None) -> int:
    """The command's exit status (see `hf_primaldual.training.run_script`)."""
    return run_script(run, argv)


if __name__ == "__main__":
    sys.exit(main())
