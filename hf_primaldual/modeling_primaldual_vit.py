"""PrimalDualViT: transformers' Vision Transformer with the attention of the primal-dual family.

Module and parameter names are those of `transformers.ViTModel`, and the checkpoint conversion transformers
applies to ViT (the legacy `encoder.layer.N.attention.attention.query` names on disk) is registered for this
model too: a ViT checkpoint loads with no missing or unexpected weights, whatever `attention_type` (Attention-BN
and Attention-SH add no parameters), and a checkpoint saved here loads back into
`transformers.ViTForImageClassification`.

DeiT checkpoints (`DeiTModel`, `DeiTForImageClassification`, `DeiTForImageClassificationWithTeacher`) load too:
their config sets `distillation_token` (and, with the teacher's head, `distillation_head`), and `from_pretrained`
renames their weights (``deit.*`` -> ``vit.*``, ``cls_classifier`` -> ``classifier``) with transformers'
`key_mapping`. As transformers does with every renaming it applied on load, saving writes the names back, so the
saved folder loads into the DeiT class it came from as well.
"""

import os

import torch
from torch import nn
from transformers import initialization as init
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    get_model_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.core_model_loading import WeightRenaming, apply_renamings
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.models.deit.modeling_deit import DeiTEmbeddings
from transformers.models.vit.modeling_vit import (
    ViTEmbeddings,
    ViTForImageClassification,
    ViTLayer,
    ViTPooler,
    ViTPreTrainedModel,
)
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.output_capturing import capture_outputs

from .attention import TokenLayout
from .configuration_primaldual_vit import PrimalDualViTConfig
from .input_checks import check_finite, check_key_mask, check_labels
from .modeling_attention import PrimalDualSelfAttention
from .modeling_push import ProjectCardPushMixin


class PrimalDualViTLayer(ViTLayer):
    """transformers' pre-norm ViT block (``x + Attn(LN(x))``, then ``x + MLP(LN(x))``) with the primal-dual
    attention."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__(config)
        self.attention = PrimalDualSelfAttention(config)


class PrimalDualViTPreTrainedModel(ProjectCardPushMixin, ViTPreTrainedModel):
    config: PrimalDualViTConfig
    config_class = PrimalDualViTConfig
    _no_split_modules = ["ViTEmbeddings", "DeiTEmbeddings", "PrimalDualViTLayer"]
    _supports_sdpa = True
    # transformers' flash / flex kernels compute softmax attention only: Attention-BN and -SH are not theirs.
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    _can_record_outputs = {
        "hidden_states": PrimalDualViTLayer,
        "attentions": PrimalDualSelfAttention,
    }

    def __init__(self, config: PrimalDualViTConfig, *inputs, **kwargs) -> None:
        super().__init__(config, *inputs, **kwargs)
        self.register_load_state_dict_pre_hook(_rename_legacy_checkpoint_keys)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """transformers' ViT initialisation; DeiT's embeddings (class, distillation and position) as ViT's."""
        super()._init_weights(module)
        if isinstance(module, DeiTEmbeddings):
            for parameter in (module.position_embeddings, module.cls_token, module.distillation_token):
                init.trunc_normal_(parameter, mean=0.0, std=self.config.initializer_range)
            if module.mask_token is not None:
                init.zeros_(module.mask_token)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None, *model_args, **kwargs):
        """transformers' `from_pretrained`; a DeiT checkpoint's weight names (``deit.*``, ``cls_classifier``) are
        mapped to this model's with transformers' ``key_mapping`` (see the module's docstring)."""
        if pretrained_model_name_or_path is not None and "key_mapping" not in kwargs:
            kwargs["key_mapping"] = DEIT_KEY_MAPPING  # matches nothing in a ViT or PrimalDualViT checkpoint
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)


#: DeiT's weight names -> this model's (regular expressions, as transformers' ``key_mapping`` takes them).
DEIT_KEY_MAPPING = {r"^deit\.": "vit.", r"^cls_classifier\.": "classifier."}


