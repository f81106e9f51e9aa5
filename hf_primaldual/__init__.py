"""hf_primaldual: the primal-dual attention family (Nguyen et al., ICLR 2023) for Hugging Face Transformers."""

from .attention import ATTENTION_TYPES, AttentionOptions, TokenLayout, primal_dual_attention
from .configuration_primaldual_vit import PrimalDualViTConfig
from .modeling_primaldual_vit import (
    PrimalDualViTForImageClassification,
    PrimalDualViTModel,
    PrimalDualViTPreTrainedModel,
)
from .registration import register_auto_classes

register_auto_classes()

__version__ = "0.1.0"
