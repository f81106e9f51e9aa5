"""The one layout of every time-series classification dataset of the package, whatever its source: what
`load_uea` and `load_timeseries` return and what the training commands, the estimator and the collator read."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np


def series_features(num_channels: int, class_names: Sequence[str]) -> datasets.Features:
    """`past_values` (float32, shape (time, channels), time varying per row), `length` (int32, the number of time
    steps) and `label` (`ClassLabel` with `class_names`, in that order)."""
    return datasets.Features(
        {
            "past_values": datasets.Array2D(shape=(None, num_channels), dtype="float32"),
            "length": datasets.Value("int32"),
            "label": datasets.ClassLabel(names=list(class_names)),
        }
    )


def series_dataset(
    series: Sequence[np.ndarray],
    labels: Sequence[int],
    features: datasets.Features,
    info: datasets.DatasetInfo,
    split: str,
) -> datasets.Dataset:
    """One split as a `datasets.Dataset` of `features` (see `series_features`).

    Args:
        series: one float32 array of shape (time_i, channels) per example.
        labels: per example, its class index into the `label` feature's names.
        info: the dataset's description, copied into the split (with `features`).
        split: the split's name, e.g. `"train"`.
    """
    columns = {"past_values": list(series), "length": [len(values) for values in series], "label": list(labels)}
    info = info.copy()
    info.features = features
    return datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
