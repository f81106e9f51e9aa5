"""The primal-dual family for any transformers model that routes its attention through ``AttentionInterface``.

:func:`register_primal_dual_attentions` (run on ``import hf_primaldual``) registers one attention function per
``attention_type`` under ``primaldual_<type>`` (``primaldual_bn``, ``primaldual_sh``, ``primaldual_bn_sh``,
``primaldual_linear``, ...), with transformers' SDPA mask builder beside it, so that

    AutoModel.from_pretrained("google/vit-base-patch16-224", attn_implementation="primaldual_bn")
    model.set_attn_implementation("primaldual_bn_sh")

run a stock checkpoint with Attention-BN or -SH (neither adds a weight). Settings come from the config attribute
``primaldual_attention`` (a dict, saved in config.json; see :data:`DEFAULT_SETTINGS`). The attention matrices are
materialised only when ``output_attentions=True`` reaches the function.

Masks: a padding mask (the same keys for every query) is the family's key mask, honoured exactly as in the
package's own models (BN statistics and SH pooling over real keys only). A causal model's queries each see their
own keys: Attention-BN then uses, for query ``i``, the statistics of the keys it may see,
``((q_i - mu_i) s_i) . ((k_j - mu_i) s_i) = (s_i^2 (q_i - mu_i)) . k_j + const_i``, so it is one fused causal call
with transformed queries and untouched keys. Attention-SH on a causal model is refused (a pooled slot would mix
keys that some queries may not see).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.masking_utils import sdpa_mask

from .attention import (
    ATTENTION_TYPES,
    AttentionOptions,
    AttentionSettings,
    TokenLayout,
    on_attention_types_added,
    primal_dual_attention,
)
from .input_checks import _refuse_unless as refuse_unless

PREFIX = "primaldual_"
#: ``primaldual_<type>`` -> ``<type>``, for every attention type of the family (kernels registered later included).
REGISTERED_ATTENTIONS: dict[str, str] = {}
SETTINGS_ATTRIBUTE = "primaldual_attention"
#: The settings a stock model takes: the family's (:class:`AttentionSettings`, the type being the attention
#: function's name) and SH's token layout, which the package's own models know and a stock model's config does not.
DEFAULT_SETTINGS: dict[str, Any] = {
    **{f.name: f.default for f in dataclasses.fields(AttentionSettings) if f.name != "attention_type"},
    "num_prefix_tokens": None,  # None: inferred from the model type
    "grid": None,  # [height, width] of the patch grid, "none" for 1-D; None: inferred
}

# Vision families whose tokens are prefix tokens followed by a row-major patch grid: the prefix count.
PATCH_GRID_PREFIX_TOKENS: dict[str, Callable[[Any], int]] = {
    "vit": lambda config: 1,
    "deit": lambda config: 2,  # class and distillation tokens
    "beit": lambda config: 1,
    "data2vec-vision": lambda config: 1,
    "dinov2": lambda config: 1,
    "dinov2_with_registers": lambda config: 1 + config.num_register_tokens,
    "vit_msn": lambda config: 1,
    "clip_vision_model": lambda config: 1,
    "siglip_vision_model": lambda config: 0,
}
# Vision families whose tokens are no prefix + full grid: pooling them needs a layout the config does not give.
UNSUPPORTED_LAYOUTS: dict[str, str] = {
    "yolos": "its detection tokens follow the patches",
    "videomae": "its tokens are 3-D tubelets (time x height x width)",
    "vit_mae": "its encoder sees a random subset of the patches, not the grid",
    "vivit": "its tokens are 3-D tubelets (time x height x width)",
}


def settings_of(config: Any) -> dict[str, Any]:
    """The primal-dual settings a stock config carries (``config.primaldual_attention``), over the defaults."""
    given = getattr(config, SETTINGS_ATTRIBUTE, None) or {}
    unknown = set(given) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(
            f"Unknown {SETTINGS_ATTRIBUTE} settings {sorted(unknown)}: the settings are {sorted(DEFAULT_SETTINGS)}."
        )
    return {**DEFAULT_SETTINGS, **given}


def attention_settings(config: Any, attention_type: str, num_heads: int | None = None) -> AttentionSettings:
    """The :class:`AttentionSettings` of a stock model run as ``primaldual_<attention_type>``, validated."""
    given = settings_of(config)
    settings = AttentionSettings(attention_type, **{name: given[name] for name in AttentionSettings.names()
                                                    if name != "attention_type"})
    try:
        settings.check_settings(num_heads)
    except ValueError as err:
        raise ValueError(f"{SETTINGS_ATTRIBUTE}: {err}") from None
    return settings


def attention_options(config: Any, attention_type: str, num_heads: int, scaling: float | None) -> AttentionOptions:
    return AttentionOptions.from_settings(attention_settings(config, attention_type, num_heads), num_heads,
                                          scaling=scaling)


def token_layout(config: Any, length: int) -> TokenLayout:
    """Attention-SH's view of a model's ``length`` tokens: prefix tokens and, for vision families, the patch grid.

    Inferred from the model type (a square grid after the prefix tokens, whatever the image size); text, audio and
    time-series models pool 1-D. A vision model whose layout cannot be inferred is refused, naming the fix.
    """
    settings = settings_of(config)
    model_type = getattr(config, "model_type", "")
    if settings["num_prefix_tokens"] is not None or settings["grid"] is not None:
        prefix = int(settings["num_prefix_tokens"] or 0)
        grid = settings["grid"]
        if grid is None or grid == "none":
            return TokenLayout(prefix)
        return TokenLayout(prefix, (int(grid[0]), int(grid[1])))
    fix = (
        f"set config.{SETTINGS_ATTRIBUTE} = {{'num_prefix_tokens': P, 'grid': [H, W]}} (or 'grid': 'none' for 1-D "
        "pooling), or use an attention without SH (primaldual_bn)"
    )
    if model_type in UNSUPPORTED_LAYOUTS:
        raise ValueError(f"Attention-SH cannot pool {model_type} tokens: {UNSUPPORTED_LAYOUTS[model_type]}; {fix}.")
    if model_type in PATCH_GRID_PREFIX_TOKENS:
        prefix = PATCH_GRID_PREFIX_TOKENS[model_type](config)
        side = math.isqrt(length - prefix)
        if side * side != length - prefix:
            raise ValueError(
                f"Attention-SH: {length - prefix} patch tokens of a {model_type} input after {prefix} prefix tokens "
                f"are not a square grid (a non-square image?): {fix}."
            )
        return TokenLayout(prefix, (side, side))
    if hasattr(config, "image_size") or hasattr(config, "patch_size") or "vision" in model_type:
        raise ValueError(
            f"Attention-SH does not know how the tokens of a {model_type!r} model are laid out (prefix tokens, patch "
            f"grid): {fix}."
        )
    prefix = 1 if model_type == "patchtst" and getattr(config, "use_cls_token", False) else 0
    return TokenLayout(prefix)


# ----------------------------------------------------------------------------------------------------------------
# The attention function
# ----------------------------------------------------------------------------------------------------------------


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Grouped-query attention: each key/value head serves ``groups`` query heads."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=1)


def _allowed(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """transformers' 4-D mask as booleans, ``True`` = attend (additive masks: 0 = attend)."""
    if attention_mask is None or attention_mask.dtype == torch.bool:
        return attention_mask
    masked = attention_mask <= torch.finfo(attention_mask.dtype).min / 2
    # Some models pass a position bias (relative or ALiBi) in the mask argument: dropping it would be silent.
    refuse_unless(
        ((attention_mask == 0) | masked).all(),
        "This model passes an additive bias (not only a 0 / -inf mask) to its attention function, e.g. a "
        "relative-position bias: the primal-dual attentions do not apply such biases. Disable it in the config "
        "(e.g. use_relative_position_bias=False) or keep the model's own attention.",
    )
    return ~masked


