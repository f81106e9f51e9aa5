"""Univariate series everywhere, on the real ItalyPowerDemand (UCR, 24 steps): (time,) rows through the collator, the
feature extractor and the pipeline give what (time, 1) rows give; the model's error for a (batch, time) input names
the fix that works (`[..., None]`); string labels reaching the collator are refused with the way to encode them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hf_primaldual import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesClassificationPipeline,
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesFeatureExtractor,
    PrimalDualTimeSeriesForClassification,
)
from hf_primaldual.data import load_uea

ITALY = Path(__file__).resolve().parents[1] / "fixtures" / "ItalyPowerDemand"


@pytest.fixture(scope="module")
def italy():
    return load_uea(train_path=ITALY / "ItalyPowerDemand_TRAIN.ts", test_path=ITALY / "ItalyPowerDemand_TEST.ts.gz")


@pytest.fixture(scope="module")
def extractor(italy) -> PrimalDualTimeSeriesFeatureExtractor:
    return PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=24).fit(italy["train"]["past_values"])


@pytest.fixture(scope="module")
def model() -> PrimalDualTimeSeriesForClassification:
    torch.manual_seed(0)
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=1, max_sequence_length=24, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, attention_type="bn", id2label={0: "1", 1: "2"}, label2id={"1": 0, "2": 1},
    )
    return PrimalDualTimeSeriesForClassification(config).eval()


def test_a_batch_of_univariate_rows_is_collated_as_that_many_series(italy, extractor):
    rows = [italy["train"][i] for i in range(5)]
    flat = [{"past_values": np.asarray(row["past_values"])[:, 0], "label": row["label"]} for row in rows]
    batch = DataCollatorForTimeSeriesClassification(extractor)(flat)
    assert batch["past_values"].shape == (5, 24, 1) and batch["attention_mask"].shape == (5, 24)
    reference = DataCollatorForTimeSeriesClassification(extractor)(rows)
    torch.testing.assert_close(batch["past_values"], reference["past_values"], rtol=0, atol=0)
    assert batch["labels"].tolist() == [row["label"] for row in rows]
    # a ragged batch of univariate rows too (shorter series padded and masked)
    ragged = DataCollatorForTimeSeriesClassification(extractor)([{"past_values": list(flat[0]["past_values"][:10])}, flat[1]])
    assert ragged["past_values"].shape == (2, 24, 1) and ragged["attention_mask"].sum(1).tolist() == [10, 24]


def test_the_extractor_reads_a_time_axis_alone_as_one_univariate_series(italy, extractor):
    values = np.asarray(italy["test"][0]["past_values"])
    torch.testing.assert_close(extractor(values[:, 0])["past_values"], extractor(values)["past_values"], rtol=0, atol=0)
    twelve = PrimalDualTimeSeriesFeatureExtractor(num_input_channels=12)
    with pytest.raises(ValueError, match=r"has shape \(24,\); expected \(time, channels\) with 12 channels: 1 dimension"):
        twelve(values[:, 0])


def test_the_pipeline_takes_univariate_series(italy, extractor, model):
    pipe = PrimalDualTimeSeriesClassificationPipeline(model=model, feature_extractor=extractor, device="cpu")
    values = np.asarray(italy["test"][0]["past_values"])
    assert pipe(values[:, 0]) == pipe(values)
    assert pipe([values[:, 0], values[:12, 0]]) == pipe([values, values[:12]])


def test_the_model_says_how_to_add_the_channel_axis_of_univariate_series(italy, model):
    batch = torch.tensor(np.stack(italy["test"].with_format("numpy")["past_values"][:4]))[..., 0]  # (4, 24)
    with pytest.raises(ValueError, match=r"got shape \(4, 24\): for a batch of univariate series \(batch_size, time\) "
                                         r"add the channel axis: past_values\[\.\.\., None\]"):
        model(past_values=batch)
    assert model(past_values=batch[..., None]).logits.shape == (4, 2)  # the fix it names works
    with pytest.raises(ValueError, match=r"past_values\[None, :, None\]"):
        model(past_values=batch[0])


def test_string_labels_at_the_collator_say_how_to_encode_them(italy, extractor):
    rows = [{"past_values": italy["train"][0]["past_values"], "label": "Standing"}]
    with pytest.raises(ValueError, match=r"The label 'Standing' is not a class index.*load_timeseries.*class_encode_column"):
        DataCollatorForTimeSeriesClassification(extractor)(rows)