def _rename_legacy_checkpoint_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """`load_state_dict` of a saved file: its legacy ViT names (``encoder.layer.N.attention.attention.query``) and a
    DeiT checkpoint's names renamed to the modules' as `from_pretrained` renames them. transformers' Trainer loads
    checkpoints this way (on resume and for ``load_best_model_at_end``); without the renaming nothing of the encoder
    would load, silently (``strict=False``), and the model would go on from random attention and MLP weights."""
    transforms = [WeightRenaming(source, target) for source, target in DEIT_KEY_MAPPING.items()]
    transforms += get_model_conversion_mapping(module)
    renamings = [transform for transform in transforms if isinstance(transform, WeightRenaming)]
    for key in [key for key in state_dict if key.startswith(prefix)]:
        renamed = prefix + apply_renamings(key[len(prefix):], renamings)
        if renamed != key:
            state_dict[renamed] = state_dict.pop(key)


class PrimalDualViTModel(PrimalDualViTPreTrainedModel):
    """transformers' ViT encoder (its embeddings, blocks, final LayerNorm and pooler) with the primal-dual
    attention."""

    def __init__(self, config: PrimalDualViTConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        config.validate_attention()  # the config may have been edited since it was built
        self.embeddings = DeiTEmbeddings(config) if config.distillation_token else ViTEmbeddings(config)
        self.layers = nn.ModuleList([PrimalDualViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config) if add_pooling_layer else None
        self.post_init()

    def token_layout(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> TokenLayout:
        """Check the images against the model, with errors that say what to change; the class token + patch grid
        they give."""
        if pixel_values is None:
            raise ValueError("pixel_values is required: a (batch_size, num_channels, height, width) tensor.")
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must be (batch_size, num_channels, height, width), got shape "
                f"{tuple(pixel_values.shape)}: add the batch dimension with pixel_values[None] for one image."
            )
        _, num_channels, height, width = pixel_values.shape
        patches = self.embeddings.patch_embeddings
        if num_channels != patches.num_channels:
            raise ValueError(
                f"pixel_values has {num_channels} channels but the model takes {patches.num_channels}: "
                "convert the images (e.g. grey to RGB) or build the model with a matching num_channels."
            )
        if not interpolate_pos_encoding and (height, width) != tuple(patches.image_size):
            raise ValueError(
                f"Input image size ({height}x{width}) does not match the model ({patches.image_size[0]}x"
                f"{patches.image_size[1]}): resize the images, or pass interpolate_pos_encoding=True to interpolate "
                "the position embeddings."
            )
        if height % patches.patch_size[0] or width % patches.patch_size[1]:
            raise ValueError(
                f"Input image size ({height}x{width}) is not a whole number of {tuple(patches.patch_size)} patches."
            )
        if not torch.is_floating_point(pixel_values):
            raise ValueError(
                f"pixel_values are {pixel_values.dtype}, not floats: normalise the images with the model's image "
                "processor (AutoImageProcessor), which also rescales 0-255 integers."
            )
        check_finite(pixel_values, "pixel_values")
        return TokenLayout(num_prefix_tokens=self.config.num_prefix_tokens, grid=(height // patches.patch_size[0], width // patches.patch_size[1]))

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, normalised by the model's image processor.
            interpolate_pos_encoding (`bool`, *optional*):
                Interpolate the position embeddings to images of another size than `config.image_size`.
            attention_mask (`torch.LongTensor` of shape `(batch_size, 1 + num_patches)`, *optional*):
                1 for the tokens (class token, patches) to attend to, 0 for the masked ones.
            output_attentions, output_hidden_states (`bool`, *optional*):
                Also return each layer's `(batch_size, num_heads, seq_len, seq_len)` attention matrix (with
                `attn_implementation="eager"`) or hidden states.

        Returns: `BaseModelOutputWithPooling` with `last_hidden_state` of shape `(batch_size, seq_len, hidden_size)`,
        `seq_len = 1 + num_patches`.
        """
        layout = self.token_layout(pixel_values, bool(interpolate_pos_encoding))
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        key_mask = check_key_mask(attention_mask, hidden_states.shape[:2], "attention_mask")
        for layer in self.layers:
            hidden_states = layer(hidden_states, key_mask, token_layout=layout, **kwargs)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class PrimalDualViTForImageClassification(PrimalDualViTPreTrainedModel):
    """PrimalDualViT with a linear classifier on the final class-token state: transformers'
    `ViTForImageClassification` head and forward (also `DeiTForImageClassification`'s). With
    `config.distillation_head`, DeiT's second classifier on the distillation token, and the mean of the two heads'
    logits, as `DeiTForImageClassificationWithTeacher` computes them."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = PrimalDualViTModel(config, add_pooling_layer=False)
        self.classifier = self._head(config)
        self.distillation_classifier = self._head(config) if config.distillation_head else None
        self.post_init()

    @staticmethod
    def _head(config: PrimalDualViTConfig) -> nn.Module:
        return nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""transformers' `ViTForImageClassification.forward`, with the labels checked first.

        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): images.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class indices; gives the loss
                (cross-entropy, or as `config.problem_type` says).

        Returns: `ImageClassifierOutput` with `logits` of shape `(batch_size, num_labels)`.
        """
        if pixel_values is not None:
            check_labels(labels, pixel_values.shape[0], self.config)
        if self.distillation_classifier is None:
            return ViTForImageClassification.forward(
                self, pixel_values, labels, interpolate_pos_encoding, attention_mask, **kwargs
            )
        outputs = self.vit(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, attention_mask=attention_mask, **kwargs
        )
        states = outputs.last_hidden_state  # (batch_size, 2 + num_patches, hidden_size)
        logits = (self.classifier(states[:, 0]) + self.distillation_classifier(states[:, 1])) / 2
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def resample_position_embeddings(model: PrimalDualViTPreTrainedModel, image_size: int | tuple[int, int]) -> None:
    """Resize ``model`` (in place) to take ``image_size`` images: the position embeddings of the patch grid
    resampled bicubically to the new grid, by transformers' own ``interpolate_pos_encoding`` (timm's and DINO's
    resampling), the prefix tokens' rows kept; ``config.image_size`` updated, so `save_pretrained` writes the model
    at its new size. The model then gives, without ``interpolate_pos_encoding``, the outputs the original gives
    with it.

    Args:
        image_size: the new side (or ``(height, width)``); a whole number of patches.

    Raises:
        ValueError: the size is not a whole number of patches, or the checkpoint's grid is not square (the
            resampling reads the saved rows as a square grid).
    """
    base = model.base_model
    embeddings = base.embeddings
    patches = embeddings.patch_embeddings
    height, width = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    patch_height, patch_width = patches.patch_size
    if height < patch_height or width < patch_width or height % patch_height or width % patch_width:
        raise ValueError(
            f"image_size {height}x{width} is not a whole number of the checkpoint's {patch_height}x{patch_width} "
            f"patches: give a multiple of {patch_height}, e.g. {max(1, round(height / patch_height)) * patch_height}."
        )
    old_height, old_width = patches.image_size
    if old_height // patch_height != old_width // patch_width:
        raise ValueError(
            f"The checkpoint's patch grid is {old_height // patch_height}x{old_width // patch_width}, not square: its "
            "position embeddings cannot be resampled (transformers' interpolate_pos_encoding reads a square grid). "
            "Fine-tune at the checkpoint's own image size."
        )
    if (height, width) == (old_height, old_width):
        return
    prefix = model.config.num_prefix_tokens
    grid = (height // patch_height) * (width // patch_width)
    old = embeddings.position_embeddings
    with torch.no_grad():
        placeholder = old.new_empty(1, prefix + grid, old.shape[-1])  # only its length is read
        resampled = embeddings.interpolate_pos_encoding(placeholder, height, width).clone()
    embeddings.position_embeddings = nn.Parameter(resampled, requires_grad=old.requires_grad)
    patches.image_size = (height, width)
    patches.num_patches = grid
    if hasattr(embeddings, "image_size"):
        embeddings.image_size = (height, width)
    model.config.image_size = height if height == width else [height, width]
    if base.config is not model.config:
        base.config.image_size = model.config.image_size


# Checkpoints of transformers' ViT are stored with the legacy names (`encoder.layer.N.attention.attention.query`);
# transformers renames them on load and back on save. Doing the same here keeps the two interchangeable.
register_checkpoint_conversion_mapping(
    "PrimalDualViTModel", get_checkpoint_conversion_mapping("ViTModel"), overwrite=True
)

# Saving copies this file and its relative imports beside the weights (see PrimalDualViTConfig.code_auto_map).
PrimalDualViTModel.register_for_auto_class("AutoModel")
PrimalDualViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")


__all__ = [
    "DEIT_KEY_MAPPING",
    "PrimalDualViTForImageClassification",
    "PrimalDualViTModel",
    "PrimalDualViTPreTrainedModel",
    "resample_position_embeddings",
]
