"""PrimalDualViT configuration: transformers' ViT fields plus the attention of the primal-dual family."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

from .configuration_attention import PrimalDualAttentionConfig


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


PrimalDualViTConfig.register_for_auto_class()


def _pair(x: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


__all__ = ["PrimalDualViTConfig"]
