"""The primal-dual attention family of Nguyen et al., "A Primal-Dual Framework for Transformers and Neural
Networks" (ICLR 2023, arXiv:2406.13781).

Self-attention is the dual form (support-vector expansion) of a support vector regression fitted on the keys
``k_j`` with targets ``v_j`` and evaluated at the queries ``q_i``. An attention is therefore three
independent choices, which compose:

* the **kernel** ``Phi(x)^T Phi(y)``: ``softmax`` (``exp(x^T y / sqrt(D))``, normalised over the keys) or
  ``linear`` (``Phi = elu + 1``, Katharopoulos et al. 2020, O(N));
* **Attention-BN**: a batch-normalisation layer in the primal. Its "batch" is the SVR's training set, the keys of
  this sequence and head, so queries and keys are shifted by ``beta * mean_j k_j`` and divided by the keys'
  standard deviation (per example, head and feature, over real keys only) before the kernel;
* **Attention-SH**: head ``h`` fits its SVR on keys and values average-pooled along the sequence by an integer
  factor ``s_h`` (on the 2-D patch grid for images, never pooling prefix tokens such as a class token),
  so it costs O(N * N / s_h). Queries stay at full length.

``sparse`` is the SVR fitted on a subset of the keys: a local window of ``attention_window`` keys each side.

Everything that can go through :func:`torch.nn.functional.scaled_dot_product_attention` does (softmax kernel,
with BN only q and k change, with SH one call per distinct scale, the local window as blocks); the explicit
path that materialises the attention probabilities runs only when they are asked for.

Shapes: ``B`` batch, ``H`` heads, ``N`` tokens, ``D`` head dimension. A key mask is a boolean ``(B, N)`` tensor,
``True`` for real keys.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class AttentionSpec:
    """The composable parts an ``attention_type`` name stands for."""

    kernel: Literal["softmax", "linear"]
    batch_norm: bool = False
    scaled_heads: bool = False
    local_window: bool = False


ATTENTION_TYPES: dict[str, AttentionSpec] = {
    "softmax": AttentionSpec("softmax"),
    "linear": AttentionSpec("linear"),
    "sparse": AttentionSpec("softmax", local_window=True),
    "bn": AttentionSpec("softmax", batch_norm=True),
    "sh": AttentionSpec("softmax", scaled_heads=True),
    "bn_sh": AttentionSpec("softmax", batch_norm=True, scaled_heads=True),
    "linear_bn": AttentionSpec("linear", batch_norm=True),
    "linear_sh": AttentionSpec("linear", scaled_heads=True),
    "linear_bn_sh": AttentionSpec("linear", batch_norm=True, scaled_heads=True),
}

SH_POOLING_MODES = ("mean", "max")


def parse_attention_type(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of an ``attention_type`` name; a clear error for an unknown one."""
    try:
        return ATTENTION_TYPES[name]
    except KeyError:
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


# ----------------------------------------------------------------------------------------------------------------
# Masks
# ----------------------------------------------------------------------------------------------------------------


def _with_some_key(mask: torch.Tensor) -> torch.Tensor:
    """Let a query that may see no key (a padded query outside every real key's window) see all of them.

    Its output is discarded by the model anyway; this keeps it finite instead of NaN, which would leak into
    gradients through the masked reductions downstream.
    """
    return mask | ~mask.any(dim=-1, keepdim=True)


