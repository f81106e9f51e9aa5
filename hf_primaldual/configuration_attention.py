"""The configuration fields shared by every model of the package: which attention of the primal-dual family
to use, and its settings. Validated at construction, with messages that say what to change."""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
from typing import ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

from .attention import AttentionSettings

logger = logging.get_logger(__name__)


@strict
class PrimalDualAttentionConfig(PreTrainedConfig, AttentionSettings):
    r"""
    Base configuration of the primal-dual models (not used on its own). Its attention fields are those of
    [`AttentionSettings`], declared there once:

    attention_type (`str`, *optional*, defaults to `"softmax"`):
        One of `softmax`, `linear`, `sparse`, `bn`, `sh`, `bn_sh`, `linear_bn`, `linear_sh`, `linear_bn_sh`:
        the kernel (softmax, or linear with `elu + 1` features) composed with Attention-BN and/or Attention-SH;
        `sparse` is softmax attention over a local window.
    attention_window (`int`, *optional*, defaults to 16):
        For `sparse`: each query attends to the keys at most this many positions away, on each side.
    head_scales (`list[int]`, *optional*):
        For the SH types: the pooling factor of each head's keys and values, one integer >= 1 per head, at least
        one of them 1. Defaults to the heads split into up to three equal groups at scales 1, 2 and 4.
    sh_pooling (`str`, *optional*, defaults to `"mean"`):
        How SH pools keys and values: `"mean"` (the paper's average pooling) or `"max"`.
    bn_eps (`float`, *optional*, defaults to 1e-5):
        For the BN types: added to the keys' variance before the square root.
    bn_mean_weight (`float`, *optional*, defaults to 1.0):
        For the BN types: queries and keys are shifted by this weight times the keys' mean (1.0: the derivation;
        0.0: no re-centring).
    bn_use_std (`bool`, *optional*, defaults to `True`):
        For the BN types: also divide by the keys' standard deviation (the derivation) or only re-centre.
    """

    # The Auto classes a checkpoint of this family loads with, from the code files saved beside it
    # (`trust_remote_code=True`, no package needed); written to config.json as `auto_map`.
    code_auto_map: ClassVar[dict[str, str]] = {}

    hidden_size: int = 192
    num_attention_heads: int = 3
    attention_probs_dropout_prob: float | int = 0.0

    def __post_init__(self, **kwargs):
        if not _LOADING.get():
            _refuse_misspelt_fields(self, kwargs)
        _refuse_oversized(self, kwargs)
        if self.head_scales is not None:
            self.head_scales = list(self.head_scales)  # JSON has no tuples: keep the saved form
        kwargs["auto_map"] = {**self.code_auto_map, **(kwargs.get("auto_map") or {})}
        super().__post_init__(**kwargs)

    def to_diff_dict(self) -> dict:
        # Always written, default or not: a checkpoint without it would load as softmax on weights trained otherwise.
        return {**super().to_diff_dict(), "attention_type": self.attention_type}

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        if (
            config_dict.get("model_type") == cls.model_type
            and "attention_type" not in config_dict
            and "attention_type" not in kwargs
        ):
            logger.warning(
                f"This {cls.model_type} checkpoint's config.json does not say its attention_type: it loads as "
                f"'{cls.attention_type}'. If it was trained with another type, pass attention_type=... to "
                "from_pretrained and save it again."
            )
        # A saved config is taken as written (other tools add their own fields); typos are refused at construction.
        token = _LOADING.set(True)
        try:
            return super().from_dict(config_dict, **kwargs)
        finally:
            _LOADING.reset(token)

    def validate_attention(self) -> None:
        """Part of `@strict`-powered validation: the attention settings (:meth:`AttentionSettings.check_settings`)
        and the model's sizes agree with each other."""
        for name in ("hidden_size", "num_attention_heads", "num_hidden_layers"):
            value = getattr(self, name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        for name in ("attention_probs_dropout_prob", "hidden_dropout_prob"):
            value = getattr(self, name, 0.0)
            if not 0 <= value < 1:
                raise ValueError(f"{name} is a probability of dropping, in [0, 1): got {value!r}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads}): change one of them, e.g. hidden_size="
                f"{self.num_attention_heads * max(1, self.hidden_size // self.num_attention_heads)}."
            )
        self.check_settings(self.num_attention_heads)


#: The largest sizes a config may ask for: far above any model of this family, far below what would hang or exhaust
#: memory while the model is built (a hostile or corrupted config.json asking for 10**7 layers or 10**8 labels).
SIZE_LIMITS: dict[str, int] = {
    "hidden_size": 1 << 16,
    "intermediate_size": 1 << 18,
    "num_hidden_layers": 1 << 10,
    "num_attention_heads": 1 << 10,
    "num_labels": 1 << 20,
    "max_sequence_length": 1 << 22,
    "num_input_channels": 1 << 16,
    "num_channels": 1 << 10,
    "image_size": 1 << 14,
    "patch_size": 1 << 14,
}


def _refuse_oversized(config: PreTrainedConfig, kwargs: dict) -> None:
    """Checked before transformers builds anything from the sizes (``num_labels`` makes ``id2label`` at once)."""
    sizes = {name: getattr(config, name, None) for name in SIZE_LIMITS}
    sizes["num_labels"] = kwargs.get("num_labels", len(config.id2label) if config.id2label else None)
    for name, value in sizes.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, int) and v > SIZE_LIMITS[name] for v in values):
            raise ValueError(
                f"{type(config).__name__}: {name} = {value} is beyond any model this package builds (at most "
                f"{SIZE_LIMITS[name]}); is this config.json from a trusted source? Fix the value or the file."
            )


def _refuse_misspelt_fields(config: PreTrainedConfig, extra: dict) -> None:
    """transformers keeps unknown config kwargs as attributes, so ``attenton_type="bn"`` would silently build a
    softmax model: refuse a kwarg that is a near miss of one of this config's own fields."""
    own = [f.name for f in dataclasses.fields(config) if f.name not in _BASE_FIELDS]
    for name in extra:
        if name in own or name.startswith("_"):
            continue
        close = difflib.get_close_matches(name, own, n=1, cutoff=0.85)
        if close:
            raise ValueError(
                f"{type(config).__name__} has no field {name!r}: did you mean {close[0]!r}? (Unknown fields would be "
                "kept and ignored.)"
            )


_BASE_FIELDS = {f.name for f in dataclasses.fields(PreTrainedConfig)}
_LOADING: contextvars.ContextVar[bool] = contextvars.ContextVar("primaldual_config_loading", default=False)

__all__ = ["PrimalDualAttentionConfig"]
