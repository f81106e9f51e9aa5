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
    meaning are those of `transformers.ViTConfig`, so a ViT or DeiT checkpoint's config loads as this one (a DeiT
    config, `model_type: deit`, sets the two distillation fields below). The defaults are DeiT-tiny (patch 16,
    224 px, hidden 192, 12 layers, 3 heads).

    distillation_token (`bool`, *optional*, defaults to `False`):
        DeiT's second prefix token after the class token (`transformers.DeiTModel`): the position embeddings then
        have `2 + num_patches` rows.
    distillation_head (`bool`, *optional*, defaults to `False`):
        DeiT's second classifier, on the distillation token (`DeiTForImageClassificationWithTeacher`): the logits
        are the mean of the two heads' logits, in training too (as timm fine-tunes a distilled DeiT without a
        teacher). Needs `distillation_token`.

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
    distillation_token: bool = False
    distillation_head: bool = False

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """transformers' reading of a config.json, with a ViT or DeiT checkpoint's config taken as this model's
        (`from_transformers_vit_config`), so that loading one neither warns of another model type nor drops DeiT's
        distillation token."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        return from_transformers_vit_config(config_dict), kwargs

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

    def validate_distillation(self) -> None:
        """Part of `@strict`-powered validation: DeiT's distillation head reads the distillation token."""
        if self.distillation_head and not self.distillation_token:
            raise ValueError(
                "distillation_head=True needs distillation_token=True: the head classifies that token's final state."
            )

    @property
    def num_prefix_tokens(self) -> int:
        """The tokens before the patch grid: the class token, and DeiT's distillation token."""
        return 2 if self.distillation_token else 1

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

#: transformers' model types whose checkpoints are this model's with softmax attention.
TRANSFORMERS_VIT_TYPES = ("vit", "deit")


def from_transformers_vit_config(config_dict: dict) -> dict:
    """A transformers ViT or DeiT ``config.json`` as a PrimalDualViT one (other dicts unchanged): the model type
    becomes this model's, the attention softmax (what those models compute) unless the dict says otherwise, and a
    DeiT's distillation token and, for ``DeiTForImageClassificationWithTeacher``, its second head are kept."""
    source_type = config_dict.get("model_type")
    if source_type not in TRANSFORMERS_VIT_TYPES:
        return config_dict
    config_dict = {**config_dict, "model_type": PrimalDualViTConfig.model_type}
    config_dict.setdefault("attention_type", "softmax")
    if source_type == "deit":
        config_dict.setdefault("distillation_token", True)
        architectures = config_dict.get("architectures") or []
        config_dict.setdefault("distillation_head", "DeiTForImageClassificationWithTeacher" in architectures)
    return config_dict


def _pair(x: int | list[int] | tuple[int, int]) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


__all__ = ["PrimalDualViTConfig", "from_transformers_vit_config"]