def primal_dual_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    *,
    attention_type: str,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers' attention-function contract for the family: ``(B, H, N_q, D)`` queries, ``(B, H_kv, N_k, D)``
    keys and values -> ``(B, N_q, H, D)`` output and, with ``output_attentions``, the ``(B, H, N_q, N_k)`` matrix.

    Eagerly, the mask's values choose the path (no mask where every key is real; the family's key mask where every
    query sees the same keys). Inside a graph (torch.compile, torch.export) nothing may depend on values, so the
    model's structure chooses: a non-causal model's mask is a padding mask, which an assertion in the graph checks.
    """
    config = module.config
    num_heads = query.shape[1]
    key = _repeat_kv(key, num_heads // key.shape[1])
    value = _repeat_kv(value, num_heads // value.shape[1])
    options = attention_options(config, attention_type, num_heads, scaling)
    implementation = "eager" if kwargs.get("output_attentions") else "sdpa"
    q_length, kv_length = query.shape[-2], key.shape[-2]
    tracing = torch.compiler.is_compiling()

    allowed = _allowed(attention_mask)
    causal_model = bool(kwargs.get("is_causal", getattr(module, "is_causal", False)))
    causal = allowed is None and q_length > 1 and causal_model
    if causal:
        allowed = torch.ones(q_length, kv_length, dtype=torch.bool, device=query.device).tril(kv_length - q_length)
        allowed = allowed[None, None]
    if allowed is None:
        same_keys_for_every_query = True
    elif tracing:
        same_keys_for_every_query = allowed.shape[1] == 1 and not causal_model
        if same_keys_for_every_query:
            refuse_unless(
                (allowed == allowed[..., :1, :]).all(),
                "Under torch.compile / torch.export the primal-dual attentions take a non-causal model's mask for a "
                "padding mask (the same keys for every query), but this mask differs between queries (a sliding-"
                "window or chunked mask): run this model eagerly, or with its own attention.",
            )
    else:
        same_keys_for_every_query = allowed.shape[1] == 1 and bool((allowed == allowed[..., :1, :]).all())
    # Decoding with a cache (fewer queries than keys) places the local window by the queries' absolute positions.
    if same_keys_for_every_query and not (options.spec.kernel == "local_window" and q_length != kv_length):
        # No mask, or a padding mask: the family's own key mask (eagerly, none where every key is real: the
        # unmasked fast paths; a graph keeps the mask, whatever it holds).
        mask = None if allowed is None or (not tracing and bool(allowed.all())) else allowed[:, 0, 0, :]
        layout = token_layout(config, kv_length) if options.spec.scaled_heads else TokenLayout()
    else:
        mask = torch.ones(1, 1, q_length, kv_length, dtype=torch.bool, device=query.device) if allowed is None \
            else allowed[:, :1] if allowed.shape[1] == 1 else allowed
        if mask.shape[1] != 1:
            raise ValueError("The primal-dual attentions take one mask for all heads, not a mask per head.")
        layout = TokenLayout()
    output, weights = primal_dual_attention(query, key, value, options, mask, layout, implementation, dropout)
    return output.transpose(1, 2).contiguous(), weights


def _named_attention(attention_type: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor | None]]:
    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        return primal_dual_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, attention_type=attention_type, **kwargs
        )

    attention.__name__ = attention.__qualname__ = f"{PREFIX}{attention_type}_attention_forward"
    attention.__doc__ = f"{attention_type!r} of the primal-dual family, as a transformers attention function."
    return attention


def register_primal_dual_attentions(attention_types: list[str] | None = None) -> list[str]:
    """Register ``primaldual_<type>`` for every ``attention_type`` (or those given) in transformers'
    ``AttentionInterface`` (with the SDPA mask builder in ``AttentionMaskInterface``, without which padding and
    causal masks would be dropped). Idempotent; returns the names. Kernels registered later are added as they come."""
    names = []
    for attention_type in ATTENTION_TYPES if attention_types is None else attention_types:
        name = PREFIX + attention_type
        AttentionInterface.register(name, _named_attention(attention_type))
        AttentionMaskInterface.register(name, sdpa_mask)
        REGISTERED_ATTENTIONS[name] = attention_type
        names.append(name)
    return names


on_attention_types_added(register_primal_dual_attentions)


__all__ = [
    "DEFAULT_SETTINGS",
    "REGISTERED_ATTENTIONS",
    "SETTINGS_ATTRIBUTE",
    "primal_dual_attention_forward",
    "register_primal_dual_attentions",
    "token_layout",
]
