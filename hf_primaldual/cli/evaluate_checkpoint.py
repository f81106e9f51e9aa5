r"""Accuracy and confusion matrix of a checkpoint folder or Hub id on a dataset split.

The confusion matrix goes to ``outputs/evaluations/`` (or ``--output``), never into the model folder, which a push
would publish. Exit status 2 (checked before the evaluation runs): a missing or unfinished folder; weights that
cannot give a working model (a weights file that cannot be read, a missing classifier head, NaN or infinite
values: the same check as hf-primaldual-push); data the model cannot take (other classes, another number of
channels, series longer than the model's max_sequence_length) or that cannot be read; an unknown split, a batch
size < 1 or an --output that cannot be written; a Hub repo or revision that does not exist. Exit status 1: a Hub
model or dataset that could not be fetched (offline, the Hub unreachable): running again may work.

    hf-primaldual-evaluate outputs/timeseries-JapaneseVowels-bn JapaneseVowels
    python scripts/evaluate_checkpoint.py outputs/timeseries-JapaneseVowels-bn JapaneseVowels    # from a checkout
    hf-primaldual-evaluate outputs/image-fashion-mnist-bn ../shared/data/images/fashion-mnist
    hf-primaldual-evaluate org/model SelfRegulationSCP2 --data_dir ../shared/data/uea --revision v1 \
        --trust_remote_code     # the checkpoint's own code files (needed where the package is not installed)
    hf-primaldual-evaluate outputs/timeseries-my_steps-bn my_steps.csv --series_id_column id --time_column t
        # the data options the model was trained with (hf-primaldual-train-timeseries --dataset my_steps.csv ...)

A time-series dataset is read as the training command reads it (`hf_primaldual.data.load_timeseries`, the same
data options), its labels matched to the model's by name; a test split held out in training (--test_fraction) is
held out again alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from transformers import HfArgumentParser

from hf_primaldual.data.timeseries import TimeSeriesDataArguments, TimeSeriesDataError
from hf_primaldual.evaluation import HubUnreachableError, evaluate_checkpoint, plot_confusion_matrix
from hf_primaldual.model_folders import UnusableModelError
from hf_primaldual.training import UsageError, folder_name

#: Where the confusion matrices go by default: never into the model folder, which a push would publish.
DEFAULT_OUTPUT_DIR = Path("outputs") / "evaluations"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: give a number >= 1")
    return value


def default_output(checkpoint: str, dataset: str, split: str) -> Path:
    """``outputs/evaluations/<model>-<dataset>-<split>-confusion_matrix.png``."""
    names = (Path(checkpoint.rstrip("/")).name, Path(dataset.rstrip("/")).stem, split)
    return DEFAULT_OUTPUT_DIR / f"{'-'.join(folder_name(name) for name in names)}-confusion_matrix.png"


def writable_output(output: Path) -> Path:
    """``output``, its folder created; `UsageError` when the PNG cannot be written there (checked before the
    evaluation runs, so that its result is not lost)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        if output.is_dir():
            raise IsADirectoryError(f"{output} is a folder")
        existed = output.exists()
        with output.open("ab"):
            pass
        if not existed:
            output.unlink()
    except OSError as err:
        raise UsageError(f"--output {output}: cannot write the confusion matrix there ({err}). Give a writable file path.")
    return output


def run(argv: list[str] | None = None) -> dict:
    """Evaluate, plot and print the summary (one JSON line); the summary. Wrong arguments exit with status 2."""
    parser = HfArgumentParser(
        TimeSeriesDataArguments, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="output folder or Hub repository id")
    parser.add_argument("dataset", help="time series: UEA problem name, local file or folder, or Hub dataset id; "
                                        "images: dataset folder/zip/Hub name")
    parser.add_argument("--split", default="test")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--batch_size", type=positive_int, default=64)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--output", type=Path, help=f"confusion-matrix PNG (default: {DEFAULT_OUTPUT_DIR}/"
                                                    "<model>-<dataset>-<split>-confusion_matrix.png)")
    data_args, args = parser.parse_args_into_dataclasses(args=argv)
    # only the options given: an image model takes none
    defaults = TimeSeriesDataArguments().options()
    data_options = {key: value for key, value in data_args.options().items() if value != defaults[key]}

    try:
        output = writable_output(args.output or default_output(args.checkpoint, args.dataset, args.split))
        result = evaluate_checkpoint(
            args.checkpoint, args.dataset, split=args.split, batch_size=args.batch_size, revision=args.revision,
            trust_remote_code=args.trust_remote_code, data_options=data_options,
        )
    except (UsageError, TimeSeriesDataError, UnusableModelError) as err:
        parser.exit(2, f"error: {err}\n")
    except HubUnreachableError as err:  # the network, not the arguments: running again may work
        parser.exit(1, f"error: {err}\n")
    dataset_name = Path(args.dataset.rstrip("/")).name
    plot_confusion_matrix(result, output, title=f"{Path(args.checkpoint.rstrip('/')).name} on {dataset_name} "
                                                f"({args.split}): accuracy {result.accuracy:.4f}")
    summary = {"checkpoint": str(args.checkpoint), "dataset": args.dataset, "split": args.split,
               "accuracy": result.accuracy, "examples": len(result.labels), "confusion_matrix": str(output)}
    if result.classes_without_examples:
        summary["classes_without_examples"] = result.classes_without_examples
        print(f"note: the {args.split} split has no example of the model's class(es) "
              f"{', '.join(map(repr, result.classes_without_examples))}: their recall is not measured (an empty row "
              "of the confusion matrix).", file=sys.stderr)
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
