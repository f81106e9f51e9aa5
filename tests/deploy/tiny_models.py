"""Tiny models of both families and tiny stock transformers models (random weights, built here: no download) under
a primal-dual attention, each with a batch of inputs (a padding mask where the model takes one), for the deploy tests.
"""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    ViTConfig,
    ViTForImageClassification,
)

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)
from hf_primaldual.attention import ATTENTION_TYPES

TYPES = list(ATTENTION_TYPES)
DROPOUT = 0.1  # attention dropout: on in training, as in mvts-transformer
LENGTH = 12


def padding_mask() -> torch.Tensor:
    mask = torch.ones(2, LENGTH, dtype=torch.long)
    mask[1, 8:] = 0
    return mask


def stock(model_class, config, attention_type: str):
    """A transformers model built from ``config``, run as ``primaldual_<attention_type>``."""
    model = model_class(config)
    model.set_attn_implementation(f"primaldual_{attention_type}")
    return model


def timeseries(attention_type: str, **overrides):
    config = PrimalDualTimeSeriesConfig(num_input_channels=3, max_sequence_length=LENGTH, hidden_size=16,
                                        num_hidden_layers=overrides.pop("num_hidden_layers", 1), num_attention_heads=4, intermediate_size=32,
                                        num_labels=3, attention_type=attention_type,
                                        attention_probs_dropout_prob=DROPOUT, primaldual_attention={"head_scales": [1, 1, 2]},
                        **overrides)
    inputs = {"past_values": torch.randn(2, LENGTH, 3), "attention_mask": padding_mask(),
              "labels": torch.tensor([0, 2])}
    return PrimalDualTimeSeriesForClassification(config), inputs


def vit(attention_type: str, **overrides):
    config = PrimalDualViTConfig(hidden_size=24, num_hidden_layers=overrides.pop("num_hidden_layers", 1), num_attention_heads=3, intermediate_size=32,
                                 image_size=16, patch_size=4, num_labels=3, attention_type=attention_type,
                                 head_scales=[1, 1, 2] if "sh" in attention_type else None,
                                 attention_probs_dropout_prob=DROPOUT, primaldual_attention={"head_scales": [1, 1, 2]},
                        **overrides)
    return PrimalDualViTForImageClassification(config), {"pixel_values": torch.randn(2, 3, 16, 16),
                                                         "labels": torch.tensor([0, 2])}


def stock_vit(attention_type: str, **overrides):
    config = ViTConfig(hidden_size=24, num_hidden_layers=overrides.pop("num_hidden_layers", 1), num_attention_heads=3, intermediate_size=32,
                       image_size=16, patch_size=4, num_labels=3, attention_probs_dropout_prob=DROPOUT,
                       primaldual_attention={"head_scales": [1, 1, 2]}, **overrides)
    inputs = {"pixel_values": torch.randn(2, 3, 16, 16), "labels": torch.tensor([0, 2])}
    return stock(ViTForImageClassification, config, attention_type), inputs


def stock_bert(attention_type: str, **overrides):
    config = BertConfig(vocab_size=50, hidden_size=24, num_hidden_layers=overrides.pop("num_hidden_layers", 1), num_attention_heads=3,
                        intermediate_size=32, max_position_embeddings=32, num_labels=3,
                        attention_probs_dropout_prob=DROPOUT, primaldual_attention={"head_scales": [1, 1, 2]},
                        **overrides)
    inputs = {"input_ids": torch.randint(0, 50, (2, LENGTH)), "attention_mask": padding_mask(),
              "labels": torch.tensor([0, 2])}
    return stock(BertForSequenceClassification, config, attention_type), inputs


def stock_llama(attention_type: str, **overrides):
    config = LlamaConfig(vocab_size=50, hidden_size=24, num_hidden_layers=overrides.pop("num_hidden_layers", 1), num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=32, max_position_embeddings=32,
                         attention_dropout=DROPOUT, **overrides)
    input_ids = torch.randint(0, 50, (2, LENGTH))
    inputs = {"input_ids": input_ids, "attention_mask": padding_mask(), "labels": input_ids}
    return stock(LlamaForCausalLM, config, attention_type), inputs
