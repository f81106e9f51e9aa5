"""Configs from elsewhere: settings that are not finite, mistyped or out of range, and sizes that would hang or
exhaust memory while a model is built, are refused at once, naming the field (in Python, in config.json, and in
the stock-model settings)."""

from __future__ import annotations

import json
import time

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import ViTConfig, ViTForImageClassification

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
)

# transformers' @strict configs wrap a validator's ValueError in its own error
CONFIG_ERRORS = (ValueError, StrictDataclassError)
BAD_SETTINGS = [
    ("bn_eps", float("nan")), ("bn_eps", float("inf")), ("bn_eps", -1.0), ("bn_eps", 0.0),
    ("bn_mean_weight", float("inf")), ("bn_mean_weight", float("nan")), ("bn_use_std", "yes"),
    ("attention_window", 10**12), ("attention_window", 2.5), ("head_scales", [1, 2, 10**9]),
    ("head_scales", [1, True, 2]), ("sh_pooling", "median"),
]


@pytest.mark.parametrize("name, value", BAD_SETTINGS, ids=[f"{n}={v}" for n, v in BAD_SETTINGS])
def test_a_bad_setting_is_refused_by_name(name, value):
    with pytest.raises(CONFIG_ERRORS, match=name):
        PrimalDualViTConfig(attention_type="bn_sh", **{name: value})


@pytest.mark.parametrize("name, value", BAD_SETTINGS[:8], ids=[f"{n}={v}" for n, v in BAD_SETTINGS[:8]])
def test_a_bad_setting_of_a_stock_model_is_refused_by_name(name, value):
    model = ViTForImageClassification(ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                                                intermediate_size=48, image_size=32, patch_size=8)).eval()
    model.config.primaldual_attention = {name: value}
    model.set_attn_implementation("primaldual_bn")
    with pytest.raises(ValueError, match=f"primaldual_attention: {name}"):
        model(pixel_values=torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("name, value", [("num_hidden_layers", 10**7), ("num_labels", 10**8),
                                         ("max_sequence_length", 10**12), ("hidden_size", 2**40)])
def test_oversized_configs_are_refused_before_anything_is_built(tmp_path, name, value):
    PrimalDualTimeSeriesConfig(num_input_channels=2, num_labels=3).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config[name] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"{name} = {value} is beyond any model"):
        PrimalDualTimeSeriesForClassification.from_pretrained(tmp_path)
    assert time.perf_counter() - started < 30


def test_a_json_nan_in_config_json_is_refused(tmp_path):
    PrimalDualViTConfig(attention_type="bn", hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                        intermediate_size=48, image_size=32, patch_size=8).save_pretrained(tmp_path)
    text = (tmp_path / "config.json").read_text().replace('"bn_eps": 1e-05', '"bn_eps": NaN')
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(CONFIG_ERRORS, match="bn_eps must be a finite number"):
        PrimalDualViTConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("settings", [{"bn_eps": float("nan")}, {"bn_mean_weight": float("inf")}, {"bn_eps": -1},
                                      {"bn_use_std": "yes"}, {"head_scales": [2, 2, 2]}])
def test_the_conversion_refuses_bad_settings_and_writes_nothing(tmp_path, settings):
    from hf_primaldual.conversion import ConversionError, convert_checkpoint

    source = tmp_path / "vit"
    ViTForImageClassification(ViTConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=3,
                                        intermediate_size=48, image_size=32, patch_size=8)).save_pretrained(source)
    name = next(iter(settings))
    with pytest.raises(ConversionError, match=name):
        convert_checkpoint(str(source), "bn_sh", tmp_path / "converted", settings=settings)
    assert not (tmp_path / "converted").exists()
