"""Evaluating a trained checkpoint (a local folder or a Hub id) on a dataset split: predictions, accuracy and a
confusion-matrix plot."""

from __future__ import annotations

import contextlib
import logging
import os
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data import schema
from .data.images import build_transforms, load_image_dataset
from .data.timeseries import UnknownClassesError, load_timeseries
from .feature_extraction_primaldual_timeseries import DataCollatorForTimeSeriesClassification
from .model_folders import load_checked_model
from .training import FINAL_FILES_MARKER, UsageError


#: The logger of the loader's warning about declared classes without series ("remove them from --class_names"),
#: which does not apply when the classes are the model's (evaluating on a subset of them is fine).
_EMPTY_CLASS_LOGGER = schema.logger.name


@dataclass
class EvaluationResult:
    accuracy: float
    predictions: np.ndarray  # (examples,) predicted class indices
    labels: np.ndarray  # (examples,) true class indices
    class_names: list[str]

    @property
    def classes_without_examples(self) -> list[str]:
        """The model's classes that no evaluated example has: their recall is not measured (an empty row of the
        confusion matrix)."""
        return [name for index, name in enumerate(self.class_names) if not (self.labels == index).any()]


@dataclass
class CheckpointData:
    """A checkpoint's model (in eval mode) and a dataset split prepared by the checkpoint's own processor."""

    model: torch.nn.Module
    rows: datasets.Dataset
    batch_size: int

    def batches(self, limit: int | None = None):
        """Model-ready batches (dicts with ``labels``) over the first ``limit`` examples (all by default)."""
        total = len(self.rows) if limit is None else min(limit, len(self.rows))
        for start in range(0, total, self.batch_size):
            yield self._batch(range(start, min(start + self.batch_size, total)))

    def example_batch(self, index: int) -> dict:
        """A batch holding example ``index`` alone."""
        return self._batch(range(index, index + 1))

    @property
    def class_names(self) -> list[str]:
        return list(self.rows.features["label"].names)


class _TimeSeriesData(CheckpointData):
    collate: DataCollatorForTimeSeriesClassification

    def _batch(self, indices):
        return self.collate([self.rows[i] for i in indices])


class _ImageData(CheckpointData):
    def _batch(self, indices):
        return self.rows[indices.start : indices.stop]


def load_checkpoint_data(
    checkpoint: str | os.PathLike,
    dataset: str,
    *,
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    revision: str | None = None,
    trust_remote_code: bool = False,
    data_options: Mapping[str, Any] | None = None,
) -> CheckpointData:
    """Load ``checkpoint`` (a hub-ready folder or a Hub id) and ``split`` of ``dataset`` through its processor.

    Raises `training.UsageError` for a missing or unfinished local folder, an unknown split, a batch size < 1, data
    the model cannot take (other classes; for time series, another number of channels or longer series),
    `TimeSeriesDataError` for time series that cannot be read, and `model_folders.UnusableModelError` for weights
    that cannot give a working model (a weights file that cannot be read, a missing classifier head, NaN or
    infinite values).

    Args:
        dataset: for a time-series model, anything `load_timeseries` reads (a UEA problem name, a file or folder, a
            Hub dataset), its labels matched to the model's by name; for a ViT, anything `load_image_dataset` reads.
        data_dir: for a time-series model and a UEA problem name, the archive's folder (default: the shipped data).
        revision: the checkpoint's revision (a Hub dataset's is ``data_options["revision"]``).
        data_options: for a time-series model, more keywords of `load_timeseries` (``label_column``,
            ``series_id_column``, ``test_file``...) but ``class_names``: the classes are the model's labels.
    """
    if batch_size < 1:
        raise UsageError(f"batch_size {batch_size}: give a number of examples >= 1.")
    check_checkpoint(checkpoint)
    loading = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = _load_config(checkpoint, loading)
    if config.model_type == "primaldual-timeseries":
        class_names = [config.id2label[i] for i in range(len(config.id2label))]
        options = {"data_dir": data_dir, **(data_options or {})}
        try:
            with _quiet(_EMPTY_CLASS_LOGGER):  # the model's classes need not all be in the data: said in the result
                splits = load_timeseries(dataset, class_names=class_names, **options)
        except UnknownClassesError as err:  # class_names came from the model, not from an option the user gave
            raise UsageError(
                f"{dataset}: the labels {_quoted(err.unknown)} are not among the classes of the model {checkpoint} "
                f"({_quoted(err.classes)}): evaluate it on data of the classes it was trained on (or read its labels "
                "from the right column with --label_column)."
            ) from err
        rows = _split(splits, split, dataset)
        _check_series_fit(config, rows, checkpoint, f"{dataset} ({split} split)")
        model = load_checked_model(AutoModelForSequenceClassification, checkpoint, **loading)
        data = _TimeSeriesData(model, rows, batch_size)
        data.collate = DataCollatorForTimeSeriesClassification(AutoFeatureExtractor.from_pretrained(checkpoint, **loading))
    else:
        if data_options:
            given = ", ".join(f"--{name}" for name in sorted(data_options))
            raise UsageError(f"{given}: options of time-series data, which an image model does not take; leave them out.")
        rows = _split(_load_images(dataset, checkpoint), split, dataset)
        model = load_checked_model(AutoModelForImageClassification, checkpoint, **loading)
        processor = AutoImageProcessor.from_pretrained(checkpoint, revision=revision)
        transform = build_transforms(processor, False, horizontal_flip=False)
        data = _ImageData(model, rows.with_transform(transform), batch_size)
    _check_labels(model.config.id2label, data.rows.features["label"])
    return data


