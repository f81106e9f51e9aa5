"""The attention layer of the primal-dual models.

``config.attention_type`` chooses the maths (:mod:`.attention`); ``config._attn_implementation``, transformers'
``attn_implementation``, chooses how it is computed:

* ``"eager"``: the formula, with the attention matrix materialised and returned (the reference);
* ``"sdpa"`` (the default): the fast kernels of :mod:`.attention_kernels`; no attention matrix, so with
  ``output_attentions=True`` the attentions are ``None``, as in transformers' own models under ``sdpa``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.utils import logging

from .attention import AttentionOptions, TokenLayout, primal_dual_attention

logger = logging.get_logger(__name__)


class PrimalDualSelfAttention(nn.Module):
    """Multi-head self-attention of the primal-dual family, with transformers' ViT parameter names
    (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``), so that ViT checkpoints load unchanged: BN and SH add no
    parameters.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.options = AttentionOptions.from_config(config)
        self.is_causal = False
        inner = self.num_heads * self.head_dim
        qkv_bias = getattr(config, "qkv_bias", True)
        self.q_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.o_proj = nn.Linear(inner, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_layout: TokenLayout = TokenLayout(),
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, N, hidden)`` -> ``(B, N, hidden)`` and, under ``eager``, the ``(B, H, N, N)`` attention matrix.

        Args:
            attention_mask: boolean ``(B, N)``, ``True`` for real tokens (keys), or None.
            token_layout: prefix tokens and patch grid, for Attention-SH.
        """
        implementation = self.config._attn_implementation or "sdpa"
        if kwargs.get("output_attentions") and implementation != "eager":
            logger.warning_once(
                "`sdpa` attention does not support `output_attentions=True`: the attentions are None. Set "
                "attn_implementation='eager' (model.set_attn_implementation('eager')) to get the attention matrices."
            )
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        output, weights = primal_dual_attention(
            query, key, value, self.options, attention_mask, token_layout, implementation,
            self.options.dropout if self.training else 0.0,
        )
        output = output.transpose(1, 2).reshape(batch, length, -1)
        return self.o_proj(output), weights


__all__ = ["PrimalDualSelfAttention"]
