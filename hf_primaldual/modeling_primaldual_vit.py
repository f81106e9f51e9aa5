"""PrimalDualViT: transformers' Vision Transformer with the attention of the primal-dual family.

Module and parameter names are those of `transformers.ViTModel`, and the checkpoint conversion transformers
applies to ViT (the legacy `encoder.layer.N.attention.attention.query` names on disk) is registered for this
model too: a ViT or DeiT checkpoint loads with no missing or unexpected weights, whatever `attention_type`
(Attention-BN and Attention-SH add no parameters), and a checkpoint saved here loads back into
`transformers.ViTForImageClassification`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .attention import PrimalDualSelfAttention, TokenLayout
from .configuration_primaldual_vit import PrimalDualViTConfig
from .input_checks import check_finite


class PrimalDualViTPatchEmbeddings(nn.Module):
    """``(B, C, H, W)`` pixels -> ``(B, H/p * W/p, hidden)`` patch embeddings, as in transformers' ViT."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__()
        image_size = config.image_size
        patch_size = config.patch_size
        image_size = tuple(image_size) if isinstance(image_size, Iterable) else (image_size, image_size)
        patch_size = tuple(patch_size) if isinstance(patch_size, Iterable) else (patch_size, patch_size)
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = config.num_channels
        self.num_patches = (image_size[0] // patch_size[0]) * (image_size[1] // patch_size[1])
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class PrimalDualViTEmbeddings(nn.Module):
    """Class token, patch embeddings and position embeddings."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embeddings = PrimalDualViTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.patch_embeddings.num_patches + 1, config.hidden_size))
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.patch_size = self.patch_embeddings.patch_size
        self.image_size = self.patch_embeddings.image_size

    def interpolate_pos_encoding(self, height: int, width: int) -> torch.Tensor:
        """Bicubic interpolation of the patch position embeddings to a ``height x width`` image (DINO's recipe)."""
        grid = (height // self.patch_size[0], width // self.patch_size[1])
        trained_grid = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
        if grid == trained_grid and not torch.jit.is_tracing():
            return self.position_embeddings
        class_pos_embed = self.position_embeddings[:, :1]
        patch_pos_embed = self.position_embeddings[:, 1:]
        dim = patch_pos_embed.shape[-1]
        patch_pos_embed = patch_pos_embed.reshape(1, *trained_grid, dim).permute(0, 3, 1, 2)
        patch_pos_embed = nn.functional.interpolate(patch_pos_embed, size=grid, mode="bicubic", align_corners=False)
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed, patch_pos_embed), dim=1)

    def forward(
        self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False
    ) -> tuple[torch.Tensor, TokenLayout]:
        """``(B, C, H, W)`` -> ``(B, 1 + num_patches, hidden)`` and the token layout (class token + patch grid)."""
        batch_size, num_channels, height, width = pixel_values.shape
        if num_channels != self.patch_embeddings.num_channels:
            raise ValueError(
                f"pixel_values has {num_channels} channels but the model takes {self.patch_embeddings.num_channels}: "
                "convert the images (e.g. grey to RGB) or build the model with a matching num_channels."
            )
        if not interpolate_pos_encoding and (height, width) != self.image_size:
            raise ValueError(
                f"Input image size ({height}x{width}) does not match the model ({self.image_size[0]}x"
                f"{self.image_size[1]}): resize the images, or pass interpolate_pos_encoding=True to interpolate "
                "the position embeddings."
            )
        if height % self.patch_size[0] or width % self.patch_size[1]:
            raise ValueError(
                f"Input image size ({height}x{width}) is not a whole number of {self.patch_size} patches."
            )
        check_finite(pixel_values, "pixel_values")

        embeddings = self.patch_embeddings(pixel_values)
        embeddings = torch.cat((self.cls_token.expand(batch_size, -1, -1), embeddings), dim=1)
        if interpolate_pos_encoding:
            embeddings = embeddings + self.interpolate_pos_encoding(height, width)
        else:
            embeddings = embeddings + self.position_embeddings
        layout = TokenLayout(num_prefix_tokens=1, grid=(height // self.patch_size[0], width // self.patch_size[1]))
        return self.dropout(embeddings), layout


class PrimalDualViTMLP(nn.Module):
    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__()
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class PrimalDualViTLayer(GradientCheckpointingLayer):
    """Pre-norm transformer block: ``x + Attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__()
        self.attention = PrimalDualSelfAttention(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PrimalDualViTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self, hidden_states: torch.Tensor, layout: TokenLayout, output_attentions: bool = False
    ) -> torch.Tensor:
        attention_output, _ = self.attention(
            self.layernorm_before(hidden_states), layout=layout, output_attentions=output_attentions
        )
        hidden_states = hidden_states + self.dropout(attention_output)
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states)))


class PrimalDualViTPooler(nn.Module):
    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.pooler_output_size)
        self.activation = ACT2FN[config.pooler_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))


class PrimalDualViTPreTrainedModel(PreTrainedModel):
    config: PrimalDualViTConfig
    config_class = PrimalDualViTConfig
    base_model_prefix = "vit"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["PrimalDualViTEmbeddings", "PrimalDualViTLayer"]
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": PrimalDualViTLayer,
        "attentions": PrimalDualSelfAttention,
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PrimalDualViTEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)


class PrimalDualViTModel(PrimalDualViTPreTrainedModel):
    """The ViT encoder: embeddings, ``num_hidden_layers`` blocks, a final LayerNorm and an optional pooler."""

    def __init__(self, config: PrimalDualViTConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        config.validate_attention()  # the config may have been edited since it was built
        self.embeddings = PrimalDualViTEmbeddings(config)
        self.layers = nn.ModuleList([PrimalDualViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = PrimalDualViTPooler(config) if add_pooling_layer else None
        self.post_init()

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
                Images, normalised by the model's image processor.
            interpolate_pos_encoding (`bool`, *optional*):
                Interpolate the position embeddings to images of another size than `config.image_size`.
            output_attentions, output_hidden_states (`bool`, *optional*):
                Also return each layer's `(batch_size, num_heads, seq_len, seq_len)` attention probabilities
                (computed on the explicit path) or hidden states.

        Returns: `BaseModelOutputWithPooling` with `last_hidden_state` of shape `(batch_size, seq_len, hidden_size)`,
        `seq_len = 1 + num_patches`.
        """
        if pixel_values is None:
            raise ValueError("pixel_values is required: a (batch_size, num_channels, height, width) tensor.")
        pixel_values = pixel_values.to(self.embeddings.patch_embeddings.projection.weight.dtype)
        output_attentions = kwargs.get("output_attentions", self.config.output_attentions)
        hidden_states, layout = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        for layer in self.layers:
            hidden_states = layer(hidden_states, layout, output_attentions)
        sequence_output = self.layernorm(hidden_states)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(last_hidden_state=sequence_output, pooler_output=pooled_output)


class PrimalDualViTForImageClassification(PrimalDualViTPreTrainedModel):
    """PrimalDualViT with a linear classifier on the final class-token state, as `ViTForImageClassification`."""

    def __init__(self, config: PrimalDualViTConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.vit = PrimalDualViTModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): images.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class indices; gives the loss
                (cross-entropy, or as `config.problem_type` says).

        Returns: `ImageClassifierOutput` with `logits` of shape `(batch_size, num_labels)`.
        """
        outputs = self.vit(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.last_hidden_state[:, 0])
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# Checkpoints of transformers' ViT are stored with the legacy names (`encoder.layer.N.attention.attention.query`);
# transformers renames them on load and back on save. Doing the same here keeps the two interchangeable.
register_checkpoint_conversion_mapping(
    "PrimalDualViTModel", get_checkpoint_conversion_mapping("ViTModel"), overwrite=True
)

# Saving copies this file and its relative imports beside the weights (see PrimalDualViTConfig.code_auto_map).
PrimalDualViTModel.register_for_auto_class("AutoModel")
PrimalDualViTForImageClassification.register_for_auto_class("AutoModelForImageClassification")


__all__ = ["PrimalDualViTForImageClassification", "PrimalDualViTModel", "PrimalDualViTPreTrainedModel"]
