"""The primal-dual attention family written as the formulas of Nguyen et al., "A Primal-Dual Framework for
Transformers and Neural Networks" (ICLR 2023, arXiv:2406.13781): the reference that ``attn_implementation="eager"``
runs and that the fast kernels (:mod:`.attention_kernels`) are checked against.

Self-attention is the dual form (support-vector expansion) of a support vector regression fitted on the keys
``k_j`` with targets ``v_j`` and evaluated at the queries ``q_i``: ``o_i = sum_j A_ij v_j``. This module holds the
parts an attention is composed of (:mod:`.attention` composes them):

* kernels, each giving the attention matrix ``A``: ``softmax`` (``A_ij = softmax_j(q_i^T k_j / sqrt(D))``),
  ``linear`` (``Phi = elu + 1``, ``A_ij = Phi(q_i)^T Phi(k_j) / sum_l Phi(q_i)^T Phi(k_l)``, Katharopoulos et al.
  2020) and ``local_window`` (softmax over the keys with ``|i - j| <= window``: the SVR fitted on a subset of the
  keys, the ``sparse`` type);
* **Attention-BN**: a batch-normalisation layer in the primal. Its "batch" is the SVR's training set, the keys a
  query may see, so queries and keys become ``(x - beta * mu) * s`` with those keys' mean ``mu`` and
  ``s = 1 / sqrt(var + eps)`` (per example, head and feature) before the kernel;
* **Attention-SH**: head ``h`` fits its SVR on keys and values average-pooled along the sequence by an integer
  factor ``s_h`` (on the 2-D patch grid for images, never pooling prefix tokens such as a class token).

Shapes: ``B`` batch, ``H`` heads, ``N`` tokens, ``D`` head dimension. Masks: a key mask is a boolean ``(B, N)``
tensor, ``True`` for real keys; an *allowed* mask is boolean and broadcastable to ``(B, H, N_q, N_k)``, ``True``
where query ``i`` may attend to key ``j`` (a key mask is ``key_mask[:, None, None, :]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LINEAR_KERNEL_EPS = 1e-6


@dataclass(frozen=True)
class TokenLayout:
    """How the tokens of a sequence are arranged, which Attention-SH needs to pool keys.

    ``num_prefix_tokens`` tokens (a class token) come first and are never pooled. The rest is a 1-D sequence,
    or, when ``grid = (height, width)`` is given, a row-major 2-D patch grid pooled in ``s x s`` windows.
    """

    num_prefix_tokens: int = 0
    grid: tuple[int, int] | None = None


def with_some_key(allowed: torch.Tensor) -> torch.Tensor:
    """Let a query that may see no key (a padded query, or one outside every real key's window) see all of them.

    Its output is discarded by the model anyway; this keeps it finite instead of NaN, which would leak into
    gradients through the masked reductions downstream.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------------------------------------------
# Kernels: the attention matrix A (B, H, N_q, N_k) of queries (B, H, N_q, D) and keys (B, H, N_k, D)
# ----------------------------------------------------------------------------------------------------------------


def scores(query: torch.Tensor, key: torch.Tensor, scaling: float | None = None) -> torch.Tensor:
    """``q_i^T k_j / sqrt(D)`` (or ``* scaling``) in at least float32: half precision overflows on large queries
    and keys, where the fused kernels accumulate in float32 too."""
    dtype = torch.promote_types(query.dtype, torch.float32)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return torch.matmul(query.to(dtype), key.to(dtype).transpose(-1, -2)) * scale


def masked_softmax(logits: torch.Tensor, allowed: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Softmax over the allowed keys; a query allowed no key attends to all of them (:func:`with_some_key`)."""
    if allowed is not None:
        logits = logits.masked_fill(~with_some_key(allowed), torch.finfo(logits.dtype).min)
    return logits.softmax(dim=-1).to(dtype)


def softmax_kernel(
    query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor | None, scaling: float | None = None
) -> torch.Tensor:
    """``A_ij = softmax_j(q_i^T k_j / sqrt(D))`` over the allowed keys."""
    return masked_softmax(scores(query, key, scaling), allowed, query.dtype)


def window_band(num_queries: int, num_keys: int, window: int, device: torch.device) -> torch.Tensor:
    """``(N_q, N_k)``: ``|i - j| <= window``, the queries being the last ``N_q`` positions (decoding with a cache)."""
    positions_q = torch.arange(num_keys - num_queries, num_keys, device=device)
    positions_k = torch.arange(num_keys, device=device)
    return (positions_q[:, None] - positions_k[None, :]).abs() <= window


def keys_else_window(real: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Each query's allowed keys in its window (``real``, a subset of ``window``), or its whole window where it has
    none: ``where(real.any(-1), real, window)`` in boolean arithmetic, which ONNX Runtime runs (it has no ``Where``
    on booleans)."""
    return real | (window & ~real.any(dim=-1, keepdim=True))


def local_window_kernel(
    query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor | None, window: int, scaling: float | None = None
) -> torch.Tensor:
    """Softmax over the allowed keys ``j`` with ``|i - j| <= window`` (sparse attention); a query with no allowed
    key in its window attends to its whole window."""
    band = window_band(query.shape[-2], key.shape[-2], window, query.device)
    if allowed is not None:
        band = keys_else_window(band & allowed, band)
    return masked_softmax(scores(query, key, scaling), band, query.dtype)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``Phi(x) = elu(x) + 1``: positive features, so that ``Phi(q)^T Phi(k)`` is a valid similarity."""
    if torch.compiler.is_compiling():
        # Written out for the compiler, which fuses it: aten's elu_backward lays out its result unlike its
        # fake-tensor meta when the gradient and the input are strided differently, so AOTAutograd's compiled
        # backward viewed a gradient of the wrong layout. Eagerly, elu's own kernels are 1.7x faster than this.
        # The clamp keeps the unused branch finite for the gradient.
        return torch.where(x > 0, x + 1.0, torch.exp(x.clamp_max(0.0)))
    return F.elu(x) + 1.0


def linear_kernel(query: torch.Tensor, key: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """``A_ij = Phi(q_i)^T Phi(k_j) / sum_l Phi(q_i)^T Phi(k_l)`` over the allowed keys, no ``1/sqrt(D)`` scale."""
    similarity = torch.matmul(elu_feature_map(query), elu_feature_map(key).transpose(-1, -2))
    if allowed is not None:
        similarity = similarity * with_some_key(allowed).to(similarity.dtype)
    return similarity / similarity.sum(dim=-1, keepdim=True).clamp_min(LINEAR_KERNEL_EPS)


# ----------------------------------------------------------------------------------------------------------------
# Attention-BN: the primal batch norm, a transform of queries and keys
# ----------------------------------------------------------------------------------------------------------------


def key_statistics(key: torch.Tensor, allowed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(var, mean)`` of the keys each query may see, per example, head and feature, in >= float32.

    Args:
        key: ``(B, H, N_k, D)``.
        allowed: None (every key), or boolean broadcastable to ``(B, H, N_q, N_k)``.

    Returns:
        ``(B, H, 1, D)`` statistics where every query sees the same keys (no mask, or a key mask), else
        ``(B, H, N_q, D)``.
    """
    keys = key.to(torch.promote_types(key.dtype, torch.float32))
    if allowed is None:
        return torch.var_mean(keys, dim=-2, unbiased=False, keepdim=True)
    if allowed.shape[-2] == 1:
        weights = allowed.transpose(-1, -2).to(keys.dtype)  # (B, 1|H, N_k, 1)
        count = weights.sum(dim=-2, keepdim=True).clamp_min(1.0)
        mean = (keys * weights).sum(dim=-2, keepdim=True) / count
        var = ((keys - mean).square() * weights).sum(dim=-2, keepdim=True) / count
        return var, mean
    weights = allowed.to(keys.dtype)
    count = weights.sum(dim=-1, keepdim=True).clamp_min(1.0)
    # Per query: the second moment about the mean of all keys (one matmul instead of a (B, H, N_q, N_k, D) tensor),
    # shifted back; centring first keeps the subtraction well conditioned.
    centre = keys.mean(dim=-2, keepdim=True)
    centred = keys - centre
    mean = torch.matmul(weights, centred) / count
    var = (torch.matmul(weights, centred.square()) / count - mean.square()).clamp_min(0.0)
    return var, mean + centre


def batch_normalize_queries_keys(
    query: torch.Tensor,
    key: torch.Tensor,
    allowed: torch.Tensor | None = None,
    eps: float = 1e-5,
    mean_weight: float = 1.0,
    use_std: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-BN's primal batch norm as the paper writes it: ``(x - beta * mu) * s`` for queries and keys alike,
    with the keys' mean ``mu`` and ``s = 1 / sqrt(var + eps)`` per example, head and feature over the allowed keys.

    Every query must see the same keys (no mask or a key mask): each key is normalised once.

    Args:
        query: ``(B, H, N_q, D)``; key: ``(B, H, N_k, D)``; allowed: None or broadcastable to ``(B, 1, 1, N_k)``.
    """
    var, mean = key_statistics(key, allowed)
    shift = (mean_weight * mean).to(key.dtype)
    query, key = query - shift, key - shift
    if use_std:
        scale = torch.rsqrt(var + eps).to(key.dtype)
        query, key = query * scale, key * scale
    return query, key


# ----------------------------------------------------------------------------------------------------------------
# Attention-SH: keys and values pooled per head
# ----------------------------------------------------------------------------------------------------------------


def check_layout(length: int, layout: TokenLayout) -> None:
    if layout.grid is not None and layout.grid[0] * layout.grid[1] != length - layout.num_prefix_tokens:
        height, width = layout.grid
        raise ValueError(
            f"A {height}x{width} grid does not hold the {length - layout.num_prefix_tokens} non-prefix tokens."
        )


def slot_count(length: int, scale: int, layout: TokenLayout) -> int:
    """The number of pooled slots of ``length`` tokens (prefix tokens included), in integer arithmetic only, so that
    it holds for a symbolic length too (torch.export with a dynamic sequence axis)."""
    # ceil(n / s) as (n + s - 1) // s, not -(-n // s): ONNX's integer Div truncates towards zero, so an exported
    # floor division of a negative length is one slot short at odd lengths
    prefix = layout.num_prefix_tokens
    if layout.grid is None:
        return prefix + (length - prefix + scale - 1) // scale
    height, width = layout.grid
    return prefix + (height + scale - 1) // scale * ((width + scale - 1) // scale)


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
    num_slots = slot_count(length, scale, layout)
    real = torch.ones(1, length, device=key.device) if key_mask is None else key_mask.to(torch.float32)
    # (N, M); a comparison, not one_hot, whose class count torch.export cannot keep symbolic
    membership = (slots[:, None] == torch.arange(num_slots, device=key.device)).to(real.dtype)
    counts = real @ membership  # (B|1, M): real members per slot

    def pool(x: torch.Tensor) -> torch.Tensor:
        members = real[:, None, :, None].to(x.dtype)
        if mode == "mean":
            # one bmm over (B * H): matmul's own reshapes of the slot axis are what torch.export cannot follow
            flat = (x * members).flatten(0, 1)  # (B * H, N, D)
            per_slot = membership.to(x.dtype).t().expand(flat.shape[0], -1, -1)  # (B * H, M, N)
            sums = torch.bmm(per_slot, flat).unflatten(0, x.shape[:2])  # (B, H, M, D)
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


__all__ = [
    "TokenLayout",
    "batch_normalize_queries_keys",
    "elu_feature_map",
    "key_statistics",
    "keys_else_window",
    "linear_kernel",
    "local_window_kernel",
    "masked_softmax",
    "pool_keys_values",
    "scores",
    "softmax_kernel",
    "spread_over_members",
    "window_band",
    "with_some_key",
]
