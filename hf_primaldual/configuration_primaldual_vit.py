"""PrimalDualViT configuration: transformers' ViT fields plus the attention of the primal-dual family."""

from __future__ import annotations

import math

from huggingface_hub.dataclasses import strict
from transformers.utils import logging

from .attention import default_head_scales, parse_attention_type
from .configuration_attention import PrimalDualAttentionConfig

logger = logging.get_logger(__name__)


@strict
class PrimalDualViTConfig(PrimalDualAttentionConfig):
    r"""
    Configuration of a [`PrimalDualViTModel`]: a Vision Transformer whose self-attention is chosen by
    `attention_type` (see [`PrimalDualAttentionConfig`] for the attention fields). The ViT fields and their
    meaning are those of `transformers.ViTConfig`, so a ViT or DeiT checkpoint's config loads as this one. The
    defaults are DeiT-tiny (patch 16, 224 px, hidden 192, 12 layers, 3 heads).

    Example:

    ```python
    >>> from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification
    >>> config = PrimalDualViTConfig(attention_type="bn_sh", head_scales=[1, 2, 4], num_labels=10)
    >>> model = PrimalDualViTForImageClassification(config)
    ```
    """

    model_type = "primaldual-vit"
    code_auto_map = {
        "AutoConfig": "configuration_primaldual_vit.PrimalDualViTConfig",
        "AutoModel": "modeling_primaldual_vit.PrimalDualViTModel",
        "AutoModelForImageClassification": "modeling_primaldual_vit.PrimalDualViTForImageClassification",
    }

    hidden_size: int = 192
    num_hidden_layers: int = 12
    num_attention_heads: int = 3
    intermediate_size: int = 768
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int | list[int] | tuple[int, int] = 224
    patch_size: int | list[int] | tuple[int, int] = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None
    pooler_act: str = "tanh"

    def __post_init__(self, **kwargs):
        self.pooler_output_size = self.pooler_output_size if self.pooler_output_size else self.hidden_size
        super().__post_init__(**kwargs)

    def validate_image_geometry(self) -> None:
        """Part of `@strict`-powered validation: the image is a whole number of patches."""
        image = _pair(self.image_size)
        patch = _pair(self.patch_size)
        if min(image) < 1 or min(patch) < 1:
            raise ValueError(f"image_size and patch_size must be >= 1, got {image} and {patch}.")
        if image[0] % patch[0] or image[1] % patch[1]:
            raise ValueError(
                f"image_size {image} is not a whole number of {patch} patches: choose an image_size that is a "
                f"multiple of patch_size, e.g. {(image[0] // patch[0] * patch[0], image[1] // patch[1] * patch[1])}."
            )

    def validate_pooled_keys(self) -> None:
        """Part of `@strict`-powered validation: warns where Attention-BN+SH would normalise a head's keys by the
        statistics of two keys (the [CLS] token and a single pooled key), which reduces each key feature to the sign
        of their difference (``±d / sqrt(d^2 + eps)``): legal, but that head then tells little apart."""
        spec = parse_attention_type(self.attention_type)
        if not (spec.batch_norm and spec.scaled_heads):
            return
        grid = [size // patch for size, patch in zip(_pair(self.image_size), _pair(self.patch_size))]
        scales = self.head_scales or default_head_scales(self.num_attention_heads)
        whole = [scale for scale in sorted(set(scales)) if all(math.ceil(side / scale) == 1 for side in grid)]
        if whole:
            logger.warning_once(  # a run builds its config several times (arguments, save, reload)
                f"head_scales {list(scales)} on a {grid[0]} x {grid[1]} patch grid: scale {', '.join(map(str, whole))} "
                f"pools the whole grid into one key, so {self.attention_type}'s batch norm for those heads has two "
                "keys (the [CLS] token and that one) and leaves each key feature about +-1. Use scales below "
                f"{max(grid)} (head_scales=...) or more patches (a smaller patch_size)."
            )


PrimalDualViTConfig.register_for_auto_class()


def _pair(x: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


__all__ = ["PrimalDualViTConfig"]
