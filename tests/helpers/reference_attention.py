"""Independent float64 references for the attention family, written from the formulas of SPEC.md one head and
one query at a time. Slow on purpose: nothing here shares code with `hf_primaldual.attention`."""

from __future__ import annotations

import math

import torch


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x + 1.0, torch.exp(x))


def softmax_head(q, k, v, allowed):
    """One head: q (N, D), k/v (M, D), allowed (N, M) bool -> (N, D) and (N, M) probabilities."""
    n, d = q.shape
    out = torch.zeros(n, v.shape[1], dtype=torch.float64)
    probs = torch.zeros(n, k.shape[0], dtype=torch.float64)
    for i in range(n):
        keys = [j for j in range(k.shape[0]) if allowed[i, j]]
        if not keys:
            continue
        scores = torch.stack([q[i] @ k[j] / math.sqrt(d) for j in keys])
        weights = torch.exp(scores - scores.max())
        weights = weights / weights.sum()
        for w, j in zip(weights, keys):
            probs[i, j] = w
            out[i] += w * v[j]
    return out, probs


def linear_head(q, k, v, allowed):
    n = q.shape[0]
    out = torch.zeros(n, v.shape[1], dtype=torch.float64)
    probs = torch.zeros(n, k.shape[0], dtype=torch.float64)
    fq, fk = elu_plus_one(q), elu_plus_one(k)
    for i in range(n):
        similarities = torch.tensor([float(fq[i] @ fk[j]) if allowed[i, j] else 0.0 for j in range(k.shape[0])])
        probs[i] = similarities.double() / similarities.sum()
        out[i] = probs[i] @ v
    return out, probs


def batch_norm_head(q, k, real, eps, mean_weight, use_std):
    """Keys' statistics over the real keys: q, k (., D), real (M,) bool."""
    real_keys = k[real]
    mu = real_keys.mean(dim=0)
    var = ((real_keys - mu) ** 2).mean(dim=0)
    scale = 1.0 / torch.sqrt(var + eps) if use_std else torch.ones_like(var)
    return (q - mean_weight * mu) * scale, (k - mean_weight * mu) * scale


def slots_1d(length, scale):
    return [list(range(start, min(start + scale, length))) for start in range(0, length, scale)]


def slots_2d(height, width, scale):
    slots = []
    for r0 in range(0, height, scale):
        for c0 in range(0, width, scale):
            slots.append(
                [r * width + c for r in range(r0, min(r0 + scale, height)) for c in range(c0, min(c0 + scale, width))]
            )
    return slots


def pool_head(k, v, real, scale, prefix, grid, mode):
    """Average (or max) pooling of one head's keys and values over their real members; prefix tokens kept."""
    body = k.shape[0] - prefix
    groups = slots_1d(body, scale) if grid is None else slots_2d(*grid, scale)
    keys, values, slot_real = [k[i] for i in range(prefix)], [v[i] for i in range(prefix)], [bool(real[i]) for i in range(prefix)]
    for members in groups:
        members = [prefix + m for m in members if real[prefix + m]]
        if not members:
            keys.append(torch.zeros_like(k[0]))
            values.append(torch.zeros_like(v[0]))
            slot_real.append(False)
            continue
        reduce = (lambda x: x.mean(dim=0)) if mode == "mean" else (lambda x: x.max(dim=0).values)
        keys.append(reduce(k[members]))
        values.append(reduce(v[members]))
        slot_real.append(True)
    return torch.stack(keys), torch.stack(values), torch.tensor(slot_real)


def reference_attention(
    q, k, v, attention_type, key_mask=None, *, head_scales=None, window=2, prefix=0, grid=None,
    eps=1e-5, mean_weight=1.0, use_std=True, pooling="mean",
):
    """(B, H, N, D) inputs -> (B, H, N, D) output in float64, for any attention_type of SPEC.md."""
    q, k, v = q.double(), k.double(), v.double()
    batch, heads, length, _ = q.shape
    key_mask = torch.ones(batch, length, dtype=torch.bool) if key_mask is None else key_mask.bool()
    kernel = linear_head if attention_type.startswith("linear") else softmax_head
    uses_bn = "bn" in attention_type
    uses_sh = attention_type.endswith("sh")
    out = torch.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            qh, kh, vh, real = q[b, h], k[b, h], v[b, h], key_mask[b]
            scale = head_scales[h] if uses_sh else 1
            if scale > 1:
                kh, vh, real = pool_head(kh, vh, real, scale, prefix, grid, pooling)
            if uses_bn:
                qh, kh = batch_norm_head(qh, kh, real, eps, mean_weight, use_std)
            allowed = real[None, :].expand(length, -1).clone()
            if attention_type == "sparse":
                for i in range(length):
                    for j in range(length):
                        allowed[i, j] &= abs(i - j) <= window
            out[b, h] = kernel(qh, kh, vh, allowed)[0]
    return out


def reference_probabilities(q, k, v, attention_type, key_mask=None, window=2):
    """(B, H, N, N) probabilities of the types without SH."""
    q, k, v = q.double(), k.double(), v.double()
    batch, heads, length, _ = q.shape
    key_mask = torch.ones(batch, length, dtype=torch.bool) if key_mask is None else key_mask.bool()
    kernel = linear_head if attention_type.startswith("linear") else softmax_head
    probs = torch.zeros(batch, heads, length, length, dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            qh, kh = q[b, h], k[b, h]
            if "bn" in attention_type:
                qh, kh = batch_norm_head(qh, kh, key_mask[b], 1e-5, 1.0, True)
            allowed = key_mask[b][None, :].expand(length, -1).clone()
            if attention_type == "sparse":
                idx = torch.arange(length)
                allowed &= (idx[:, None] - idx[None, :]).abs() <= window
            probs[b, h] = kernel(qh, kh, v[b, h], allowed)[1]
    return probs
