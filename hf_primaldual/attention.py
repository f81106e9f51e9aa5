"""The primal-dual attention family of Nguyen et al., "A Primal-Dual Framework for Transformers and Neural
Networks" (ICLR 2023, arXiv:2406.13781), written as the paper's formulas. This is the reference
(``attn_implementation="eager"``); :mod:`.attention_kernels` computes the same maths through fused kernels
(``"sdpa"``).

Self-attention is the dual form (support-vector expansion) of a support vector regression fitted on the keys
``k_j`` with targets ``v_j`` and evaluated at the queries ``q_i``: ``o_i = sum_j A_ij v_j``. An attention is a
**kernel**, which gives the attention matrix ``A``, and two primal choices that compose with it:

* kernels: ``softmax`` (``A_ij = softmax_j(q_i^T k_j / sqrt(D))``), ``linear`` (``Phi = elu + 1``,
  ``A_ij = Phi(q_i)^T Phi(k_j) / sum_l Phi(q_i)^T Phi(k_l)``, Katharopoulos et al. 2020, O(N) when not
  materialised) and ``local_window`` (softmax over the keys with ``|i - j| <= window``: the SVR fitted on a subset
  of the keys, the ``sparse`` type);
* **Attention-BN**: a batch-normalisation layer in the primal. Its "batch" is the SVR's training set, the keys of
  this sequence and head, so queries and keys become ``(x - beta * mu) * s`` with the keys' mean ``mu`` and
  ``s = 1 / sqrt(var + eps)`` (per example, head and feature, over real keys only) before the kernel;
* **Attention-SH**: head ``h`` fits its SVR on keys and values average-pooled along the sequence by an integer
  factor ``s_h`` (on the 2-D patch grid for images, never pooling prefix tokens such as a class token), so it
  costs O(N * N / s_h). Queries stay at full length.

Shapes: ``B`` batch, ``H`` heads, ``N`` tokens, ``D`` head dimension. A key mask is a boolean ``(B, N)`` tensor,
``True`` for real keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

KERNELS = ("softmax", "linear", "local_window")
SH_POOLING_MODES = ("mean", "max")


@dataclass(frozen=True)
class AttentionSpec:
    """The composable parts an ``attention_type`` name stands for: a kernel, with or without BN and SH."""

    kernel: Literal["softmax", "linear", "local_window"]
    batch_norm: bool = False
    scaled_heads: bool = False

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"Unknown attention kernel {self.kernel!r}: choose one of {', '.join(KERNELS)}.")
        if self.kernel == "local_window" and (self.batch_norm or self.scaled_heads):
            # BN's statistics and SH's pooled keys are defined over the whole sequence, a window's keys are
            # per query: the composition is not the paper's and is not defined here.
            raise ValueError(
                "The local-window kernel (sparse attention) does not compose with Attention-BN or Attention-SH: "
                "use the softmax or linear kernel for those."
            )


ATTENTION_TYPES: dict[str, AttentionSpec] = {
    "softmax": AttentionSpec("softmax"),
    "linear": AttentionSpec("linear"),
    "sparse": AttentionSpec("local_window"),
    "bn": AttentionSpec("softmax", batch_norm=True),
    "sh": AttentionSpec("softmax", scaled_heads=True),
    "bn_sh": AttentionSpec("softmax", batch_norm=True, scaled_heads=True),
    "linear_bn": AttentionSpec("linear", batch_norm=True),
    "linear_sh": AttentionSpec("linear", scaled_heads=True),
    "linear_bn_sh": AttentionSpec("linear", batch_norm=True, scaled_heads=True),
}


def parse_attention_type(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of an ``attention_type`` name; a clear error for an unknown one."""
    try:
        return ATTENTION_TYPES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown attention_type {name!r}. Choose one of: {', '.join(ATTENTION_TYPES)}."
        ) from None


