"""Feature extractor of the PrimalDualTimeSeries models: per-channel standardisation and padding of multivariate
series, plus the `Trainer` data collator built on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from transformers import BatchFeature, FeatureExtractionMixin
from transformers.utils import TensorType


# One series of shape (time, channels): numpy, torch, or nested Python lists (a `datasets` row).
SeriesInput = np.ndarray | torch.Tensor | Sequence[Sequence[float]]

# A channel whose std is at float32 rounding level is constant: dividing by it would turn any test-time deviation
# into a huge value, so such a channel keeps std 1 and is only centred (as scikit-learn's StandardScaler does).
_RELATIVE_STD_FLOOR = 1e-6


class PrimalDualTimeSeriesFeatureExtractor(FeatureExtractionMixin):
    r"""
    Prepares multivariate time series for [`PrimalDualTimeSeriesModel`]: standardises each channel with statistics
    fitted on the training series ([`~PrimalDualTimeSeriesFeatureExtractor.fit`]), then pads a batch at the end to
    a common length with an attention mask.

    Args:
        num_input_channels (`int`, *optional*):
            Number of channels C every series must have. Set by `fit` when not given.
        channel_mean (`list[float]`, *optional*):
            Per-channel mean subtracted from the values (length C). `None` (with `channel_std`): not fitted, the
            values pass through unchanged.
        channel_std (`list[float]`, *optional*):
            Per-channel standard deviation the centred values are divided by (length C, all > 0).
        max_sequence_length (`int`, *optional*):
            Longest series accepted (the model's `max_sequence_length`); also the length `padding="max_length"`
            pads to by default. `None`: no limit.
        padding_value (`float`, *optional*, defaults to 0.0):
            Value of the padded time steps of `past_values` (after standardisation, 0.0 is the channel mean).
    """

    model_input_names = ["past_values", "attention_mask"]

    def __init__(
        self,
        num_input_channels: int | None = None,
        channel_mean: Sequence[float] | None = None,
        channel_std: Sequence[float] | None = None,
        max_sequence_length: int | None = None,
        padding_value: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if (channel_mean is None) != (channel_std is None):
            raise ValueError("Give both channel_mean and channel_std (a fitted extractor) or neither (unfitted).")
        if channel_mean is not None:
            num_input_channels = len(channel_mean) if num_input_channels is None else num_input_channels
            if len(channel_mean) != num_input_channels or len(channel_std) != num_input_channels:
                raise ValueError(
                    f"channel_mean and channel_std need one entry per channel ({num_input_channels}); got "
                    f"{len(channel_mean)} and {len(channel_std)}."
                )
            if min(channel_std) <= 0:
                raise ValueError(f"channel_std must be positive, got {list(channel_std)}.")
        if max_sequence_length is not None and max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be >= 1 or None, got {max_sequence_length}.")
        self.num_input_channels = num_input_channels
        self.channel_mean = None if channel_mean is None else [float(value) for value in channel_mean]
        self.channel_std = None if channel_std is None else [float(value) for value in channel_std]
        self.max_sequence_length = max_sequence_length
        self.padding_value = float(padding_value)

    @property
    def is_fitted(self) -> bool:
        return self.channel_mean is not None

    def fit(self, series: Iterable[SeriesInput]) -> PrimalDualTimeSeriesFeatureExtractor:
        """Fit the per-channel mean and std on training series, over all their time steps.

        Uses the population std (ddof=0), combined series by series (Chan et al.'s parallel update) so the training
        set is never concatenated in memory.

        Args:
            series: the training series, each of shape (time, channels), e.g. `dataset["train"]["past_values"]`.

        Returns:
            `self`, fitted (and with `num_input_channels` set).
        """
        count, mean, sum_squares = 0, None, None
        for index, item in enumerate(series):
            values = self._to_array(item, f"item {index}").astype(np.float64)
            if mean is None:
                self.num_input_channels = self.num_input_channels or values.shape[1]
                mean, sum_squares = np.zeros(values.shape[1]), np.zeros(values.shape[1])
            self._check_channels(values, f"item {index}")
            item_count, item_mean = len(values), values.mean(axis=0)
            delta = item_mean - mean
            total = count + item_count
            mean = mean + delta * item_count / total
            sum_squares += ((values - item_mean) ** 2).sum(axis=0) + delta**2 * count * item_count / total
            count = total
        if count == 0:
            raise ValueError("fit() needs at least one training series.")
        std = np.sqrt(sum_squares / count)
        std[std <= _RELATIVE_STD_FLOOR * np.maximum(1.0, np.abs(mean))] = 1.0
        self.channel_mean, self.channel_std = mean.tolist(), std.tolist()
        return self

    def __call__(
        self,
        series: SeriesInput | Sequence[SeriesInput],
        padding: Literal["longest", "max_length"] = "longest",
        max_length: int | None = None,
        return_tensors: str | TensorType | None = "pt",
    ) -> BatchFeature:
        """Standardise and pad one series or a batch of series.

        Args:
            series: one series of shape (time, channels) (or (time,) if univariate), or a list of them (lengths may
                differ), or an array of shape (batch, time, channels) (or (batch, time) for a univariate extractor).
                numpy, torch or nested lists.
            padding: `"longest"` pads to the longest series of the batch; `"max_length"` to `max_length`.
            max_length: padded length for `padding="max_length"`; defaults to `max_sequence_length`.
            return_tensors: `"pt"` (default) or `"np"`.

        Returns:
            `BatchFeature` with `past_values` (float32, (batch, time, channels), standardised, padded at the end with
            `padding_value`) and `attention_mask` (int64, (batch, time), 1 on real time steps, 0 on padding).
        """
        batch = _as_batch(series, self.num_input_channels)
        names = ["the series"] if len(batch) == 1 and batch[0] is series else [f"item {i}" for i in range(len(batch))]
        arrays = [self._to_array(item, name) for item, name in zip(batch, names)]
        for values, name in zip(arrays, names):
            self._check_channels(values, name)
            self._check_length(values, name)
        longest = max(len(values) for values in arrays)
        if padding == "longest":
            if max_length is not None:
                raise ValueError("max_length is used with padding='max_length' only; drop it or change padding.")
            length = longest
        elif padding == "max_length":
            length = max_length if max_length is not None else self.max_sequence_length
            if length is None:
                raise ValueError(
                    "padding='max_length' needs max_length, or an extractor with max_sequence_length set."
                )
            if longest > length:
                raise ValueError(
                    f"A series has {longest} time steps, more than max_length={length}: truncate it or pad to a "
                    "larger max_length."
                )
        else:
            raise ValueError(f"padding must be 'longest' or 'max_length', got {padding!r}.")

        num_channels = arrays[0].shape[1]
        past_values = np.full((len(arrays), length, num_channels), self.padding_value, dtype=np.float32)
        attention_mask = np.zeros((len(arrays), length), dtype=np.int64)
        for row, values in enumerate(arrays):
            past_values[row, : len(values)] = self._standardise(values)
            attention_mask[row, : len(values)] = 1
        return BatchFeature(
            {"past_values": past_values, "attention_mask": attention_mask}, tensor_type=return_tensors
        )

    def _standardise(self, values: np.ndarray) -> np.ndarray:
        if not self.is_fitted:
            return values
        mean = np.asarray(self.channel_mean, dtype=np.float32)
        std = np.asarray(self.channel_std, dtype=np.float32)
        return (values - mean) / std

    def _to_array(self, item: SeriesInput, name: str) -> np.ndarray:
        """`item` as a finite float32 array of shape (time, channels), or a ValueError naming `name`."""
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        try:
            values = np.asarray(item, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"{name.capitalize()} is not a numeric array of shape (time, channels): {error}"
            ) from None
        if values.ndim == 1:  # one univariate series
            if self.num_input_channels not in (None, 1):
                raise ValueError(
                    f"{name.capitalize()} has shape {values.shape}; expected (time, channels) with "
                    f"{self.num_input_channels} channels: 1 dimension is read as a univariate series, and this feature "
                    f"extractor takes {self.num_input_channels} channels."
                )
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(
                f"{name.capitalize()} has shape {values.shape}; expected (time, channels), or (time,) for a univariate "
                "series."
            )
        if len(values) == 0:
            raise ValueError(f"{name.capitalize()} has no time steps.")
        finite = np.isfinite(values)
        if not finite.all():
            time, channel = (int(index[0]) for index in np.nonzero(~finite))
            raise ValueError(
                f"{name.capitalize()} contains NaN or infinite values (first at time step {time}, channel "
                f"{channel}). Fill missing values first, e.g. by linear interpolation along time as "
                "hf_primaldual.data.read_ts/load_uea do."
            )
        return values

    def _check_channels(self, values: np.ndarray, name: str) -> None:
        if self.num_input_channels is not None and values.shape[1] != self.num_input_channels:
            origin = "was fitted on" if self.is_fitted else "was created for"
            raise ValueError(
                f"{name.capitalize()} has {values.shape[1]} channels but this feature extractor {origin} "
                f"{self.num_input_channels} channels: expected shape (time, {self.num_input_channels}). Check the channel axis "
                "is last, or fit a new extractor on this data."
            )

    def _check_length(self, values: np.ndarray, name: str) -> None:
        if self.max_sequence_length is not None and len(values) > self.max_sequence_length:
            raise ValueError(
                f"{name.capitalize()} has {len(values)} time steps, more than this feature extractor's "
                f"max_sequence_length={self.max_sequence_length}. Truncate the series (e.g. values[:"
                f"{self.max_sequence_length}]) or use an extractor and model with a larger max_sequence_length."
            )


@dataclass
class DataCollatorForTimeSeriesClassification:
    """`Trainer` data collator: turns dataset rows `{"past_values", "label"}` into a padded model batch.

    Rows are those of `hf_primaldual.data.load_uea` (other columns such as `length` are ignored: the attention
    mask is rebuilt from the series themselves).

    Args:
        feature_extractor: a fitted [`PrimalDualTimeSeriesFeatureExtractor`].
        padding: as in the extractor's `__call__`; `"max_length"` gives every batch the same shape.
        max_length: as in the extractor's `__call__`.
    """

    feature_extractor: PrimalDualTimeSeriesFeatureExtractor
    padding: Literal["longest", "max_length"] = "longest"
    max_length: int | None = None

    def __call__(self, features: list[Mapping[str, Any]]) -> BatchFeature:
        """Collate rows into `past_values` (batch, time, channels), `attention_mask` (batch, time) and, when the
        rows carry `label` or `labels`, `labels` (int64, (batch,)). A row's `past_values` is (time, channels), or
        (time,) for a univariate series."""
        batch = self.feature_extractor(
            # each row is one series: a univariate (time,) row gets its channel axis here, so that a batch of them is
            # not read as one series of `batch` time steps
            [_with_channel_axis(row["past_values"]) for row in features],
            padding=self.padding,
            max_length=self.max_length,
            return_tensors="pt",
        )
        label_key = next((key for key in ("labels", "label") if key in features[0]), None)
        if label_key is not None:
            batch["labels"] = torch.tensor([_class_index(row[label_key]) for row in features], dtype=torch.long)
        return batch


def _with_channel_axis(values: SeriesInput) -> np.ndarray | torch.Tensor:
    """A (time,) series as (time, 1); any other shape as it is (the extractor checks it)."""
    if not hasattr(values, "ndim"):
        values = np.asarray(values, dtype=np.float32)
    return values[:, None] if values.ndim == 1 else values


def _class_index(label: Any) -> int:
    if isinstance(label, (str, bytes)) or not float(label).is_integer():
        raise ValueError(
            f"The label {label!r} is not a class index: the collator takes integer labels. Encode the label column "
            "first: load the data with hf_primaldual.data.load_timeseries (a ClassLabel with the class names), or "
            "dataset.class_encode_column('label')."
        )
    return int(label)


def _as_batch(series: SeriesInput | Sequence[SeriesInput], num_channels: int | None = None) -> list[SeriesInput]:
    """Split the input of `__call__` into a list of series, telling one series (depth 1: (time,), depth 2: (time,
    channels)) from a batch (depth 3). A depth-2 input is a batch of univariate series where it cannot be one
    series: its rows differ in length, or they are longer than 1 while `num_channels` is 1."""
    depth = _depth(series)
    if depth == 2 and isinstance(series, (list, tuple)) and len({len(row) for row in series}) > 1:
        return list(series)  # rows of different lengths: univariate series of different lengths
    if depth == 2 and num_channels == 1 and len(series) and len(series[0]) != 1:
        return list(series)  # (batch, time) for a univariate extractor or model
    if depth in (1, 2):  # one series, univariate (time,) or (time, channels)
        return [series]
    if depth == 3:
        return list(series)
    raise ValueError(
        f"Expected one series of shape (time, channels) or (time,), or a batch of them; got an input with {depth} "
        "dimension(s)."
    )


def _depth(value: Any) -> int:
    """Number of leading dimensions, looking only at first elements (so ragged batches of series work)."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        # A ragged batch as `datasets` returns it in numpy format: an object array of (time, channels) arrays.
        return value.ndim + (_depth(value.flat[0]) if value.size else 0)
    if hasattr(value, "ndim"):
        return value.ndim
    if isinstance(value, (list, tuple)):
        return 1 + (_depth(value[0]) if len(value) else 0)
    return 0


__all__ = ["DataCollatorForTimeSeriesClassification", "PrimalDualTimeSeriesFeatureExtractor"]
