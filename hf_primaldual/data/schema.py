"""The one layout of every time-series classification dataset of the package, whatever its source: what
`load_uea` and `load_timeseries` return and what the training commands, the estimator and the collator read."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence

import datasets
import numpy as np


logger = logging.getLogger(__name__)


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


def classes_without_training_cases(
    train_labels: Sequence[Hashable], other_labels: Mapping[str, Sequence[Hashable]]
) -> list[tuple[str, Hashable, int, int]]:
    """The classes of another split that the training split never holds: the model could not learn them.

    Args:
        train_labels: the label of each training example.
        other_labels: per other split (e.g. `"test"`), the label of each of its examples.

    Returns:
        One `(split, label, number of its examples in that split, index of the first)` per such class, in the order
        they first appear.
    """
    trained = set(train_labels)
    found = []
    for split, labels in other_labels.items():
        counts = Counter(label for label in labels if label not in trained)
        firsts = {label: index for index, label in reversed(list(enumerate(labels))) if label in counts}
        found += [(split, label, count, firsts[label]) for label, count in counts.items()]
    return found


def warn_about_empty_classes(
    class_names: Sequence[str], labels: Sequence[Sequence[str]], declared_by: str, where: str = ""
) -> str:
    """Log a warning for the classes of `class_names` that no example of any split of `labels` has, and return the
    sentence that says so for the dataset's description (its model card), or "" when every class has examples.

    Such a class is not refused: a label set can rightly be larger than the data at hand (evaluating a model on a
    subset of its classes, keeping the label ids of a larger set). But the model built on it has an output that no
    example trains or tests, which must not go unsaid.

    Args:
        class_names: the declared classes, in label-id order.
        labels: the class names of the examples, one sequence per split.
        declared_by: what declared the classes, without local paths (the description goes into model cards), e.g.
            "the @classLabel header" or "--class_names".
        where: the source, for the warning only (e.g. "the training split (path/to/x.ts)").
    """
    present = {label for split in labels for label in split}
    empty = [name for name in class_names if name not in present]
    if not empty:
        return ""
    sentence = (
        f"The class(es) {', '.join(map(repr, empty))}, declared by {declared_by}, have no series in any split: a model "
        "trained on this data has an output for them that no series trains (it is hardly ever predicted), and no "
        "accuracy on them is measured."
    )
    logger.warning("%s%s If they are not classes of this data, remove them from %s.",
                   f"{where}: " if where else "", sentence, declared_by)
    return sentence
