"""Inputs and configs that are refused with a message saying what to change, instead of being misread or failing
deep inside torch: masks in other conventions, unnormalised images, impossible configs, misspelt fields, labels
the loss cannot take, and checkpoints that do not say their attention type."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)

CONFIG_ERRORS = (ValueError, StrictDataclassError)
TINY_VIT = dict(hidden_size=24, num_hidden_layers=1, num_attention_heads=3, intermediate_size=48, image_size=32,
                patch_size=8, num_labels=5)
TINY_TS = dict(num_input_channels=3, max_sequence_length=16, hidden_size=16, num_hidden_layers=1,
               num_attention_heads=4, intermediate_size=32, num_labels=4)


@pytest.fixture
def series_model():
    torch.manual_seed(0)
    return PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS, attention_type="bn")).eval()


@pytest.fixture
def vit_model():
    torch.manual_seed(0)
    return PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type="bn_sh")).eval()


# --- masks ----------------------------------------------------------------------------------------------------------


def test_float_zero_one_masks_are_the_integer_mask(series_model):
    x = torch.randn(2, 10, 3)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    expected = series_model(x, attention_mask=mask).logits
    for same in (mask.float(), mask.bool(), mask.to(torch.int32)):
        torch.testing.assert_close(series_model(x, attention_mask=same).logits, expected)


def test_additive_and_other_float_masks_are_refused(series_model):
    x = torch.randn(2, 10, 3)
    additive = torch.zeros(2, 10)
    additive[1, 6:] = float("-inf")
    with pytest.raises(ValueError, match=r"1 \(attend\) and 0 \(padding\) only.*additive mask.*\(additive_mask == 0\)"):
        series_model(x, attention_mask=additive)
    with pytest.raises(ValueError, match="1 \\(attend\\) and 0 \\(padding\\) only"):
        series_model(x, attention_mask=torch.full((2, 10), 0.5))
    with pytest.raises(ValueError, match=r"must be \(batch_size, sequence_length\) = \(2, 10\)"):
        series_model(x, attention_mask=torch.ones(2, 1, 1, 10))


# --- images ---------------------------------------------------------------------------------------------------------


def test_uint8_pixels_are_refused_with_the_image_processor_as_fix(vit_model):
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(ValueError, match="torch.uint8, not floats: normalise the images.*AutoImageProcessor"):
        vit_model(pixels)


def test_an_image_without_batch_dimension_is_refused(vit_model):
    with pytest.raises(ValueError, match=r"\(batch_size, num_channels, height, width\).*pixel_values\[None\]"):
        vit_model(torch.randn(3, 32, 32))


# --- configs --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attention_probs_dropout_prob": 1.0}, r"attention_probs_dropout_prob is a probability.*\[0, 1\)"),
        ({"hidden_dropout_prob": -0.1}, r"hidden_dropout_prob is a probability"),
        ({"num_hidden_layers": 0}, "num_hidden_layers must be an integer >= 1, got 0"),
        ({"num_attention_heads": 0}, "num_attention_heads must be an integer >= 1, got 0"),
        ({"patch_size": 0}, "patch_size must be >= 1"),
        ({"attention_window": 2.5}, "attention_window must be an integer"),
    ],
)
def test_impossible_configs_are_refused_at_construction(overrides, message):
    with pytest.raises(CONFIG_ERRORS, match=message):
        PrimalDualViTConfig(**{**TINY_VIT, **overrides})


@pytest.mark.parametrize("config_class", [PrimalDualViTConfig, PrimalDualTimeSeriesConfig])
def test_a_misspelt_field_is_refused_with_the_right_name(config_class):
    with pytest.raises(ValueError, match="no field 'attenton_type': did you mean 'attention_type'"):
        config_class(attenton_type="bn")
    with pytest.raises(ValueError, match="did you mean 'head_scales'"):
        config_class(head_scale=[1, 2, 4])
    assert config_class(num_labels=3, torch_dtype="float32").num_labels == 3  # transformers' own kwargs pass


# --- labels ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, message",
    [
        (torch.tensor([0, 7]), r"labels \(\[7\]\) are out of range for num_labels=4.*\[0, 3\]"),
        (torch.tensor([-3, 1]), r"labels \(\[-3\]\) are out of range"),
        (torch.tensor([0.0, 2.0]), r"labels are floats of shape \(2,\): pass class indices as integers"),
        (torch.tensor([[1, 0, 0, 0], [0, 0, 1, 0]]), r"class indices of shape \(2,\).*labels.argmax\(-1\)"),
        (torch.tensor([-100, -100]), "Every label is -100"),
        (torch.tensor([0, 1, 2]), "labels has 3 entries for a batch of 2"),
    ],
    ids=["too-large", "negative", "float", "one-hot", "all-ignored", "batch"],
)
def test_labels_the_loss_cannot_take_are_refused(series_model, vit_model, labels, message):
    with pytest.raises(ValueError, match=message):
        series_model(torch.randn(2, 10, 3), labels=labels)
    vit_model.config.num_labels = 4  # the same label space for both heads' checks
    with pytest.raises(ValueError, match=message):
        vit_model(torch.randn(2, 3, 32, 32), labels=labels)


def test_ignored_labels_and_multi_label_targets_are_accepted():
    # transformers' loss records the problem type its first labels imply in the config: one model per kind
    x = torch.randn(2, 10, 3)
    single, multi = (PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS)).eval() for _ in "ab")
    assert torch.isfinite(single(x, labels=torch.tensor([2, -100])).loss)
    assert torch.isfinite(multi(x, labels=torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])).loss)
    with pytest.raises(ValueError, match="labels are floats"):  # after integer labels, floats are a mistake
        single(x, labels=torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]]))


def test_batch_norm_training_on_a_single_time_step_says_what_to_change():
    model = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS)).train()
    with pytest.raises(ValueError, match="more than one real time step.*norm_type='layer'"):
        model(torch.randn(1, 1, 3), labels=torch.tensor([1]))
    layer_norm = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS, norm_type="layer"))
    assert torch.isfinite(layer_norm.train()(torch.randn(1, 1, 3), labels=torch.tensor([1])).loss)


# --- checkpoints ----------------------------------------------------------------------------------------------------


def test_attention_type_is_always_written_and_its_absence_warned_about(tmp_path):
    PrimalDualTimeSeriesConfig(**TINY_TS).save_pretrained(tmp_path)  # softmax: the default
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["attention_type"] == "softmax"
    del saved["attention_type"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with CaptureLogger(logging.get_logger("hf_primaldual.configuration_attention")) as captured:
        config = PrimalDualTimeSeriesConfig.from_pretrained(tmp_path)
    assert config.attention_type == "softmax"
    assert "does not say its attention_type" in captured.out


def test_bn_sh_heads_that_pool_the_whole_grid_into_one_key_are_warned_about():
    """Batch norm over two keys (the [CLS] token and one pooled key) leaves each key feature at +-d / sqrt(d^2 + eps):
    as in the image budget's ViT (a 4 x 4 grid with SH scales 1, 2, 4), here on a 3 x 3 grid, which no other test
    builds (the warning is given once per message)."""
    base = {"image_size": 48, "patch_size": 16, "hidden_size": 96, "num_attention_heads": 3, "attention_type": "bn_sh"}
    logger = logging.get_logger("hf_primaldual.configuration_primaldual_vit")
    with CaptureLogger(logger) as captured:
        PrimalDualViTConfig(**base)
    assert "3 x 3 patch grid: scale 4 pools the whole grid into one key" in captured.out
    assert "Use scales below 3" in captured.out
    for overrides in ({"patch_size": 8}, {"head_scales": [1, 2, 2]}, {"attention_type": "sh"}, {"attention_type": "bn"}):
        with CaptureLogger(logger) as captured:
            PrimalDualViTConfig(**{**base, **overrides})
        assert captured.out == "", overrides

    # the arithmetic behind it: with two keys every normalised key feature is +-1 (up to eps)
    from hf_primaldual.attention_reference import batch_normalize_queries_keys

    # (float64: in float32 two keys that nearly agree in a feature leave it at 1 +- 1e-4, as CI once drew)
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(1, 1, 2, 8, generator=generator, dtype=torch.float64)
    queries = torch.randn(1, 1, 3, 8, generator=generator, dtype=torch.float64)
    _, normalised = batch_normalize_queries_keys(queries, keys, eps=1e-12)
    assert torch.allclose(normalised.abs(), torch.ones_like(normalised), atol=1e-5)
