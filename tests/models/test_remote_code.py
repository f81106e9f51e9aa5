"""Checkpoints load with `trust_remote_code=True` in a Python process where `hf_primaldual` cannot be imported,
from the code files saved beside the weights, and give identical outputs."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.without_package import run_without_package
from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)

pytestmark = pytest.mark.slow  # each test loads a checkpoint in a fresh interpreter


@pytest.mark.parametrize("attention_type", ["bn_sh", "linear_sh"])
def test_vit_round_trip_without_the_package(tmp_path, attention_type):
    config = PrimalDualViTConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
        patch_size=8, num_labels=4, attention_type=attention_type, head_scales=[1, 2, 4],
    )
    model = PrimalDualViTForImageClassification(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    saved = json.loads((checkpoint / "config.json").read_text())
    assert set(saved["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForImageClassification"}
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "attention.py").exists()

    pixel_values = torch.randn(2, 3, 32, 32)
    torch.save(pixel_values, tmp_path / "inputs.pt")
    torch.save(model(pixel_values).logits, tmp_path / "expected.pt")
    model.set_attn_implementation("eager")  # the attention matrices are the formula path's
    torch.save(model(pixel_values, output_attentions=True).attentions[-1], tmp_path / "attentions.pt")
    run_without_package(
        """
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForImageClassification
        config = AutoConfig.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(config).__name__ == "PrimalDualViTConfig", type(config)
        model = AutoModelForImageClassification.from_pretrained("checkpoint", trust_remote_code=True).eval()
        assert type(model).__name__ == "PrimalDualViTForImageClassification"
        assert "hf_primaldual" not in type(model).__module__
        inputs = torch.load("inputs.pt")
        torch.testing.assert_close(model(inputs).logits, torch.load("expected.pt"), atol=0, rtol=0)
        model.set_attn_implementation("eager")
        attentions = model(inputs, output_attentions=True).attentions[-1]
        torch.testing.assert_close(attentions, torch.load("attentions.pt"), atol=0, rtol=0)
        encoder = AutoModel.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(encoder).__name__ == "PrimalDualViTModel"
        """,
        tmp_path,
    )


@pytest.mark.parametrize("attention_type", ["linear_bn_sh"])
def test_timeseries_round_trip_without_the_package(tmp_path, attention_type):
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=3, max_sequence_length=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=32, num_labels=3, attention_type=attention_type,
    )
    model = PrimalDualTimeSeriesForClassification(config).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    saved = json.loads((checkpoint / "config.json").read_text())
    assert set(saved["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}

    past_values = torch.randn(2, 25, 3)
    attention_mask = torch.ones(2, 25, dtype=torch.long)
    attention_mask[1, 17:] = 0
    torch.save({"past_values": past_values, "attention_mask": attention_mask}, tmp_path / "inputs.pt")
    torch.save(model(past_values, attention_mask=attention_mask).logits, tmp_path / "expected.pt")
    run_without_package(
        """
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained("checkpoint", trust_remote_code=True).eval()
        assert type(model).__name__ == "PrimalDualTimeSeriesForClassification"
        logits = model(**torch.load("inputs.pt")).logits
        torch.testing.assert_close(logits, torch.load("expected.pt"), atol=0, rtol=0)
        encoder = AutoModel.from_pretrained("checkpoint", trust_remote_code=True)
        assert type(encoder).__name__ == "PrimalDualTimeSeriesModel"
        """,
        tmp_path,
    )