def _key_mask_4d(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """``(B, N)`` -> ``(B, 1, 1, N)``, broadcastable against ``(B, H, N_q, N)`` scores."""
    return None if key_mask is None else key_mask[:, None, None, :]


# ----------------------------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------------------------


def softmax_kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax_j(q_i^T k_j / sqrt(D)) v_j``.

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``.
        mask: boolean, broadcastable to ``(B, H, N_q, N_k)``, ``True`` where a query may attend to a key.
        need_weights: take the explicit path and also return the ``(B, H, N_q, N_k)`` probabilities.
    """
    if mask is not None:
        mask = _with_some_key(mask)
    if not need_weights:
        if dropout_p > 0 and _fused_dropout_available(query, key, value):
            shape = query.shape[:-1] + key.shape[-2:-1]
            dropout_mask, dropout_p = attention_dropout_additive_mask(shape, dropout_p, query.dtype)
            return _fused_attention_with_dropout(query, key, value, mask, dropout_mask, dropout_p), None
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p), None

    scores = torch.matmul(query, key.transpose(-1, -2)) * query.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(query.dtype)
    output = torch.matmul(F.dropout(probs, p=dropout_p), value)
    return output, probs


# PyTorch's CPU SDPA has no fused kernel with dropout: with dropout_p > 0 it runs its math kernel, which
# materialises the attention matrix several times over and draws one Bernoulli variable per entry (measured at
# N = 1152, 8 heads, head dim 8: 10x slower forward + backward than without dropout). Dropout is instead run
# through the fused kernel with the dropped entries masked out, and renormalised with the log-sum-exps it returns.
_flash_attention_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_flash_attention_cpu_backward = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


def _fused_dropout_available(*tensors: torch.Tensor) -> bool:
    # Under torch.compile, SDPA's own dropout is left to inductor, which fuses it (and cannot trace the NumPy
    # generator the keep mask is drawn from).
    return _flash_attention_cpu is not None and not torch.compiler.is_compiling() and all(
        t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.bfloat16) for t in tensors
    )


# Lanes drawn per chunk: the chunk's words, flags and mask entries stay in cache, and no array as large as the mask
# is allocated besides the mask itself (a fresh allocation of that size costs as much as filling it, in page faults).
_DROPOUT_MASK_CHUNK = 1 << 20
_SAME_WIDTH_INTEGER = {torch.float32: torch.int32, torch.float64: torch.int64, torch.bfloat16: torch.int16}


def _random_lanes(numel: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``numel`` 16-bit lanes uniform on [-32768, 32768), in chunks: four per 64-bit word of NumPy's PCG64, seeded
    by one draw of PyTorch's global generator."""
    seed = int(torch.empty((), dtype=torch.int64).random_())
    bit_generator = np.random.default_rng(seed).bit_generator
    for start in range(0, numel, _DROPOUT_MASK_CHUNK):
        count = min(_DROPOUT_MASK_CHUNK, numel - start)
        yield slice(start, start + count), bit_generator.random_raw(-(-count // 4)).view(np.int16)[:count]


def _drop_threshold(p: float) -> tuple[int, float]:
    """The lane value under which an entry is dropped, and the drop probability that gives (p to 2**-16)."""
    dropped = round(p * 65536)
    return dropped - 32768, dropped / 65536


def attention_dropout_keep_mask(shape: Sequence[int], p: float) -> tuple[torch.Tensor, float]:
    """A boolean ``shape`` mask, ``True`` with probability ``1 - p``, and the exact drop probability it has.

    The bits come from NumPy's PCG64, seeded by one draw of PyTorch's global generator, so ``torch.manual_seed``
    and the Trainer's saved RNG state make the masks reproducible. Each 64-bit word gives four 16-bit lanes, so
    the drop probability is ``p`` rounded to a multiple of 2**-16 (0.1 -> 0.100006). PyTorch's own CPU generators
    draw one value at a time through the Mersenne twister: ``torch.bernoulli`` or ``torch.rand`` took 4-6 s for
    the 170M entries of one attention layer at N = 1152 (batch 16, 8 heads), this takes 0.6 s.
    """
    keep = torch.empty(tuple(shape), dtype=torch.bool)
    flat = keep.view(-1).numpy()
    threshold, p = _drop_threshold(p)
    for where, lanes in _random_lanes(flat.size):
        np.greater_equal(lanes, threshold, out=flat[where])
    return keep, p


def attention_dropout_additive_mask(shape: Sequence[int], p: float, dtype: torch.dtype) -> tuple[torch.Tensor, float]:
    """The same draw as :func:`attention_dropout_keep_mask` (the same mask after the same seed), as the additive
    mask the fused kernel takes: 0 where kept, ``-inf`` where dropped, in ``dtype`` (float32, float64 or bfloat16).

    Written straight from the random lanes as the bit patterns of 0 and ``-inf``: going through the boolean mask
    and ``torch.where`` took a third of a training step at N = 1152.
    """
    mask = torch.empty(tuple(shape), dtype=dtype)
    integer = _SAME_WIDTH_INTEGER[dtype]
    bits = mask.view(-1).view(integer).numpy()
    minus_infinity = bits.dtype.type(torch.tensor(float("-inf"), dtype=dtype).view(integer).item())
    threshold, p = _drop_threshold(p)
    for where, lanes in _random_lanes(bits.size):
        np.multiply(np.less(lanes, threshold), minus_infinity, out=bits[where])
    return mask, p


def _additive_mask(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    if mask is None:
        return None
    return torch.where(mask, torch.zeros((), dtype=dtype), torch.full((), float("-inf"), dtype=dtype))


class _SoftmaxAttentionWithDropout(torch.autograd.Function):
    """``((softmax(S) * keep) / (1 - p)) V`` with ``S = QK^T / sqrt(D)`` through the fused CPU kernel.

    With ``P' = softmax`` over the kept entries only (the fused kernel with the dropped entries masked) and
    ``rho_i = sum_j keep_ij P_ij = exp(lse'_i - lse_i)``, the output is ``O_i = rho_i / (1 - p) * O'_i``. Backward,
    with ``G = dL/dO`` and ``Delta_i = G_i . O_i``:

        dL/dS_ij = keep_ij P_ij (G_i . v_j) / (1 - p) - Delta_i P_ij

    The first term is the fused backward of the masked call with ``G_i rho_i / (1 - p)`` as output gradient and a
    zero output (so its ``rowsum(dO * O)`` is 0); the second is the fused backward of the unmasked call with
    values 0, output gradient ``e_1`` and an output whose first column is ``Delta`` (so its ``dP`` is 0 and its
    ``rowsum(dO * O)`` is ``Delta``). Both give dQ and dK; dV comes from the first.
    """

    @staticmethod
    def forward(ctx, query, key, value, kept_mask, key_mask, p):
        scale = query.shape[-1] ** -0.5
        kept_output, kept_lse = _flash_attention_cpu(query, key, value, attn_mask=kept_mask, scale=scale)
        _, lse = _flash_attention_cpu(query, key, value, attn_mask=key_mask, scale=scale)
        # A query whose every key was dropped has kept_lse = -inf, rho = 0 and output 0, as the formula says.
        rho = torch.exp(kept_lse - lse).div_(1 - p).unsqueeze(-1).to(query.dtype)
        output = kept_output * rho
        ctx.save_for_backward(query, key, value, kept_mask, key_mask, output, kept_lse, lse, rho)
        ctx.scale = scale
        return output

    @staticmethod
    def backward(ctx, grad_output):
        query, key, value, kept_mask, key_mask, output, kept_lse, lse, rho = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        zeros = torch.zeros_like(output)
        grad_query, grad_key, grad_value = _flash_attention_cpu_backward(
            grad_output * rho, query, key, value, zeros, kept_lse, 0.0, False, attn_mask=kept_mask, scale=ctx.scale
        )
        first_column = torch.zeros_like(output)
        first_column[..., 0] = 1
        delta = torch.zeros_like(output)
        delta[..., 0] = (grad_output * output).sum(-1)
        unmasked_query, unmasked_key, _ = _flash_attention_cpu_backward(
            first_column, query, key, torch.zeros_like(value), delta, lse, 0.0, False, attn_mask=key_mask,
            scale=ctx.scale,
        )
        return grad_query + unmasked_query, grad_key + unmasked_key, grad_value, None, None, None


def _fused_attention_with_dropout(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_mask: torch.Tensor,
    p: float,
) -> torch.Tensor:
    """``dropout_mask``: additive ``(B, H, N_q, N_k)``, ``-inf`` for the dropped probabilities; the padded keys
    are masked into it in place, so it must be the caller's own."""
    if mask is not None:
        dropout_mask.masked_fill_(~mask, float("-inf"))
    return _SoftmaxAttentionWithDropout.apply(
        query.contiguous(), key.contiguous(), value.contiguous(), dropout_mask, _additive_mask(mask, query.dtype),
        float(p),
    )


def softmax_attention_with_dropout(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    keep: torch.Tensor,
    p: float,
) -> torch.Tensor:
    """``((softmax_j(q_i^T k_j / sqrt(D)) * keep_ij) / (1 - p)) v_j``: attention dropout with a given mask, through
    PyTorch's fused CPU kernel.

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``.
        mask: boolean, broadcastable to ``(B, H, N_q, N_k)``, ``True`` where a query may attend to a key; every
            query must be allowed some key.
        keep: boolean ``(B, H, N_q, N_k)``, ``False`` for the dropped probabilities
            (:func:`attention_dropout_keep_mask`); p: the probability they were dropped with.
    """
    return _fused_attention_with_dropout(query, key, value, mask, _additive_mask(keep, query.dtype), p)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``Phi(x) = elu(x) + 1``: positive features, so that ``Phi(q)^T Phi(k)`` is a valid similarity."""
    return F.elu(x) + 1.0


def linear_kernel_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None = None,
    need_weights: bool = False,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``Phi(q_i)^T (sum_j Phi(k_j) v_j^T) / (Phi(q_i)^T sum_j Phi(k_j))`` in O(N), with no 1/sqrt(D) scale.

    The linear kernel never forms the attention matrix, so it has no attention dropout.

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``.
        key_mask: boolean ``(B, N_k)``, ``True`` for real keys.
        need_weights: also return the ``(B, H, N_q, N_k)`` normalised kernel matrix (O(N^2)).
    """
    phi_query = elu_feature_map(query)
    phi_key = elu_feature_map(key)
    if key_mask is not None:
        phi_key = phi_key * key_mask[:, None, :, None].to(phi_key.dtype)

    if need_weights:
        weights = torch.matmul(phi_query, phi_key.transpose(-1, -2))
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(eps)
        return torch.matmul(weights, value), weights

    key_value = torch.matmul(phi_key.transpose(-1, -2), value)  # (B, H, D, D_v)
    normaliser = torch.matmul(phi_query, phi_key.sum(dim=-2).unsqueeze(-1))  # (B, H, N_q, 1)
    return torch.matmul(phi_query, key_value) / normaliser.clamp_min(eps), None


def local_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    window: int,
    key_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    need_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sparse attention: query ``i`` attends to keys ``j`` with ``|i - j| <= window`` (softmax kernel).

    The fast path splits the queries into blocks of ``block = max(window, 32)`` and gives each block the
    ``block + 2 * window`` keys around it, so time and memory are O(N * window), in one fused call. The explicit
    path (``need_weights``) builds the dense ``(N, N)`` band and returns its probabilities.

    Args:
        query, key, value: ``(B, H, N, D)``.
        key_mask: boolean ``(B, N)``, ``True`` for real keys.
    """
    batch, heads, length, head_dim = query.shape
    positions = torch.arange(length, device=query.device)
    if need_weights:
        band = (positions[:, None] - positions[None, :]).abs() <= window
        mask = band if key_mask is None else band & key_mask[:, None, None, :]
        return softmax_kernel_attention(query, key, value, mask, dropout_p, need_weights=True)

    block = min(max(window, 32), length)
    num_blocks = math.ceil(length / block)
    padded_length = num_blocks * block
    span = block + 2 * window

    # Keys are padded by `window` on the left and up to the last block's reach on the right, so that block b's
    # keys are the contiguous slice [b * block, b * block + span) of the padded sequence.
    def key_windows(x: torch.Tensor) -> torch.Tensor:  # (B, H, N, D) -> (B * nb, H, span, D)
        x = F.pad(x, (0, 0, window, padded_length - length + window))
        x = x.unfold(2, span, block)  # (B, H, nb, D, span)
        return x.permute(0, 2, 1, 4, 3).reshape(batch * num_blocks, heads, span, head_dim)

    query_blocks = F.pad(query, (0, 0, 0, padded_length - length))
    query_blocks = query_blocks.view(batch, heads, num_blocks, block, head_dim).transpose(1, 2)
    query_blocks = query_blocks.reshape(batch * num_blocks, heads, block, head_dim)

    real_keys = torch.ones(batch, length, dtype=torch.bool, device=query.device) if key_mask is None else key_mask
    real_keys = F.pad(real_keys, (window, padded_length - length + window)).unfold(1, span, block)  # (B, nb, span)
    offsets = torch.arange(span, device=query.device)[None, :] - torch.arange(block, device=query.device)[:, None]
    band = (offsets >= 0) & (offsets <= 2 * window)  # (block, span): |i - j| <= window in padded coordinates
    mask = (band & real_keys[:, :, None, :]).reshape(batch * num_blocks, 1, block, span)

    output, _ = softmax_kernel_attention(query_blocks, key_windows(key), key_windows(value), mask, dropout_p)
    output = output.view(batch, num_blocks, heads, block, head_dim).transpose(1, 2)
    return output.reshape(batch, heads, padded_length, head_dim)[:, :, :length], None


# ----------------------------------------------------------------------------------------------------------------
# Attention-BN and Attention-SH
# ----------------------------------------------------------------------------------------------------------------


def _key_statistics(
    key: torch.Tensor, key_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
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
    var, mean = _key_statistics(key, key_mask)
    shift = (mean_weight * mean).to(key.dtype)
    query, key = query - shift, key - shift
    if use_std:
        scale = torch.rsqrt(var + eps).to(key.dtype)
        query, key = query * scale, key * scale
    return query, key


class _DotProductBatchNorm(torch.autograd.Function):
    """``((q - beta mu) * s^2, k - beta mu)`` with every key real, its backward pass written out.

    Autograd's graph of the same formula makes about twice as many passes over ``q`` and ``k`` (a separate
    reduction for each broadcast operand, ``var_mean``'s own backward); this one makes one pass per term below.
    With ``n`` keys, ``g_q' = dL/dq'``, ``g_k' = dL/dk'``, ``c = k - mu``:

        dL/dq = g_q' s^2
        dL/dk = g_k' - beta (sum_i dL/dq_i + sum_j g_k'_j) / n - (2 / n) s^4 (sum_i g_q'_i (q_i - beta mu)) c
    """

    @staticmethod
    def forward(ctx, query, key, eps, mean_weight, use_std):
        mean = key.mean(dim=-2, keepdim=True)
        centred = key - mean
        shift = mean * mean_weight
        key_out = centred if mean_weight == 1 else key - shift
        query_out = query - shift
        inv_var = None
        if use_std:
            inv_var = torch.reciprocal(centred.square().mean(dim=-2, keepdim=True).add_(eps))
            query_out.mul_(inv_var)
        ctx.mean_weight, ctx.use_std = mean_weight, use_std
        ctx.save_for_backward(query_out, centred, inv_var)
        return query_out, key_out

    @staticmethod
    def backward(ctx, grad_query_out, grad_key_out):
        query_out, centred, inv_var = ctx.saved_tensors
        length = centred.shape[-2]
        if grad_query_out is None:
            grad_query_out = torch.zeros_like(query_out)
        if grad_key_out is None:
            grad_key_out = torch.zeros_like(centred)
        grad_query = grad_query_out * inv_var if ctx.use_std else grad_query_out
        grad_mean = (grad_query.sum(dim=-2, keepdim=True) + grad_key_out.sum(dim=-2, keepdim=True)).mul_(
            -ctx.mean_weight / length
        )
        grad_key = grad_key_out + grad_mean
        if ctx.use_std:
            # sum_i g_q'_i (q_i - beta mu) = sum_i g_q'_i q'_i / s^2, so d/dvar = -s^4 * that = -s^2 sum_i g_q'_i q'_i
            grad_var = (grad_query_out * query_out).sum(dim=-2, keepdim=True).mul_(inv_var).mul_(-2.0 / length)
            grad_key = grad_key.addcmul_(centred, grad_var)
        return grad_query, grad_key, None, None, None


def _batch_normalize_for_dot_product(
    query: torch.Tensor,
    key: torch.Tensor,
    key_mask: torch.Tensor | None,
    eps: float,
    mean_weight: float,
    use_std: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-BN where only the dot products ``q_i^T k_j`` matter (the softmax kernel): the same scores as
    :func:`batch_normalize_queries_keys` with fewer passes over ``q`` and ``k``.

    ``((q - beta mu) * s)^T ((k - beta mu) * s) = ((q - beta mu) * s^2)^T (k - beta mu)``, so the whole scale goes on
    the queries. The keys stay centred, so the scores are as well conditioned as with the scale on both sides.
    """
    if key_mask is None and query.dtype in (torch.float32, torch.float64) and key.dtype == query.dtype:
        return _DotProductBatchNorm.apply(query, key, eps, float(mean_weight), use_std)
    var, mean = _key_statistics(key, key_mask)
    if mean_weight != 0:
        shift = (mean_weight * mean).to(key.dtype)
        query, key = query - shift, key - shift
    if use_std:
        query = query * torch.reciprocal(var + eps).to(key.dtype)
    return query, key


def _slot_of_token(length: int, scale: int, layout: TokenLayout, device: torch.device) -> torch.Tensor:
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


def _pool_every_key_real(
    x: torch.Tensor, scale: int, layout: TokenLayout, mode: Literal["mean", "max"]
) -> torch.Tensor | None:
    """Pooling of ``(B, H, N, D)`` keys or values when every key is real, without gathering the windows: a strided
    reduction over the whole windows of a sequence, ``avg_pool2d`` in ceil mode (whose partial windows average the
    members they have) on a grid. None where the general path is needed (max-pooling a partial grid).
    """
    prefix = layout.num_prefix_tokens
    # split, not two slices: its backward gathers the two gradients with one cat instead of two zero-filled copies
    # (and no split at all where one part would be empty: its backward would copy the whole gradient)
    head, body = x.split([prefix, x.shape[-2] - prefix], dim=-2) if prefix else (None, x)
    if mode == "mean":
        # sum, then divide the (small) result in place: the same numbers as mean, and its backward materialises the
        # window-broadcast gradient once instead of twice (mean's backward divides the expanded gradient first)
        def reduce(windows: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
            return windows.sum(dim=dim, keepdim=keepdim).div_(windows.shape[dim])
    else:
        reduce = torch.amax
    if layout.grid is None:
        length = body.shape[-2]
        whole = length // scale * scale
        windows, tail = body.split([whole, length - whole], dim=-2) if 0 < whole < length else (body, body)
        parts = [head] if prefix else []
        if whole:
            parts.append(reduce(windows.unflatten(-2, (whole // scale, scale)), dim=-2))
        if whole < length:
            parts.append(reduce(tail, dim=-2, keepdim=True))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-2)

    height, width = layout.grid
    if mode == "mean":
        # (B, H, h*w, D) -> (B, H*D, h, w): a channels-last view of the (B, N, H, D) layout the projections produce,
        # for avg_pool2d's channels-last kernel (about twice as fast as a strided mean over the windows' two axes).
        batch, heads, _, dim = body.shape
        grid = body.unflatten(-2, (height, width)).permute(0, 1, 4, 2, 3).reshape(batch, heads * dim, height, width)
        pooled = F.avg_pool2d(grid, scale, scale, ceil_mode=True)
        pooled = pooled.reshape(batch, heads, dim, -1).transpose(-1, -2)
    elif height % scale == 0 and width % scale == 0:
        windows = body.unflatten(-2, (height // scale, scale, width // scale, scale))  # (B, H, sh, s, sw, s, D)
        pooled = windows.amax(dim=(-4, -2)).flatten(-3, -2)
    else:
        return None
    return torch.cat([head, pooled], dim=-2) if prefix else pooled


def _pool(
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    scale: int,
    layout: TokenLayout,
    mode: Literal["mean", "max"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`pool_keys_values` without ``slot_of_token``."""
    prefix = layout.num_prefix_tokens
    length = key.shape[-2]
    device = key.device
    body_length = length - prefix
    if layout.grid is not None and layout.grid[0] * layout.grid[1] != body_length:
        height, width = layout.grid
        raise ValueError(f"A {height}x{width} grid does not hold the {body_length} non-prefix tokens.")

    if key_mask is None:
        pooled_key = _pool_every_key_real(key, scale, layout, mode)
        if pooled_key is not None:
            return pooled_key, _pool_every_key_real(value, scale, layout, mode), None

    # The number of slots, and the zero-padding that makes every window full. (Every name the closures below
    # read is bound on both branches: torch.compile cannot read an unbound closure cell and breaks the graph.)
    height = width = slots_h = slots_w = 0
    if layout.grid is None:
        num_slots = math.ceil(body_length / scale)
        pad = num_slots * scale - body_length
    else:
        height, width = layout.grid
        slots_h, slots_w = math.ceil(height / scale), math.ceil(width / scale)
        num_slots = slots_h * slots_w
        pad = (slots_h * scale - height, slots_w * scale - width)

    def windows(x: torch.Tensor) -> torch.Tensor:
        """(..., N_body, D) -> (..., num_slots, scale * scale_or_1, D): the members of each slot."""
        if layout.grid is None:
            x = F.pad(x, (0, 0, 0, pad))
            return x.unflatten(-2, (num_slots, scale))
        x = x.unflatten(-2, (height, width))
        x = F.pad(x, (0, 0, 0, pad[1], 0, pad[0]))
        x = x.unflatten(-3, (slots_h, scale)).unflatten(-2, (slots_w, scale))  # (..., sh, s, sw, s, D)
        return x.transpose(-4, -3).flatten(-5, -4).flatten(-3, -2)

    body_mask = None if key_mask is None else key_mask[:, prefix:]
    exact_windows = (pad == 0 or pad == (0, 0)) and body_mask is None
    if exact_windows:
        member_mask, counts = None, None
    else:
        real = torch.ones(1, body_length, device=device) if body_mask is None else body_mask.to(key.dtype)
        member_mask = windows(real[:, None, :, None])  # (B|1, 1, M, members, 1)
        counts = member_mask.sum(dim=-2)  # (B|1, 1, M, 1)

    def pool(x: torch.Tensor) -> torch.Tensor:
        members = windows(x[..., prefix:, :])
        if mode == "max":
            if member_mask is not None:
                members = members.masked_fill(member_mask == 0, torch.finfo(x.dtype).min)
            pooled = members.amax(dim=-2)
            if counts is not None:
                pooled = pooled.masked_fill(counts == 0, 0.0)
        elif member_mask is None:
            pooled = members.mean(dim=-2)
        else:
            pooled = (members * member_mask).sum(dim=-2) / counts.clamp_min(1.0)
        return torch.cat([x[..., :prefix, :], pooled], dim=-2)

    pooled_mask = None
    if counts is not None and body_mask is not None:
        slot_is_real = counts[:, 0, :, 0] > 0  # (B, M)
        pooled_mask = torch.cat([key_mask[:, :prefix], slot_is_real], dim=-1)
    return pool(key), pool(value), pooled_mask


def pool_keys_values(
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    scale: int,
    layout: TokenLayout,
    mode: Literal["mean", "max"] = "mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Attention-SH's downsampling of keys and values by ``scale`` along the sequence (or the 2-D grid).

    A pooled key is the mean (or max) of its real members only; a pooled slot with no real member is masked.
    Prefix tokens are kept as they are, in front. Partial windows at the end of the sequence or grid are pooled
    over the members they have.

    Args:
        key, value: ``(B, H, N, D)``; key_mask: boolean ``(B, N)`` or None (all real).

    Returns:
        ``(key, value, key_mask, slot_of_token)``: pooled ``(B, H, M, D)`` keys and values, their ``(B, M)`` mask
        (None when every slot is real), and the ``(N,)`` index of the slot each original token went into.
    """
    length = key.shape[-2]
    key, value, pooled_mask = _pool(key, value, key_mask, scale, layout, mode)
    return key, value, pooled_mask, _slot_of_token(length, scale, layout, key.device)


def _unpool_weights(
    weights: torch.Tensor, slot_of_token: torch.Tensor, key_mask: torch.Tensor | None
) -> torch.Tensor:
    """Spread the weight of each pooled slot evenly over its real members: ``(B, H, N, M)`` -> ``(B, H, N, N)``.

    For mean pooling this is exact: ``sum_slot a_slot * mean(v_members) = sum_j (a_slot(j) / count) v_j``.
    """
    real = (
        torch.ones(1, slot_of_token.numel(), device=weights.device, dtype=weights.dtype)
        if key_mask is None
        else key_mask.to(weights.dtype)
    )
    counts = torch.zeros(real.shape[0], weights.shape[-1], device=weights.device, dtype=weights.dtype)
    counts.index_add_(1, slot_of_token, real)
    per_token = real / counts[:, slot_of_token].clamp_min(1.0)  # (B|1, N)
    return weights[..., slot_of_token] * per_token[:, None, None, :]


# ----------------------------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------------------------


def primal_dual_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    options: AttentionOptions,
    key_mask: torch.Tensor | None = None,
    layout: TokenLayout = TokenLayout(),
    need_weights: bool = False,
    training: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention of any type of the family: one function, the fast path chosen inside.

    Args:
        query, key, value: ``(B, H, N, D)``.
        options: the attention type and its settings (:class:`AttentionOptions`).
        key_mask: boolean ``(B, N)``, ``True`` for real keys; padded keys take no weight, are left out of BN
            statistics and of SH pooling.
        layout: prefix tokens and 2-D grid, for SH pooling.
        need_weights: also return the ``(B, H, N, N)`` attention probabilities (explicit path). For SH heads
            they are given over the original keys, each pooled slot's weight spread over its members.
        training: apply attention dropout.

    Returns:
        ``(output, weights)``: ``(B, H, N, D)`` and the probabilities or None.
    """
    spec = options.spec
    dropout_p = options.dropout if training else 0.0
    if spec.local_window:
        return local_window_attention(
            query, key, value, options.attention_window, key_mask, dropout_p, need_weights
        )

    def attend(q, k, v, scale):
        mask = key_mask
        if scale > 1:
            k, v, mask = _pool(k, v, key_mask, scale, layout, options.sh_pooling)
        if spec.kernel == "softmax":
            if spec.batch_norm:
                q, k = _batch_normalize_for_dot_product(
                    q, k, mask, options.bn_eps, options.bn_mean_weight, options.bn_use_std
                )
            out, w = softmax_kernel_attention(q, k, v, _key_mask_4d(mask), dropout_p, need_weights)
        else:
            if spec.batch_norm:
                q, k = batch_normalize_queries_keys(
                    q, k, mask, options.bn_eps, options.bn_mean_weight, options.bn_use_std
                )
            out, w = linear_kernel_attention(q, k, v, mask, need_weights)
        if w is not None and scale > 1:
            w = _unpool_weights(w, _slot_of_token(query.shape[-2], scale, layout, query.device), key_mask)
        return out, w

    num_heads = query.shape[1]
    groups = options.head_groups()
    if not spec.scaled_heads or (len(groups) == 1 and len(groups[0][1]) == num_heads):
        return attend(query, key, value, groups[0][0])

    in_head_order = sorted(groups, key=lambda group: group[1][0])
    if [head for _, heads in in_head_order for head in heads] == list(range(num_heads)):
        # Each scale's heads are a consecutive range (the default layout): split the heads on the (B, N, H, D)
        # view the projections produce, so that the backward pass gathers the gradients of q, k and v with one
        # cat each, in that layout, and the outputs are written side by side in it too (the caller's
        # transpose(1, 2).reshape(B, N, H * D) is then a view).
        sizes = [len(heads) for _, heads in in_head_order]

        def split(x: torch.Tensor) -> list[torch.Tensor]:
            return [part.transpose(1, 2) for part in x.transpose(1, 2).split(sizes, dim=2)]

        results = [
            attend(q, k, v, scale)
            for (scale, _), q, k, v in zip(in_head_order, split(query), split(key), split(value))
        ]
        output = torch.cat([out.transpose(1, 2) for out, _ in results], dim=2).transpose(1, 2)
        weight = torch.cat([w for _, w in results], dim=1) if need_weights else None
        return output, weight

    heads_in_order = [head for _, heads in groups for head in heads]
    outputs, weights = [], []
    for scale, heads in groups:
        # Heads sharing a scale are contiguous in the default layout: a slice is a view, not a copy.
        index = slice(heads[0], heads[-1] + 1) if heads == list(range(heads[0], heads[-1] + 1)) else heads
        out, w = attend(query[:, index], key[:, index], value[:, index], scale)
        outputs.append(out)
        weights.append(w)
    output = torch.cat(outputs, dim=1)
    weight = torch.cat(weights, dim=1) if need_weights else None
    order = torch.tensor(heads_in_order, device=query.device).argsort()
    output = output[:, order]
    weight = weight[:, order] if weight is not None else None
    return output, weight


class PrimalDualSelfAttention(nn.Module):
    """Multi-head self-attention of the primal-dual family, with transformers' ViT parameter names
    (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``), so that ViT checkpoints load unchanged: BN and SH add no
    parameters.
    """

    def __init__(self, config) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.options = AttentionOptions.from_config(config)
        inner = self.num_heads * self.head_dim
        qkv_bias = getattr(config, "qkv_bias", True)
        self.q_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.k_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.v_proj = nn.Linear(config.hidden_size, inner, bias=qkv_bias)
        self.o_proj = nn.Linear(inner, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        layout: TokenLayout = TokenLayout(),
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, N, hidden)`` -> ``(B, N, hidden)`` and, if asked, the ``(B, H, N, N)`` attention probabilities."""
        batch, length, _ = hidden_states.shape
        shape = (batch, length, self.num_heads, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)
        output, weights = primal_dual_attention(
            query, key, value, self.options, key_mask, layout, output_attentions, self.training
        )
        output = output.transpose(1, 2).reshape(batch, length, -1)
        return self.o_proj(output), weights


__all__ = [
    "ATTENTION_TYPES",
    "AttentionOptions",
    "AttentionSpec",
    "PrimalDualSelfAttention",
    "TokenLayout",
    "batch_normalize_queries_keys",
    "default_head_scales",
    "linear_kernel_attention",
    "local_window_attention",
    "parse_attention_type",
    "pool_keys_values",
    "primal_dual_attention",
    "softmax_kernel_attention",
]
