"""Tests of the time-series feature extractor and its data collator, on the shipped JapaneseVowels set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_primaldual.data import SHIPPED_UEA_DIR, load_uea
from hf_primaldual.feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)


@pytest.fixture(scope="module")
def japanese_vowels():
    return load_uea("JapaneseVowels", data_dir=SHIPPED_UEA_DIR).with_format("numpy")


@pytest.fixture(scope="module")
def train_series(japanese_vowels) -> list[np.ndarray]:
    return list(japanese_vowels["train"]["past_values"])


@pytest.fixture(scope="module")
def fitted(train_series) -> PrimalDualTimeSeriesFeatureExtractor:
    return PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=29).fit(train_series)


def test_fit_matches_numpy_over_all_training_time_steps(fitted, train_series):
    stacked = np.concatenate(train_series).astype(np.float64)
    assert fitted.num_input_channels == 12 and fitted.is_fitted
    np.testing.assert_allclose(fitted.channel_mean, stacked.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fitted.channel_std, stacked.std(axis=0), rtol=1e-10)


def test_call_standardises_pads_and_masks(fitted, train_series):
    batch = train_series[:5]
    lengths = [len(series) for series in batch]
    output = fitted(batch)
    assert output["past_values"].shape == (5, max(lengths), 12)
    assert output["past_values"].dtype == torch.float32 and output["attention_mask"].dtype == torch.int64
    assert output["attention_mask"].sum(dim=1).tolist() == lengths
    mean, std = np.asarray(fitted.channel_mean), np.asarray(fitted.channel_std)
    for row, series in enumerate(batch):
        expected = (series.astype(np.float64) - mean) / std
        np.testing.assert_allclose(output["past_values"][row, : len(series)].numpy(), expected, rtol=1e-5, atol=1e-5)
        assert not output["past_values"][row, len(series) :].any()  # padding_value 0.0 at the end
        assert output["attention_mask"][row, : len(series)].all()
        assert not output["attention_mask"][row, len(series) :].any()


def test_standardised_training_set_has_zero_mean_unit_std(fitted, train_series):
    output = fitted(train_series, return_tensors="np")
    real = output["past_values"][output["attention_mask"].astype(bool)]
    np.testing.assert_allclose(real.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(real.std(axis=0), 1.0, atol=1e-5)


def test_padding_to_max_length(fitted, train_series):
    assert fitted(train_series[:3], padding="max_length")["past_values"].shape == (3, 29, 12)
    assert fitted(train_series[:3], padding="max_length", max_length=27)["attention_mask"].shape == (3, 27)
    with pytest.raises(ValueError, match="more than max_length=10"):
        fitted(train_series[:3], padding="max_length", max_length=10)
    with pytest.raises(ValueError, match="padding='max_length' only"):
        fitted(train_series[:3], max_length=40)
    with pytest.raises(ValueError, match="needs max_length"):
        PrimalDualTimeSeriesFeatureExtractor()(train_series[:3], padding="max_length")
    with pytest.raises(ValueError, match="padding must be"):
        fitted(train_series[:3], padding="do_not_pad")


def test_input_kinds_give_the_same_batch(fitted, train_series):
    series = train_series[0]
    reference = fitted([series])["past_values"]
    assert torch.equal(fitted(series)["past_values"], reference)  # one (time, channels) array
    assert torch.equal(fitted(torch.from_numpy(series))["past_values"], reference)
    assert torch.equal(fitted(series.tolist())["past_values"], reference)  # nested lists, as a datasets row
    assert torch.equal(fitted([series.tolist()])["past_values"], reference)
    assert torch.equal(fitted(series[None])["past_values"], reference)  # (batch, time, channels)
    equal_length = np.stack([s[:7] for s in train_series[:4]])
    assert torch.equal(fitted(equal_length)["past_values"], fitted(list(equal_length))["past_values"])


def test_unfitted_extractor_passes_values_through(train_series):
    output = PrimalDualTimeSeriesFeatureExtractor()(train_series[0])
    np.testing.assert_array_equal(output["past_values"][0].numpy(), train_series[0])


def test_constant_channel_is_only_centred(train_series):
    series = [np.concatenate([s, np.full((len(s), 1), 3.5, np.float32)], axis=1) for s in train_series[:10]]
    extractor = PrimalDualTimeSeriesFeatureExtractor().fit(series)
    assert extractor.channel_std[-1] == 1.0 and extractor.channel_mean[-1] == pytest.approx(3.5)
    shifted = series[0].copy()
    shifted[:, -1] = 4.0
    assert extractor(shifted)["past_values"][0, :, -1].tolist() == pytest.approx([0.5] * len(shifted))


def test_save_and_load_round_trip(fitted, train_series, tmp_path):
    fitted.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["feature_extractor_type"] == "PrimalDualTimeSeriesFeatureExtractor"
    assert config["num_input_channels"] == 12 and config["max_sequence_length"] == 29 and len(config["channel_std"]) == 12
    loaded = PrimalDualTimeSeriesFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == fitted.to_dict()
    assert torch.equal(loaded(train_series[:4])["past_values"], fitted(train_series[:4])["past_values"])
    assert loaded.model_input_names == ["past_values", "attention_mask"]


def test_wrong_channel_count_says_what_it_was_fitted_on(fitted, train_series):
    with pytest.raises(ValueError, match="Item 1 has 5 channels but this feature extractor was fitted on 12 channels"):
        fitted([train_series[0], train_series[1][:, :5]])
    with pytest.raises(ValueError, match="was created for 3 channels"):
        PrimalDualTimeSeriesFeatureExtractor(num_input_channels=3)(train_series[0])


def test_series_longer_than_max_sequence_length(train_series):
    extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=20)
    long_series = next(s for s in train_series if len(s) > 20)
    message = r"The series has \d+ time steps, more than .*max_sequence_length=20"
    with pytest.raises(ValueError, match=message) as caught:
        extractor(long_series)
    assert "Truncate" in str(caught.value) and "larger max_sequence_length" in str(caught.value)


def test_non_finite_values_name_the_item(fitted, train_series):
    with_nan = train_series[1].copy()
    with_nan[3, 2] = np.nan
    message = r"Item 1 contains NaN or infinite values \(first at time step 3, channel 2\)"
    with pytest.raises(ValueError, match=message) as caught:
        fitted([train_series[0], with_nan])
    assert "read_ts" in str(caught.value)
    with pytest.raises(ValueError, match="NaN or infinite"):
        PrimalDualTimeSeriesFeatureExtractor().fit([np.full((4, 2), np.inf, np.float32)])


def test_shape_errors(fitted, train_series):
    with pytest.raises(ValueError, match=r"Item 1 has shape \(12,\); expected \(time, channels\)"):
        fitted([train_series[0], train_series[1][0]])
    with pytest.raises(ValueError, match="1 dimension"):
        fitted(train_series[0][0])
    with pytest.raises(ValueError, match="no time steps"):
        fitted([train_series[0][:0]])
    with pytest.raises(ValueError, match="channel_mean and channel_std"):
        PrimalDualTimeSeriesFeatureExtractor(channel_mean=[0.0, 1.0])


def test_collator_builds_a_trainer_batch(fitted, japanese_vowels):
    rows = [japanese_vowels["train"][i] for i in (0, 1, 2)]
    batch = DataCollatorForTimeSeriesClassification(fitted)(rows)
    assert set(batch) == {"past_values", "attention_mask", "labels"}  # the `length` column is not passed on
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [int(row["label"]) for row in rows]
    assert batch["attention_mask"].sum(dim=1).tolist() == [int(row["length"]) for row in rows]
    fixed = DataCollatorForTimeSeriesClassification(fitted, padding="max_length")(
        [{"past_values": row["past_values"].tolist(), "labels": row["label"]} for row in rows]
    )
    assert fixed["past_values"].shape == (3, 29, 12) and torch.equal(fixed["labels"], batch["labels"])
