"""The fast implementations of the primal-dual family: what runs under ``attn_implementation="sdpa"`` (the
default), each checked against the formulas of :mod:`.attention_reference` by the tests.

The kernels never materialise the attention matrix where their maths allows it: the softmax kernel through
:func:`torch.nn.functional.scaled_dot_product_attention`, the linear kernel in its O(N) form, the local window as
blocks in O(N * window). Beside them, the engineering PyTorch lacks on CPU, each trick behind one switch of
:data:`FAST_PATHS` (:func:`fast_paths` flips them, for tests and benchmarks):

* ``cpu_dropout_kernel``: attention dropout inside the compiled CPU kernel of :mod:`.cpu_attention` (the mask
  drawn per query row from a counter-based generator, never materialised); where it cannot be built, or with
  this switch off, ``fused_cpu_dropout``'s path runs (with ``fused_cpu_dropout`` off, PyTorch's own dropout).
* ``cpu_activation_dropout``: the models' activation dropouts (:func:`dropout`) drawn from that kernel's generator
  instead of PyTorch's ``bernoulli_`` (off with ``cpu_dropout_kernel`` too);
* ``fused_cpu_dropout``: attention dropout through the fused CPU kernel (PyTorch's CPU flash kernel refuses
  dropout; its math kernel materialises the matrix several times over);
* ``bn_scale_on_queries``: Attention-BN for dot-product kernels with the whole scale on the queries
  (``((q - b mu) s)^T ((k - b mu) s) = ((q - b mu) s^2)^T (k - b mu)``), one transform fewer;
* ``fused_bn_backward``: that transform's backward written out, where every key is real;
* ``strided_pooling``: Attention-SH's pooling as strided reductions (``avg_pool2d`` on grids) where every key is
  real, instead of gathering windows;
* ``head_split_view``: SH's head groups split on the ``(B, N, H, D)`` view the projections produce;
* ``local_window_blocks``: sparse attention in blocks of queries, O(N * window), instead of one masked call.

Masks follow :mod:`.attention_reference`: ``allowed`` is boolean, broadcastable to ``(B, H, N_q, N_k)``, ``True``
where a query may attend to a key; ``(B, 1, 1, N_k)`` when every query sees the same keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

try:  # optional: a checkpoint's remote-code copy of the package may run without it
    from . import cpu_attention
except ImportError:
    cpu_attention = None

from .attention_reference import (
    LINEAR_KERNEL_EPS,
    TokenLayout,
    check_layout,
    elu_feature_map,
    key_statistics,
    keys_else_window,
    linear_kernel,
    window_band,
    with_some_key,
)


@dataclasses.dataclass
class FastPaths:
    """The fast paths' switches (see the module's doc); all on by default. ``fused_cpu_dropout`` starts off where
    the environment sets ``HF_PRIMALDUAL_FUSED_CPU_DROPOUT=0`` (a whole training run on PyTorch's own dropout),
    ``cpu_dropout_kernel`` where it sets ``HF_PRIMALDUAL_CPU_DROPOUT_KERNEL=0`` (never built then)."""

    cpu_dropout_kernel: bool = os.environ.get("HF_PRIMALDUAL_CPU_DROPOUT_KERNEL", "1").strip() != "0"
    cpu_activation_dropout: bool = True
    fused_cpu_dropout: bool = os.environ.get("HF_PRIMALDUAL_FUSED_CPU_DROPOUT", "1").strip() != "0"
    bn_scale_on_queries: bool = True
    fused_bn_backward: bool = True
    strided_pooling: bool = True
    head_split_view: bool = True
    local_window_blocks: bool = True


#: The switches in force. A plain object, not a context variable: torch.compile guards on its attributes instead of
#: breaking the graph to read them.
FAST_PATHS = FastPaths()


@contextlib.contextmanager
def fast_paths(**switches: bool) -> Iterator[FastPaths]:
    """Within the block, the named switches of :data:`FAST_PATHS` take the given values, e.g.
    ``with fast_paths(fused_cpu_dropout=False): ...`` (PyTorch's own dropout, for a comparison in one process)."""
    unknown = set(switches) - {f.name for f in dataclasses.fields(FastPaths)}
    if unknown:
        raise ValueError(f"Unknown fast-path switches {sorted(unknown)}: the switches are {list(FastPaths.__annotations__)}.")
    before = dataclasses.asdict(FAST_PATHS)
    for name, value in switches.items():
        setattr(FAST_PATHS, name, bool(value))
    try:
        yield FAST_PATHS
    finally:
        for name, value in before.items():
            setattr(FAST_PATHS, name, value)


def _same_keys_for_every_query(allowed: torch.Tensor | None) -> bool:
    return allowed is None or allowed.shape[-2] == 1


# ----------------------------------------------------------------------------------------------------------------
# Kernels: (query, key, value, allowed, ...) -> output
# ----------------------------------------------------------------------------------------------------------------


def softmax_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """``softmax_j(q_i^T k_j / sqrt(D)) v_j`` through the fused kernel (``scale`` in place of ``1 / sqrt(D)``).

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``.
        allowed: boolean, broadcastable to ``(B, H, N_q, N_k)``, ``True`` where a query may attend to a key.
    """
    if allowed is not None:
        allowed = with_some_key(allowed)
    if dropout_p > 0 and _cpu_dropout_kernel_available(query, key, value):
        return cpu_attention.softmax_attention_dropout(query, key, value, allowed, dropout_p, scale)
    if dropout_p > 0 and _fused_dropout_available(query, key, value):
        shape = query.shape[:-1] + key.shape[-2:-1]
        dropout_mask, dropout_p = attention_dropout_additive_mask(shape, dropout_p, query.dtype)
        return _fused_attention_with_dropout(query, key, value, allowed, dropout_mask, dropout_p, scale)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, dropout_p=dropout_p, scale=scale)


# PyTorch's CPU flash kernel refuses dropout, so scaled_dot_product_attention(dropout_p > 0) on CPU takes its math
# kernel, which materialises the attention matrix several times over and draws one Bernoulli variable per entry.
# Dropout is instead run through the fused kernel with the dropped entries masked out, and renormalised with the
# log-sum-exps it returns.
_flash_attention_cpu = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_flash_attention_cpu_backward = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


# The largest head dim at which the compiled kernel was measured faster than PyTorch's math kernel with dropout
# (its GEMM-blocked path; docs/PERFORMANCE.md); above it the path before the kernel runs.
_CPU_DROPOUT_KERNEL_MAX_HEAD_DIM = 256


def _cpu_dropout_kernel_available(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    return (
        FAST_PATHS.fused_cpu_dropout
        and max(query.shape[-1], value.shape[-1]) <= _CPU_DROPOUT_KERNEL_MAX_HEAD_DIM
        and _cpu_kernel_runs(query, key, value)
    )


def _cpu_kernel_runs(*tensors: torch.Tensor) -> bool:
    # Under torch.compile only a kernel already loaded is used (building it is no code to trace).
    return (
        cpu_attention is not None
        and FAST_PATHS.cpu_dropout_kernel
        and all(t.device.type == "cpu" and t.dtype in cpu_attention.DTYPES and t.dtype == tensors[0].dtype
                for t in tensors)
        and (cpu_attention.kernel_loaded() if torch.compiler.is_compiling() else cpu_attention.kernel_available())
    )


def dropout(input: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``F.dropout(input, p, training)``, drawn by the compiled CPU kernel's generator where it runs (training on
    CPU, ``cpu_dropout_kernel`` on; :func:`.cpu_attention.dropout`, about six times faster than PyTorch's CPU
    dropout; ``cpu_activation_dropout``), else PyTorch's own. Same law, another stream: a seeded run draws other
    masks on each path."""
    if training and p > 0 and FAST_PATHS.cpu_activation_dropout and _cpu_kernel_runs(input):
        return cpu_attention.dropout(input, p)
    return F.dropout(input, p, training)


# Below about this many scores per call (B * H * N_q * N_k) the fused path's two kernel calls each way and its mask
# cost more than PyTorch's math kernel saves (docs/PERFORMANCE.md).
_FUSED_DROPOUT_MIN_SCORES = 1 << 17


def _fused_dropout_available(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    # Under torch.compile, SDPA's own dropout is left to inductor, which fuses it (and cannot trace the NumPy
    # generator the keep mask is drawn from); checked first, so that compiling reads no switch.
    return (
        not torch.compiler.is_compiling()
        and _flash_attention_cpu is not None
        and FAST_PATHS.fused_cpu_dropout
        and query.shape[:-1].numel() * key.shape[-2] >= _FUSED_DROPOUT_MIN_SCORES
        and all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64, torch.bfloat16)
                for t in (query, key, value))
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
    draw one value at a time through the Mersenne twister, several times slower for the attention matrices of long
    series (docs/PERFORMANCE.md).
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
    def forward(ctx, query, key, value, kept_mask, key_mask, p, scale):
        scale = query.shape[-1] ** -0.5 if scale is None else scale
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
        return grad_query + unmasked_query, grad_key + unmasked_key, grad_value, None, None, None, None


def _fused_attention_with_dropout(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None,
    dropout_mask: torch.Tensor,
    p: float,
    scale: float | None = None,
) -> torch.Tensor:
    """``dropout_mask``: additive ``(B, H, N_q, N_k)``, ``-inf`` for the dropped probabilities; the padded keys
    are masked into it in place, so it must be the caller's own."""
    if mask is not None:
        dropout_mask.masked_fill_(~mask, float("-inf"))
    return _SoftmaxAttentionWithDropout.apply(
        query.contiguous(), key.contiguous(), value.contiguous(), dropout_mask, _additive_mask(mask, query.dtype),
        float(p), scale,
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


def linear_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``Phi(q_i)^T (sum_j Phi(k_j) v_j^T) / (Phi(q_i)^T sum_j Phi(k_j))`` in O(N) where every query sees the same
    keys: the linear kernel without its matrix (so without attention dropout). Where queries see different keys
    (a causal mask), the sums differ per query and the matrix is formed.

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``; allowed: see the module's doc.
    """
    if not _same_keys_for_every_query(allowed):
        return torch.matmul(linear_kernel(query, key, allowed), value)
    phi_query = elu_feature_map(query)
    phi_key = elu_feature_map(key)
    if allowed is not None:
        phi_key = phi_key * with_some_key(allowed).transpose(-1, -2).to(phi_key.dtype)
    key_value = torch.matmul(phi_key.transpose(-1, -2), value)  # (B, H, D, D_v)
    normaliser = torch.matmul(phi_query, phi_key.sum(dim=-2).unsqueeze(-1))  # (B, H, N_q, 1)
    return torch.matmul(phi_query, key_value) / normaliser.clamp_min(LINEAR_KERNEL_EPS)


def local_window_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    window: int,
    allowed: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Sparse attention: query ``i`` attends to the allowed keys ``j`` with ``|i - j| <= window`` (softmax kernel);
    a query with no allowed key in its window attends to its whole window.

    Where every query sees the same keys, the queries are split into blocks of ``block = max(window, 32)`` and each
    block gets the ``block + 2 * window`` keys around it, so time and memory are O(N * window), in one fused call;
    otherwise (a causal mask, decoding with a cache) one fused call with the band and the mask.

    Args:
        query: ``(B, H, N_q, D)``; key, value: ``(B, H, N_k, D)``; allowed: see the module's doc.
    """
    batch, heads, length, head_dim = query.shape
    # torch.export with a dynamic length cannot take the blocks (their count and padding are integer arithmetic
    # on the length, which it cannot prove for every length): one masked call there.
    if not (FAST_PATHS.local_window_blocks and _same_keys_for_every_query(allowed) and key.shape[-2] == length
            and not torch.compiler.is_exporting()):
        band = window_band(length, key.shape[-2], window, query.device)
        if allowed is not None:
            band = keys_else_window(band & allowed, band)
        return softmax_attention(query, key, value, band, dropout_p, scale)
    key_mask = None if allowed is None else allowed[:, 0, 0, :]
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

    def windowed(keys: torch.Tensor) -> torch.Tensor:  # (B, N) -> (B, nb, span), False outside the sequence
        return F.pad(keys, (window, padded_length - length + window)).unfold(1, span, block)

    in_sequence = windowed(torch.ones(batch, length, dtype=torch.bool, device=query.device))
    offsets = torch.arange(span, device=query.device)[None, :] - torch.arange(block, device=query.device)[:, None]
    band = (offsets >= 0) & (offsets <= 2 * window)  # (block, span): |i - j| <= window in padded coordinates
    window_keys = band & in_sequence[:, :, None, :]  # (B, nb, block, span)
    mask = window_keys if key_mask is None else window_keys & windowed(key_mask)[:, :, None, :]
    if key_mask is not None:
        # A (padded) query with no real key in its window sees its whole window, as in the formula's version.
        mask = keys_else_window(mask, window_keys)
    mask = mask.reshape(batch * num_blocks, 1, block, span)

    output = softmax_attention(query_blocks, key_windows(key), key_windows(value), mask, dropout_p, scale)
    output = output.view(batch, num_blocks, heads, block, head_dim).transpose(1, 2)
    return output.reshape(batch, heads, padded_length, head_dim)[:, :, :length]


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


def batch_normalize_for_dot_product(
    query: torch.Tensor,
    key: torch.Tensor,
    allowed: torch.Tensor | None,
    eps: float,
    mean_weight: float,
    use_std: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention-BN for a kernel that sees queries and keys only through ``q_i^T k_j`` and is unchanged by adding
    a constant to a query's scores (softmax): ``(s_i^2 (q_i - beta mu_i), k_j - c)``.

    ``((q_i - beta mu_i) s_i)^T ((k_j - beta mu_i) s_i) = (s_i^2 (q_i - beta mu_i))^T k_j + const_i``, so the whole
    scale goes on the queries and the keys are only shifted, by any vector ``c`` (a shift changes each query's
    scores by a constant): ``beta mu`` where every query sees the same keys, the mean of all keys otherwise (the
    statistics ``mu_i``, ``s_i`` being those of the keys query ``i`` may see, :func:`.key_statistics`). Centred
    keys keep the scores as well conditioned as the transform of both sides.

    Args:
        query: ``(B, H, N_q, D)``; key: ``(B, H, N_k, D)``; allowed: see the module's doc.
    """
    if allowed is None and FAST_PATHS.fused_bn_backward and query.dtype in (torch.float32, torch.float64) \
            and key.dtype == query.dtype:
        return _DotProductBatchNorm.apply(query, key, eps, float(mean_weight), use_std)
    var, mean = key_statistics(key, allowed)
    query_out = query.to(mean.dtype) - mean_weight * mean
    if use_std:
        query_out = query_out * torch.reciprocal(var + eps)
    centre = mean_weight * mean if mean.shape[-2] == 1 else key.to(mean.dtype).mean(dim=-2, keepdim=True)
    return query_out.to(query.dtype), key - centre.to(key.dtype)


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


def pool_keys_values(
    key: torch.Tensor,
    value: torch.Tensor,
    key_mask: torch.Tensor | None,
    scale: int,
    layout: TokenLayout,
    mode: Literal["mean", "max"],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`.attention.pool_keys_values` on windows gathered by reshaping (strided reductions or ``avg_pool2d``
    where every key is real) instead of a membership matrix."""
    prefix = layout.num_prefix_tokens
    length = key.shape[-2]
    device = key.device
    body_length = length - prefix
    check_layout(length, layout)

    if key_mask is None and FAST_PATHS.strided_pooling:
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


__all__ = [
    "FAST_PATHS",
    "FastPaths",
    "attention_dropout_additive_mask",
    "batch_normalize_for_dot_product",
    "fast_paths",
    "linear_attention",
    "local_window_attention",
    "pool_keys_values",
    "softmax_attention",
]
