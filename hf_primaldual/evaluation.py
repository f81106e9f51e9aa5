"""Evaluating a trained checkpoint (a local folder or a Hub id) on a dataset split: predictions, accuracy and a
confusion-matrix plot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
)

from .data.images import build_transforms, load_image_dataset
from .data.uea import load_uea
from .feature_extraction_primaldual_timeseries import DataCollatorForTimeSeriesClassification


@dataclass
class EvaluationResult:
    accuracy: float
    predictions: np.ndarray
    labels: np.ndarray
    class_names: list[str]


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
) -> CheckpointData:
    """Load ``checkpoint`` (a hub-ready folder or a Hub id) and ``split`` of ``dataset`` through its processor.

    Args:
        dataset: for a time-series model, a UEA problem name (read from ``data_dir``, default the shipped data);
            for a ViT, anything `load_image_dataset` reads.
    """
    loading = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(checkpoint, **loading)
    if config.model_type == "primaldual-timeseries":
        model = AutoModelForSequenceClassification.from_pretrained(checkpoint, **loading).eval()
        data = _TimeSeriesData(model, load_uea(dataset, data_dir=data_dir)[split], batch_size)
        data.collate = DataCollatorForTimeSeriesClassification(AutoFeatureExtractor.from_pretrained(checkpoint, **loading))
    else:
        model = AutoModelForImageClassification.from_pretrained(checkpoint, **loading).eval()
        processor = AutoImageProcessor.from_pretrained(checkpoint, revision=revision)
        transform = build_transforms(processor, False, horizontal_flip=False)
        data = _ImageData(model, load_image_dataset(dataset)[split].with_transform(transform), batch_size)
    _check_labels(model.config.id2label, data.rows.features["label"])
    return data


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
        raise ValueError(
            f"The model's classes {model_names} are not the dataset's {list(feature.names)}: evaluate it on the "
            "dataset it was trained for."
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
    axes.set_title(title or f"accuracy {result.accuracy:.4f}")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
