"""PrimalDualTimeSeries: the mvts-transformer classifier (Zerveas et al., "A Transformer-based Framework for
Multivariate Time Series Representation Learning", KDD 2021) with the attention of the primal-dual family.

Padding is exact: padded time steps take no attention weight, are left out of Attention-BN statistics, of
Attention-SH pooling and of the batch-norm statistics, and are zeroed before the classifier, so padding a series
further changes none of its outputs.
"""

import math
import os
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, SequenceClassifierOutput
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .attention import TokenLayout
from .attention_kernels import dropout
from .configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from .input_checks import check_finite, check_key_mask, check_labels
from .modeling_attention import PrimalDualSelfAttention
from .modeling_push import ProjectCardPushMixin
from .pipeline_timeseries import custom_pipelines_entry


class MaskedBatchNorm(nn.Module):
    """BatchNorm1d over the feature dimension of ``(B, N, d)`` tokens, with statistics from real tokens only."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(hidden_size, eps=eps)

    def forward(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if self.training and not torch.compiler.is_compiling():
            real = hidden_states.shape[0] * hidden_states.shape[1] if padding_mask is None else int(padding_mask.sum())
            if real < 2:
                raise ValueError(
                    "Batch normalisation in training needs more than one real time step in the batch, got "
                    f"{real}: train with larger batches or longer series, or use norm_type='layer'."
                )
        if padding_mask is None or not self.training:
            # In eval mode each token is normalised by the running statistics alone: padding cannot leak.
            return self.norm(hidden_states.flatten(0, 1)).view_as(hidden_states)
        return masked_batch_norm(self.norm, hidden_states, padding_mask)


def masked_batch_norm(norm: nn.BatchNorm1d, hidden_states: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """``norm`` in training mode over the real tokens of ``(B, N, d)`` hidden states (``(B, N)`` boolean mask):
    what ``norm(hidden_states[padding_mask])`` computes, running statistics included, with padded tokens set to 0.

    Written with masked sums rather than by gathering the real tokens: gathering has a data-dependent shape, which
    breaks torch.compile's graph and which inductor cannot differentiate (``IndexPutBackward0``); this has none.
    """
    dtype = hidden_states.dtype
    x = hidden_states.to(torch.promote_types(dtype, torch.float32))  # statistics in float32 at least, as BatchNorm
    real = padding_mask[..., None].to(x.dtype)  # (B, N, 1)
    count = real.sum()
    mean = (x * real).sum(dim=(0, 1)) / count
    centred = (x - mean) * real
    var = centred.square().sum(dim=(0, 1)) / count  # biased, for normalising (as BatchNorm)
    output = centred * torch.rsqrt(var + norm.eps)
    if norm.affine:
        output = (output * norm.weight + norm.bias) * real
    if norm.track_running_stats:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            # momentum None: BatchNorm's cumulative average, 1 / batches seen (kept a tensor: no graph break)
            momentum = 1.0 / norm.num_batches_tracked.to(norm.running_mean.dtype) if norm.momentum is None \
                else norm.momentum
            norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), momentum)
            unbiased = var * count / (count - 1)
            norm.running_var.lerp_(unbiased.to(norm.running_var.dtype), momentum)
    return output.to(dtype)


class MaskedLayerNorm(nn.Module):
    """LayerNorm with the same call signature as :class:`MaskedBatchNorm` (it never mixes tokens)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        return self.norm(hidden_states)


NORMALIZATION_LAYERS = {"batch": MaskedBatchNorm, "layer": MaskedLayerNorm}


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`.attention_kernels.dropout`: in CPU training, the compiled kernel's generator
    instead of PyTorch's ``bernoulli_`` (a sixth of the time of a training step at the README's shape)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return dropout(input, self.p, self.training)


class PrimalDualTimeSeriesEmbeddings(nn.Module):
    """``(B, T, C)`` values -> ``(B, T, d)``: ``sqrt(d) * W x_t + p_t`` with learnable positions ``p_t``, and an
    optional class token in front."""

    def __init__(self, config: PrimalDualTimeSeriesConfig) -> None:
        super().__init__()
        self.value_projection = nn.Linear(config.num_input_channels, config.hidden_size)
        self.position_embeddings = nn.Parameter(torch.zeros(1, config.max_sequence_length, config.hidden_size))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.pooling == "cls" else None
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.scale = math.sqrt(config.hidden_size)

    def forward(self, past_values: torch.Tensor) -> torch.Tensor:
        length = past_values.shape[1]
        embeddings = self.value_projection(past_values) * self.scale + self.position_embeddings[:, :length]
        if self.cls_token is not None:
            embeddings = torch.cat((self.cls_token.expand(embeddings.shape[0], -1, -1), embeddings), dim=1)
        return self.dropout(embeddings)


