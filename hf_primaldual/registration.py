"""Registration of the package's models with transformers' Auto classes, in this process and in checkpoints."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
)

from .configuration_primaldual_vit import PrimalDualViTConfig
from .modeling_primaldual_vit import PrimalDualViTForImageClassification, PrimalDualViTModel


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel / AutoModelFor... resolve this package's model types (idempotent)."""
    AutoConfig.register(PrimalDualViTConfig.model_type, PrimalDualViTConfig, exist_ok=True)
    AutoModel.register(PrimalDualViTConfig, PrimalDualViTModel, exist_ok=True)
    AutoModelForImageClassification.register(PrimalDualViTConfig, PrimalDualViTForImageClassification, exist_ok=True)
