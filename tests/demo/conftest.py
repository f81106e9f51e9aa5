"""Checkpoints for the demo's tests: a small time-series classifier trained on the shipped JapaneseVowels (real
series, unequal lengths, 9 speakers) with Attention-BN+SH (heads at scales 1, 1, 2, 4), and a tiny ViT."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesFeatureExtractor,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)
from hf_primaldual.data import SHIPPED_UEA_DIR, load_uea
from hf_primaldual.training import save_model_and_processor

# No usage reports to Gradio's servers from the tests (nor from the apps they start in child processes).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

HEAD_SCALES = [1, 1, 2, 4]


@pytest.fixture(scope="session")
def vowels():
    return load_uea("JapaneseVowels", data_dir=SHIPPED_UEA_DIR)


@pytest.fixture(scope="session")
def vowels_checkpoint(vowels, tmp_path_factory) -> Path:
    """Trained full-batch for a few seconds; saved as the training commands save (model, extractor, pipeline)."""
    train = vowels["train"]
    names = train.features["label"].names
    series = [np.asarray(values, dtype=np.float32) for values in train["past_values"]]
    extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=29).fit(series)
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=12, max_sequence_length=29, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=len(names), attention_type="bn_sh", head_scales=HEAD_SCALES,
        id2label=dict(enumerate(names)), label2id={name: index for index, name in enumerate(names)},
    )
    torch.manual_seed(0)
    model = PrimalDualTimeSeriesForClassification(config)
    batch = extractor(series)
    labels = torch.tensor(train["label"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(12):
        optimizer.zero_grad()
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
    folder = tmp_path_factory.mktemp("demo") / "vowels-bn-sh"
    save_model_and_processor(model.eval(), extractor, folder)
    return folder


@pytest.fixture(scope="session")
def vit_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised PrimalDualViT (Attention-SH) on 32 x 32 RGB images, with its image processor."""
    from transformers import ViTImageProcessorPil

    config = PrimalDualViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, num_labels=3, attention_type="sh", head_scales=HEAD_SCALES,
        id2label={0: "cat", 1: "dog", 2: "ship"}, label2id={"cat": 0, "dog": 1, "ship": 2},
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("demo") / "vit-sh"
    PrimalDualViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