class PrimalDualTimeSeriesLayer(GradientCheckpointingLayer):
    """Post-norm encoder layer of mvts-transformer: ``norm(x + Attn(x))``, then ``norm(x + FFN(x))``."""

    def __init__(self, config: PrimalDualTimeSeriesConfig) -> None:
        super().__init__()
        norm = NORMALIZATION_LAYERS[config.norm_type]
        self.attention = PrimalDualSelfAttention(config)
        self.norm_after_attention = norm(config.hidden_size, config.layer_norm_eps)
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.norm_after_mlp = norm(config.hidden_size, config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        token_layout: TokenLayout = TokenLayout(),
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attention_output, _ = self.attention(hidden_states, padding_mask, token_layout=token_layout, **kwargs)
        hidden_states = self.norm_after_attention(hidden_states + self.dropout(attention_output), padding_mask)
        mlp_output = self.fc2(self.dropout(self.activation_fn(self.fc1(hidden_states))))
        return self.norm_after_mlp(hidden_states + self.dropout(mlp_output), padding_mask)


class PrimalDualTimeSeriesPreTrainedModel(ProjectCardPushMixin, PreTrainedModel):
    config: PrimalDualTimeSeriesConfig
    config_class = PrimalDualTimeSeriesConfig
    base_model_prefix = "model"
    main_input_name = "past_values"
    input_modalities = ("time",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["PrimalDualTimeSeriesLayer"]
    _supports_sdpa = True
    _input_embed_layer = "value_projection"
    _can_record_outputs = {
        "hidden_states": PrimalDualTimeSeriesLayer,
        "attentions": PrimalDualSelfAttention,
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PrimalDualTimeSeriesEmbeddings):
            init.trunc_normal_(module.position_embeddings, mean=0.0, std=self.config.initializer_range)
            if module.cls_token is not None:
                init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)


class PrimalDualTimeSeriesModel(PrimalDualTimeSeriesPreTrainedModel):
    """The mvts-transformer encoder: value projection + positions, then `num_hidden_layers` encoder layers."""

    def __init__(self, config: PrimalDualTimeSeriesConfig) -> None:
        super().__init__(config)
        config.validate_attention()  # the config may have been edited since it was built
        self.embeddings = PrimalDualTimeSeriesEmbeddings(config)
        self.layers = nn.ModuleList([PrimalDualTimeSeriesLayer(config) for _ in range(config.num_hidden_layers)])
        self.post_init()

    def token_mask(self, past_values: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Check the series' shape and mask against the model, with errors that say what to change; the boolean
        ``(B, N)`` mask of the real tokens (the class token in front with ``pooling="cls"``), or None when every
        token is real."""
        if past_values is None:
            raise ValueError("past_values is required: a (batch_size, time, channels) tensor.")
        if past_values.dim() != 3:
            shape = tuple(past_values.shape)
            if past_values.dim() == 2 and self.config.num_input_channels == 1:
                fix = "for a batch of univariate series (batch_size, time) add the channel axis: past_values[..., None]"
            elif past_values.dim() == 2:
                fix = "for one series (time, channels) add the batch axis: past_values[None]"
            else:
                fix = "for one univariate series (time,) add both: past_values[None, :, None]"
            raise ValueError(f"past_values must be (batch_size, time, channels), got shape {shape}: {fix}.")
        _, length, channels = past_values.shape
        if channels != self.config.num_input_channels:
            raise ValueError(
                f"past_values has {channels} channels but the model takes {self.config.num_input_channels}: "
                "pass series as (batch_size, time, channels), or build the model with a matching num_input_channels."
            )
        if length > self.config.max_sequence_length:
            raise ValueError(
                f"The series has {length} time steps but the model takes at most max_sequence_length="
                f"{self.config.max_sequence_length}: truncate or downsample the series, or train a model with a "
                "larger max_sequence_length."
            )
        mask = check_key_mask(attention_mask, past_values.shape[:2], "attention_mask")
        if mask is not None and self.config.pooling == "cls":
            mask = nn.functional.pad(mask, (1, 0), value=True)
        return mask

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        past_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        r"""
        Args:
            past_values (`torch.FloatTensor` of shape `(batch_size, time, num_input_channels)`):
                The series, standardised (see `PrimalDualTimeSeriesFeatureExtractor`), padded at the end.
            attention_mask (`torch.LongTensor` or `torch.BoolTensor` of shape `(batch_size, time)`, *optional*):
                1 at real time steps, 0 at padding. Values at padded steps are ignored (they may be NaN).
            output_attentions, output_hidden_states (`bool`, *optional*):
                Also return each layer's attention matrix (with `attn_implementation="eager"`) or outputs.

        Returns: `BaseModelOutput` with `last_hidden_state` of shape `(batch_size, seq_len, hidden_size)`: `seq_len`
        is the input length, plus one in front with `pooling="cls"`.
        """
        padding_mask = self.token_mask(past_values, attention_mask)
        if padding_mask is not None:  # padded steps may hold anything, NaN included
            past_values = past_values.masked_fill(~padding_mask[:, -past_values.shape[1]:, None], 0.0)
        check_finite(past_values, "past_values")
        past_values = past_values.to(self.embeddings.value_projection.weight.dtype)
        hidden_states = self.embeddings(past_values)
        layout = TokenLayout(num_prefix_tokens=1 if self.config.pooling == "cls" else 0)
        for layer in self.layers:
            hidden_states = layer(hidden_states, padding_mask, token_layout=layout, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesPreTrainedModel):
    """mvts-transformer's classifier: activation and dropout on the encoder output, padded steps zeroed, pooled
    (`config.pooling`), then a linear layer."""

    def __init__(self, config: PrimalDualTimeSeriesConfig) -> None:
        super().__init__(config)
        self.loss_type = "ForSequenceClassification"
        self.num_labels = config.num_labels
        self.model = PrimalDualTimeSeriesModel(config)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.dropout = Dropout(config.hidden_dropout_prob)
        pooled_size = config.hidden_size * (config.max_sequence_length if config.pooling == "flatten" else 1)
        self.classifier = nn.Linear(pooled_size, config.num_labels)
        self.post_init()

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any) -> None:
        """transformers' `save_pretrained`, with the `time-series-classification` pipeline named in config.json
        (``custom_pipelines``): its code is saved with the model's (this module imports it), so
        ``pipeline(model=folder, trust_remote_code=True)`` classifies raw series without the package once the fitted
        feature extractor is beside the weights (the Trainer saves it there as its ``processing_class``). Every
        save goes through here: ``save_pretrained``, the Trainer's checkpoints and ``save_model``, ``push_to_hub``."""
        self.config.custom_pipelines = {**(getattr(self.config, "custom_pipelines", None) or {}),
                                        **custom_pipelines_entry()}
        return super().save_pretrained(save_directory, *args, **kwargs)

    def pool(self, hidden_states: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, N, d)`` encoder output and its ``(B, N)`` token mask (None: all real) -> ``(B, pooled_size)``
        classifier input."""
        if self.config.pooling == "cls":
            return hidden_states[:, 0]
        if padding_mask is not None:
            hidden_states = hidden_states * padding_mask[..., None].to(hidden_states.dtype)
        if self.config.pooling == "mean":
            if padding_mask is None:
                return hidden_states.mean(dim=1)
            return hidden_states.sum(dim=1) / padding_mask.sum(dim=1, keepdim=True).to(hidden_states.dtype)
        # Positions past the input length are padding, zero as the padded steps are.
        missing = self.config.max_sequence_length - hidden_states.shape[1]
        return nn.functional.pad(hidden_states, (0, 0, 0, missing)).flatten(1)

    @can_return_tuple
    def forward(
        self,
        past_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        Args:
            past_values (`torch.FloatTensor` of shape `(batch_size, time, num_input_channels)`): the series.
            attention_mask (`torch.LongTensor` of shape `(batch_size, time)`, *optional*): 1 at real steps.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): class indices; gives the
                cross-entropy loss.

        Returns: `SequenceClassifierOutput` with `logits` of shape `(batch_size, num_labels)`.
        """
        if past_values is not None:
            check_labels(labels, past_values.shape[0], self.config)
        outputs = self.model(past_values, attention_mask=attention_mask, **kwargs)
        hidden_states = self.dropout(self.activation_fn(outputs.last_hidden_state))
        logits = self.classifier(self.pool(hidden_states, self.model.token_mask(past_values, attention_mask)))
        loss = self.loss_function(labels, logits, self.config, **kwargs) if labels is not None else None
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# Saving copies this file and its relative imports beside the weights (see PrimalDualTimeSeriesConfig.code_auto_map).
PrimalDualTimeSeriesModel.register_for_auto_class("AutoModel")
PrimalDualTimeSeriesForClassification.register_for_auto_class("AutoModelForSequenceClassification")


__all__ = [
    "PrimalDualTimeSeriesForClassification",
    "PrimalDualTimeSeriesModel",
    "PrimalDualTimeSeriesPreTrainedModel",
]