def default_head_scales(num_heads: int) -> list[int]:
    """Attention-SH's default factors: the heads split into up to three equal groups at scales 1, 2 and 4.

    Three heads (DeiT-tiny) give ``[1, 2, 4]``, eight give ``[1, 1, 1, 2, 2, 2, 4, 4]``.
    """
    return [2 ** min(2, (3 * head) // num_heads) for head in range(num_heads)]


@dataclass(frozen=True)
class TokenLayout:
    """How the tokens of a sequence are arranged, which Attention-SH needs to pool keys.

    ``num_prefix_tokens`` tokens (a class token) come first and are never pooled. The rest is a 1-D sequence,
    or, when ``grid = (height, width)`` is given, a row-major 2-D patch grid pooled in ``s x s`` windows.
    """

    num_prefix_tokens: int = 0
    grid: tuple[int, int] | None = None


@dataclass(frozen=True)
class AttentionOptions:
    """Everything about an attention that is fixed by the model configuration."""

    spec: AttentionSpec
    head_scales: tuple[int, ...]
    sh_pooling: Literal["mean", "max"] = "mean"
    bn_eps: float = 1e-5
    bn_mean_weight: float = 1.0
    bn_use_std: bool = True
    attention_window: int = 16
    dropout: float = 0.0
    #: the softmax kernel's score scale; None: ``1 / sqrt(D)`` (models that scale otherwise pass their own)
    scaling: float | None = None

    @classmethod
    def from_config(cls, config) -> AttentionOptions:
        """Read the attention fields of a :class:`PrimalDualAttentionConfig`."""
        return cls(
            spec=parse_attention_type(config.attention_type),
            head_scales=tuple(config.head_scales or default_head_scales(config.num_attention_heads)),
            sh_pooling=config.sh_pooling,
            bn_eps=config.bn_eps,
            bn_mean_weight=config.bn_mean_weight,
            bn_use_std=config.bn_use_std,
            attention_window=config.attention_window,
            dropout=config.attention_probs_dropout_prob,
        )

    def head_groups(self) -> list[tuple[int, list[int]]]:
        """The heads that share a pooling factor, ``[(scale, heads), ...]``, one entry per distinct scale."""
        if not self.spec.scaled_heads:
            return [(1, list(range(len(self.head_scales))))]
        groups: dict[int, list[int]] = {}
        for head, scale in enumerate(self.head_scales):
            groups.setdefault(scale, []).append(head)
        return sorted(groups.items())


def safe_compute_dtype(spec: AttentionSpec, dtype: torch.dtype) -> torch.dtype:
    """The dtype an attention runs in for inputs of ``dtype``.

    float16 cannot hold BN's ``1 / (var + eps)`` for a (near) constant key feature (1e5 > 65504) nor the linear
    kernel's sums over the keys: those types run in float32 and return float16. bfloat16 has float32's range.
    """
    if dtype == torch.float16 and (spec.batch_norm or spec.kernel == "linear"):
        return torch.float32
    return dtype


# ----------------------------------------------------------------------------------------------------------------
# Kernels: the attention matrix A (B, H, N_q, N_k) of queries (B, H, N_q, D) and keys (B, H, N_k, D)
# ----------------------------------------------------------------------------------------------------------------


def _allowed(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if key_mask is None else key_mask[:, None, None, :]


def softmax_kernel(
    query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor | None, options: AttentionOptions
) -> torch.Tensor:
    """``A_ij = softmax_j(q_i^T k_j / sqrt(D))`` over the real keys."""
    return masked_softmax(scores(query, key, options.scaling), _allowed(key_mask), query.dtype)


def local_window_kernel(
    query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor | None, options: AttentionOptions
) -> torch.Tensor:
    """Softmax over the real keys ``j`` with ``|i - j| <= attention_window`` (sparse attention); a (padded) query
    with no real key in its window attends to its whole window."""
    positions = torch.arange(query.shape[-2], device=query.device)
    allowed = (positions[:, None] - positions[None, :]).abs() <= options.attention_window
    if key_mask is not None:
        real = allowed & _allowed(key_mask)
        allowed = torch.where(real.any(dim=-1, keepdim=True), real, allowed)
    return masked_softmax(scores(query, key, options.scaling), allowed, query.dtype)


def scores(query: torch.Tensor, key: torch.Tensor, scaling: float | None = None) -> torch.Tensor:
    """``q_i^T k_j / sqrt(D)`` in at least float32: half precision overflows on large queries and keys, where the
    fused kernels accumulate in float32 too."""
    dtype = torch.promote_types(query.dtype, torch.float32)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return torch.matmul(query.to(dtype), key.to(dtype).transpose(-1, -2)) * scale


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if allowed is not None:
        # The dtype's lowest value, not -inf: a query that may see no key (a padded one) gets uniform weights,
        # finite, instead of NaN that would leak into gradients; the model discards its output.
        logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    return logits.softmax(dim=-1).to(dtype)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``Phi(x) = elu(x) + 1``: positive features, so that ``Phi(q)^T Phi(k)`` is a valid similarity."""
    return F.elu(x) + 1.0


LINEAR_KERNEL_EPS = 1e-6


def linear_kernel(
    query: torch.Tensor, key: torch.Tensor, key_mask: torch.Tensor | None, options: AttentionOptions
) -> torch.Tensor:
    """``A_ij = Phi(q_i)^T Phi(k_j) / sum_l Phi(q_i)^T Phi(k_l)`` over the real keys, no ``1/sqrt(D)`` scale."""
    similarity = torch.matmul(elu_feature_map(query), elu_feature_map(key).transpose(-1, -2))
    if key_mask is not None:
        similarity = similarity * _allowed(key_mask).to(similarity.dtype)
    return similarity / similarity.sum(dim=-1, keepdim=True).clamp_min(LINEAR_KERNEL_EPS)


ATTENTION_KERNELS = {"softmax": softmax_kernel, "linear": linear_kernel, "local_window": local_window_kernel}


# ----------------------------------------------------------------------------------------------------------------
# Attention-BN: the primal batch norm, a transform of queries and keys
# ----------------------------------------------------------------------------------------------------------------


def key_statistics(key: torch.Tensor, key_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys' ``(var, mean)`` per example, head and feature over the real keys, ``(B, H, 1, D)``, in >= float32."""
    keys = key.to(torch.promote_types(key.dtype, torch.float32))
    if key_mask is None:
        return torch.var_mean(keys, dim=-2, unbiased=False, keepdim=True)
    weights = key_mask[:, None, :, None].to(keys.dtype)
    count = weights.sum(dim=-2, keepdim=True).clamp_min(1.0)
    mean = (keys * weights).sum(dim=-2, keepdim=True) / count
    var = ((keys - mean).square() * weights).sum(dim=-2, keepdim=True) / count
    return var, mean


def batch_normalize_queries_keys(
    query: torch.Tensor,
    key: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    eps: float = 1e-5,
    mean_weight: float = 1.0,
    use_std: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-BN's primal batch norm: ``(x - beta * mu) * s`` for queries and keys alike.

    ``mu`` and ``s = 1 / sqrt(var + eps)`` are the keys' mean and inverse standard deviation per example, head and
    feature, over the real keys of the sequence. Statistics are computed in at least float32.

    Args:
        query: ``(B, H, N_q, D)``; key: ``(B, H, N_k, D)``; key_mask: boolean ``(B, N_k)``.
    """
    var, mean = key_statistics(key, key_mask)
    shift = (mean_weight * mean).to(key.dtype)
    query, key = query - shift, key - shift
    if use_std:
        scale = torch.rsqrt(var + eps).to(key.dtype)
        query, key = query * scale, key * scale
    return query, key


# ----------------------------------------------------------------------------------------------------------------
# Attention-SH: keys and values pooled per head
# ----------------------------------------------------------------------------------------------------------------


def slot_of_token(length: int, scale: int, layout: TokenLayout, device: torch.device) -> torch.Tensor:
    """The ``(N,)`` index of the pooled slot each token goes into (prefix tokens keep their own slots)."""
    prefix = layout.num_prefix_tokens
    if layout.grid is None:
        token_slot = torch.arange(length - prefix, device=device) // scale
    else:
        height, width = layout.grid
        slots_w = math.ceil(width / scale)
        rows = torch.arange(height, device=device) // scale
        cols = torch.arange(width, device=device) // scale
        token_slot = (rows[:, None] * slots_w + cols[None, :]).flatten()
    return torch.cat([torch.arange(prefix, device=device), prefix + token_slot])


def check_layout(length: int, layout: TokenLayout) -> None:
    if layout.grid is not None and layout.grid[0] * layout.grid[1] != length - layout.num_prefix_tokens:
        height, width = layout.grid
        raise ValueError(
            f"A {height}x{width} grid does not hold the {length - layout.num_prefix_tokens} non-prefix tokens."
        )


def pool_keys_values(
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    scale: int,
    layout: TokenLayout,
    mode: Literal["mean", "max"] = "mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Attention-SH's downsampling of keys and values by ``scale`` along the sequence (or the 2-D grid).

    A pooled key is the mean (or max) of its real members only; a pooled slot with no real member is masked.
    Prefix tokens are kept as they are, in front. Partial windows at the end of the sequence or grid are pooled
    over the members they have.

    Args:
        key, value: ``(B, H, N, D)``; key_mask: boolean ``(B, N)`` or None (all real).

    Returns:
        ``(key, value, key_mask)``: pooled ``(B, H, M, D)`` keys and values and their ``(B, M)`` mask (None when
        ``key_mask`` is None). Token ``j`` went into slot :func:`slot_of_token`\\ ``[j]``.
    """
    length = key.shape[-2]
    check_layout(length, layout)
    slots = slot_of_token(length, scale, layout, key.device)
    num_slots = int(slots[-1]) + 1 if length else 0
    real = torch.ones(1, length, device=key.device) if key_mask is None else key_mask.to(torch.float32)
    membership = F.one_hot(slots, num_slots).to(real.dtype)  # (N, M)
    counts = real @ membership  # (B|1, M): real members per slot

    def pool(x: torch.Tensor) -> torch.Tensor:
        members = real[:, None, :, None].to(x.dtype)
        if mode == "mean":
            sums = torch.einsum("bhnd,nm->bhmd", x * members, membership.to(x.dtype))
            return sums / counts[:, None, :, None].clamp_min(1.0).to(x.dtype)
        # max over the real members of each slot: the others are lowered to the dtype's minimum first
        spread = x.unsqueeze(-2).masked_fill(~(membership.bool()[:, :, None] & (members > 0)[..., None]),
                                             torch.finfo(x.dtype).min)  # (B, H, N, M, D)
        pooled = spread.amax(dim=-3)
        return pooled.masked_fill((counts == 0)[:, None, :, None], 0.0)

    pooled_mask = None if key_mask is None else counts > 0
    return pool(key), pool(value), pooled_mask


def spread_over_members(
    weights: torch.Tensor, slots: torch.Tensor, key_mask: torch.Tensor | None
) -> torch.Tensor:
    """Spread the weight of each pooled slot evenly over its real members: ``(B, H, N, M)`` -> ``(B, H, N, N)``.

    With every member ``j`` of slot ``m`` given the slot's pooled value, ``sum_j A'_ij v_m(j) = sum_m A_im v_m``:
    the output over the original keys is exactly the pooled one, for mean and max pooling alike.
    """
    real = (
        torch.ones(1, slots.numel(), device=weights.device, dtype=weights.dtype)
        if key_mask is None
        else key_mask.to(weights.dtype)
    )
    counts = torch.zeros(real.shape[0], weights.shape[-1], device=weights.device, dtype=weights.dtype)
    counts.index_add_(1, slots, real)
    per_token = real / counts[:, slots].clamp_min(1.0)  # (B|1, N)
    return weights[..., slots] * per_token[:, None, None, :]


# ----------------------------------------------------------------------------------------------------------------
# The family, composed
# ----------------------------------------------------------------------------------------------------------------


def eager_primal_dual_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    options: AttentionOptions,
    key_mask: torch.Tensor | None = None,
    layout: TokenLayout = TokenLayout(),
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Any type of the family as its formula: ``o_i = sum_j A_ij v_j`` with ``A`` materialised.

    Per group of heads sharing an SH scale: keys and values pooled (SH), queries and keys batch-normalised with the
    (pooled) keys' statistics (BN), the kernel's attention matrix, dropout on it (not for the linear kernel, whose
    fast form never forms it), and for pooled heads the matrix spread over the original keys, which the output is
    computed from.

    Args:
        query, key, value: ``(B, H, N, D)``; key_mask: boolean ``(B, N)``, ``True`` for real keys.

    Returns:
        ``(output, weights)``: ``(B, H, N, D)`` and the ``(B, H, N, N)`` attention matrix over the original keys.
    """
    spec = options.spec
    kernel = ATTENTION_KERNELS[spec.kernel]

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The heads' attention matrix over the original keys, and the values it weighs."""
        mask = key_mask
        if scale > 1:
            k, v, mask = pool_keys_values(k, v, key_mask, scale, layout, options.sh_pooling)
        if spec.batch_norm:
            q, k = batch_normalize_queries_keys(q, k, mask, options.bn_eps, options.bn_mean_weight, options.bn_use_std)
        weights = kernel(q, k, mask, options)
        if spec.kernel != "linear":
            weights = F.dropout(weights, p=dropout_p, training=dropout_p > 0)
        if scale > 1:
            slots = slot_of_token(q.shape[-2], scale, layout, q.device)
            weights, v = spread_over_members(weights, slots, key_mask), v[..., slots, :]
        return weights, v

    groups = options.head_groups()
    if len(groups) == 1:
        weights, values = attend(query, key, value, groups[0][0])
    else:
        parts = [attend(query[:, heads], key[:, heads], value[:, heads], scale) for scale, heads in groups]
        order = torch.tensor([head for _, heads in groups for head in heads], device=query.device).argsort()
        weights = torch.cat([w for w, _ in parts], dim=1)[:, order]
        values = torch.cat([v for _, v in parts], dim=1)[:, order]
    return torch.matmul(weights, values), weights


__all__ = [
    "ATTENTION_KERNELS",
    "ATTENTION_TYPES",
    "AttentionOptions",
    "AttentionSpec",
    "TokenLayout",
    "batch_normalize_queries_keys",
    "default_head_scales",
    "eager_primal_dual_attention",
    "linear_kernel",
    "local_window_kernel",
    "parse_attention_type",
    "pool_keys_values",
    "softmax_kernel",
    "spread_over_members",
]
