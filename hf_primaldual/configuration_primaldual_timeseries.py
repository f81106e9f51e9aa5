"""PrimalDualTimeSeries configuration: the mvts-transformer classifier (Zerveas et al., KDD 2021) with the
attention of the primal-dual family."""

from __future__ import annotations

from typing import Literal

from huggingface_hub.dataclasses import strict

from .configuration_attention import PrimalDualAttentionConfig


@strict
class PrimalDualTimeSeriesConfig(PrimalDualAttentionConfig):
    r"""
    Configuration of a [`PrimalDualTimeSeriesModel`]: the encoder of mvts-transformer (a linear projection of the
    input channels, learnable positional encoding, post-norm transformer layers) whose self-attention is chosen by
    `attention_type` (see [`PrimalDualAttentionConfig`] for the attention fields). Defaults follow
    mvts-transformer's classification setup: d_model 64, 8 heads, 3 layers, feed-forward 256, dropout 0.1,
    batch normalisation, flattened output.

    num_input_channels (`int`, *optional*, defaults to 1):
        Number of channels (variables) C of the multivariate series.
    max_sequence_length (`int`, *optional*, defaults to 512):
        Longest series the model takes (the size of the positional encoding; with `pooling="flatten"` also the
        classifier's input).
    hidden_size (`int`, *optional*, defaults to 64):
        d_model.
    num_hidden_layers (`int`, *optional*, defaults to 3):
        Number of encoder layers.
    num_attention_heads (`int`, *optional*, defaults to 8):
        Heads per layer.
    intermediate_size (`int`, *optional*, defaults to 256):
        Width of the feed-forward layers.
    hidden_act (`str`, *optional*, defaults to `"gelu"`):
        Activation of the feed-forward layers and of the encoder output.
    hidden_dropout_prob (`float`, *optional*, defaults to 0.1):
        Dropout on embeddings, residual branches and the encoder output.
    attention_probs_dropout_prob (`float`, *optional*, defaults to 0.1):
        Dropout on the attention probabilities (softmax-kernel types).
    norm_type (`str`, *optional*, defaults to `"batch"`):
        `"batch"`: BatchNorm over the real (non-padded) time steps of the batch, as mvts-transformer;
        `"layer"`: LayerNorm.
    pooling (`str`, *optional*, defaults to `"flatten"`):
        How the classifier sees the sequence: `"flatten"` (all `max_sequence_length` positions concatenated, padded
        ones zeroed, as mvts-transformer), `"mean"` (mean over real time steps) or `"cls"` (a learnable class
        token prepended to the series).
    layer_norm_eps (`float`, *optional*, defaults to 1e-5):
        Epsilon of the normalisation layers.
    initializer_range (`float`, *optional*, defaults to 0.02):
        Standard deviation of the truncated-normal initialisation.
    """

    model_type = "primaldual-timeseries"
    code_auto_map = {
        "AutoConfig": "configuration_primaldual_timeseries.PrimalDualTimeSeriesConfig",
        "AutoModel": "modeling_primaldual_timeseries.PrimalDualTimeSeriesModel",
        "AutoModelForSequenceClassification": "modeling_primaldual_timeseries.PrimalDualTimeSeriesForClassification",
    }
    attribute_map = {"d_model": "hidden_size"}

    num_input_channels: int = 1
    max_sequence_length: int = 512
    hidden_size: int = 64
    num_hidden_layers: int = 3
    num_attention_heads: int = 8
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.1
    attention_probs_dropout_prob: float | int = 0.1
    norm_type: Literal["batch", "layer"] = "batch"
    pooling: Literal["flatten", "mean", "cls"] = "flatten"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02

    def validate_series_shape(self) -> None:
        """Part of `@strict`-powered validation."""
        if self.num_input_channels < 1:
            raise ValueError(f"num_input_channels must be >= 1, got {self.num_input_channels}.")
        if self.max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be >= 1, got {self.max_sequence_length}.")
        if self.norm_type not in ("batch", "layer"):
            raise ValueError(f"norm_type must be 'batch' or 'layer', got {self.norm_type!r}.")
        if self.pooling not in ("flatten", "mean", "cls"):
            raise ValueError(f"pooling must be 'flatten', 'mean' or 'cls', got {self.pooling!r}.")


PrimalDualTimeSeriesConfig.register_for_auto_class()

__all__ = ["PrimalDualTimeSeriesConfig"]