class HubUnreachableError(RuntimeError):
    """A Hub model or dataset could not be fetched (offline, the Hub unreachable): running the command again may
    work."""


def _load_config(checkpoint: str | os.PathLike, loading: Mapping[str, Any]) -> Any:
    """The checkpoint's config; transformers' OSError, which it raises for a missing repo and for a missing network
    alike, as `UsageError` (a local folder, a repo or revision that does not exist) or `HubUnreachableError`."""
    try:
        return AutoConfig.from_pretrained(checkpoint, **loading)
    except OSError as err:
        reason = str(err).strip().splitlines()[0]
        if looks_local(checkpoint) or isinstance(err.__cause__, (RepositoryNotFoundError, RevisionNotFoundError)):
            raise UsageError(
                f"{checkpoint}: no model config could be loaded ({reason}). Give a model folder, or the id (and "
                "--revision) of a model repo on the Hub that you can read."
            ) from err
        raise HubUnreachableError(
            f"{checkpoint}: the model could not be fetched from the Hub ({reason}). Check the network (and "
            "HF_ENDPOINT, HF_HUB_OFFLINE), then run the command again; a model already downloaded is read from the "
            "cache."
        ) from err


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Drop the records of ``logger_name`` inside the block."""
    logger = logging.getLogger(logger_name)
    previous, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = previous


def _load_images(dataset: str, checkpoint: str | os.PathLike) -> datasets.DatasetDict:
    """`load_image_dataset`, its errors as `UsageError` (data that is not an image set: a time-series name, a
    folder of other files) or `HubUnreachableError` (a Hub dataset that could not be fetched)."""
    try:
        return load_image_dataset(dataset)
    except ConnectionError as err:
        raise HubUnreachableError(
            f"{dataset}: {err}. The model {checkpoint} classifies images: give an image folder or zip, Fashion-MNIST "
            "IDX files, or a Hub image dataset (with the network); run the command again once the Hub is reachable."
        ) from err
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(
            f"{err} The model {checkpoint} classifies images: give an image folder or zip laid out "
            "<split>/<class name>/<image file>, Fashion-MNIST IDX files, or a Hub image dataset."
        ) from err


def looks_local(checkpoint: str | os.PathLike) -> bool:
    """Whether ``checkpoint`` names a local folder rather than a Hub repo id: it exists, or it is written as a path
    (absolute, ``./``, ``~``, more than one ``/``), or its first part is a local folder (``outputs/run``)."""
    text = str(checkpoint)
    path = Path(text).expanduser()
    if path.exists() or path.is_absolute() or text.startswith((".", "~")) or text.count("/") > 1 or "\\" in text:
        return True
    return "/" in text and Path(text.split("/")[0]).is_dir()


def check_checkpoint(checkpoint: str | os.PathLike) -> None:
    """Refuse (`UsageError`) a local ``checkpoint`` that is missing or not a model folder, or the output folder of a
    run that has not finished; a Hub repo id is left to `from_pretrained`."""
    if not looks_local(checkpoint):
        return
    folder = Path(checkpoint).expanduser()
    if not folder.is_dir():
        raise UsageError(
            f"{folder} is not a folder: give a training run's output folder (or one of its checkpoint-N folders), or a "
            "Hub repo id (namespace/name)."
        )
    finished = (folder / FINAL_FILES_MARKER).is_file() or (folder / "trainer_state.json").is_file()
    if not finished and any(folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
        raise UsageError(
            f"{folder} is a training run that has not finished (no {FINAL_FILES_MARKER}): finish or resume it "
            f"(--resume_from_checkpoint last), or evaluate one of its {PREFIX_CHECKPOINT_DIR}-N folders."
        )
    if not (folder / "config.json").is_file():
        raise UsageError(
            f"{folder} holds no config.json: it is not a saved model. Give a training run's output folder, one of its "
            f"{PREFIX_CHECKPOINT_DIR}-N folders, or a Hub repo id."
        )


def _split(splits: datasets.DatasetDict, split: str, dataset: str) -> datasets.Dataset:
    if split not in splits:
        raise UsageError(f"Unknown split {split!r} of {dataset}: choose one of {', '.join(splits)}.")
    return splits[split]


def evaluate_checkpoint(checkpoint: str | os.PathLike, dataset: str, **kwargs) -> EvaluationResult:
    """Accuracy of ``checkpoint`` on a split of ``dataset`` (arguments as :func:`load_checkpoint_data`)."""
    data = load_checkpoint_data(checkpoint, dataset, **kwargs)
    predictions, labels = [], []
    with torch.inference_mode():
        for batch in tqdm(data.batches(), total=-(-len(data.rows) // data.batch_size), desc="evaluating"):
            labels.append(batch.pop("labels").numpy())
            predictions.append(data.model(**batch).logits.argmax(-1).numpy())
    predictions, labels = np.concatenate(predictions), np.concatenate(labels)
    return EvaluationResult(
        accuracy=float((predictions == labels).mean()),
        predictions=predictions,
        labels=labels,
        class_names=data.class_names,
    )


def _check_labels(id2label: dict[int, str], feature: datasets.ClassLabel) -> None:
    model_names = [id2label[i] for i in range(len(id2label))]
    if model_names != list(feature.names):
        raise UsageError(
            f"The model's classes {model_names} are not the dataset's {list(feature.names)}: evaluate it on the "
            "dataset it was trained for."
        )


def _quoted(names: list[str], shown: int = 20) -> str:
    return ", ".join(map(repr, names[:shown])) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def _check_series_fit(config: Any, rows: datasets.Dataset, checkpoint: str | os.PathLike, where: str) -> None:
    """Refuse (`UsageError`) time series the model cannot take, before it is loaded: another number of channels
    than it was trained on, or series longer than its ``max_sequence_length`` (the feature extractor and the model
    would fail on the first batch with a raw error)."""
    channels = rows.features["past_values"].shape[1]
    if channels != config.num_input_channels:
        raise UsageError(
            f"{where} has {channels} channel(s) per series, but the model {checkpoint} was trained on "
            f"{config.num_input_channels} (num_input_channels): evaluate it on data with the channels it was trained "
            "on, read with the options it was trained with (--value_columns, --layout, --array_layout...)."
        )
    lengths = np.asarray(rows["length"])
    if len(lengths) and lengths.max() > config.max_sequence_length:
        longest = int(lengths.argmax())
        raise UsageError(
            f"{where}: series {longest} has {int(lengths.max())} time steps, but the model {checkpoint} takes at most "
            f"max_sequence_length={config.max_sequence_length}: evaluate it on series as long as those it was "
            "trained on (truncate or downsample the longer ones), or train a model with a larger max_sequence_length."
        )


def plot_confusion_matrix(result: EvaluationResult, path: str | os.PathLike, title: str = "") -> Path:
    """Save the row-normalised confusion matrix of ``result`` as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.45 * len(result.class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        result.labels, result.predictions, labels=range(len(result.class_names)),
        display_labels=result.class_names, normalize="true", values_format=".2f", ax=axes, colorbar=False,
        xticks_rotation="vertical",
    )
    # Wrapped to the axes' width (about 7 characters of the title font per inch of figure): a long title overflowed.
    axes.set_title("\n".join(textwrap.wrap(title or f"accuracy {result.accuracy:.4f}", width=int(size * 7))))
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
