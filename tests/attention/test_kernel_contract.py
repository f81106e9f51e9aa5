"""The attention contract: a kernel added in one place (:func:`hf_primaldual.register_kernel`) runs through both
model families, its compositions with Attention-BN and Attention-SH, the formula and the fast path, and stock
transformers models, with nothing else changed. The toy kernel is ReLU linear attention (``Phi = relu``, as in
EfficientViT), written out again here as the independent reference; and each fast-path switch, flipped, leaves the
family's results as they are."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)
from hf_primaldual import attention as family
from hf_primaldual.attention import AttentionKernel, AttentionOptions, parse_attention_type, primal_dual_attention
from hf_primaldual.attention_interface import REGISTERED_ATTENTIONS
from hf_primaldual.attention_kernels import FAST_PATHS, FastPaths, fast_paths

EPS = 1e-6


def relu_matrix(query, key, allowed, options):
    """The formula: ``A_ij = relu(q_i)^T relu(k_j) / sum_l relu(q_i)^T relu(k_l)`` over the allowed keys."""
    similarity = torch.relu(query) @ torch.relu(key).transpose(-1, -2)
    if allowed is not None:
        similarity = similarity * allowed
    return similarity / similarity.sum(-1, keepdim=True).clamp_min(EPS)


def relu_linear_time(query, key, value, allowed, dropout_p, options):
    """The O(N) form: ``relu(q_i)^T (sum_j relu(k_j) v_j^T) / relu(q_i)^T sum_j relu(k_j)``."""
    phi_q, phi_k = torch.relu(query), torch.relu(key)
    if allowed is not None:
        phi_k = phi_k * allowed.transpose(-1, -2)
    return (phi_q @ (phi_k.transpose(-1, -2) @ value)) / (phi_q @ phi_k.sum(-2).unsqueeze(-1)).clamp_min(EPS)


@pytest.fixture
def relu_kernel():
    """The toy kernel, registered for the test and taken out again after it."""
    kernels, types = dict(family.KERNELS), dict(family.ATTENTION_TYPES)
    registered = dict(REGISTERED_ATTENTIONS)
    names = family.register_kernel(AttentionKernel("relu", reference=relu_matrix, fast=relu_linear_time,
                                                   attention_dropout=False))
    yield names
    for registry, before in ((family.KERNELS, kernels), (family.ATTENTION_TYPES, types),
                             (REGISTERED_ATTENTIONS, registered)):
        registry.clear()
        registry.update(before)


def written_out(q, k, v, key_mask, scales, batch_norm):
    """The toy kernel composed with BN and SH by hand, one head at a time, in float64: SH mean-pools each head's
    keys and values over the real members of its windows, BN normalises queries and keys by the (pooled) real keys'
    mean and standard deviation."""
    batch, heads, length, _ = q.shape
    out = torch.zeros(batch, heads, length, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        real = [j for j in range(length) if key_mask is None or key_mask[b, j]]
        for h in range(heads):
            s = scales[h]
            windows = [[j for j in real if j // s == w] for w in range(-(-length // s))]
            windows = [w for w in windows if w]
            keys = torch.stack([k[b, h, w].double().mean(0) for w in windows])
            values = torch.stack([v[b, h, w].double().mean(0) for w in windows])
            queries = q[b, h].double()
            if batch_norm:
                mean, var = keys.mean(0), keys.var(0, unbiased=False)
                queries, keys = (queries - mean) / (var + 1e-5).sqrt(), (keys - mean) / (var + 1e-5).sqrt()
            weights = torch.relu(queries) @ torch.relu(keys).T
            out[b, h] = (weights / weights.sum(-1, keepdim=True).clamp_min(EPS)) @ values
    return out


def test_one_registration_gives_the_four_types_and_their_attention_functions(relu_kernel):
    assert relu_kernel == ["relu", "relu_bn", "relu_sh", "relu_bn_sh"]
    assert parse_attention_type("relu_bn_sh") == family.AttentionSpec("relu", batch_norm=True, scaled_heads=True)
    from transformers import AttentionInterface

    assert {f"primaldual_{name}" for name in relu_kernel} <= set(AttentionInterface._global_mapping)
    PrimalDualViTConfig(attention_type="relu_sh")  # a config accepts the new types


@pytest.mark.parametrize("attention_type", ["relu", "relu_bn", "relu_sh", "relu_bn_sh"])
@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_the_toy_kernel_composes_as_written_out(relu_kernel, attention_type, implementation):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 13, 8, generator=generator) for _ in range(3))
    key_mask = torch.arange(13)[None, :] < torch.tensor([[13], [9]])
    spec = parse_attention_type(attention_type)
    scales = (1, 2, 3, 1) if spec.scaled_heads else (1, 1, 1, 1)
    options = AttentionOptions(spec=spec, head_scales=scales)
    output, weights = primal_dual_attention(q, k, v, options, key_mask, implementation=implementation)
    expected = written_out(q, k, v, key_mask, scales, spec.batch_norm)
    torch.testing.assert_close(output.double(), expected, atol=2e-5, rtol=1e-4)
    assert (weights is None) == (implementation == "sdpa")


@pytest.mark.parametrize("attention_type", ["relu_bn", "relu_bn_sh"])
def test_both_families_run_the_toy_kernel_and_its_two_paths_agree(relu_kernel, attention_type):
    vit = PrimalDualViTForImageClassification(PrimalDualViTConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
        patch_size=8, num_labels=4, attention_type=attention_type, head_scales=[1, 2, 1],
    )).eval()
    series = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(
        num_input_channels=3, max_sequence_length=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=32, num_labels=4, attention_type=attention_type, head_scales=[1, 2, 4, 1],
    )).eval()
    inputs = [(vit, {"pixel_values": torch.randn(2, 3, 32, 32)}),
              (series, {"past_values": torch.randn(2, 20, 3),
                        "past_observed_mask": torch.arange(20)[None, :, None].expand(2, 20, 3) < torch.tensor([20, 14])[:, None, None]})]
    for model, batch in inputs:
        fused = model(**batch).logits
        model.set_attn_implementation("eager")
        eager = model(**batch, output_attentions=True)
        torch.testing.assert_close(eager.logits, fused, atol=1e-5, rtol=1e-4)
        assert eager.attentions[0] is not None and torch.isfinite(fused).all()


def test_a_stock_model_runs_the_toy_kernel_as_the_package_model_does(relu_kernel):
    """transformers' ViT under primaldual_relu_bn_sh gives the logits of PrimalDualViT with relu_bn_sh, same weights."""
    config = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                       image_size=32, patch_size=8, num_labels=4)
    stock = ViTForImageClassification(config).eval()
    stock.config.primaldual_attention = {"head_scales": [1, 2, 1]}
    stock.set_attn_implementation("primaldual_relu_bn_sh")
    ours = PrimalDualViTForImageClassification(PrimalDualViTConfig(
        **{k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                           "intermediate_size", "image_size", "patch_size")},
        num_labels=4, attention_type="relu_bn_sh", head_scales=[1, 2, 1],
    )).eval()
    missing, unexpected = ours.load_state_dict(copy.deepcopy(stock.state_dict()), strict=False)
    assert not unexpected and not [name for name in missing if "classifier" not in name]
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(stock(pixel_values=pixels).logits, ours(pixel_values=pixels).logits,
                               atol=1e-5, rtol=1e-4)


SWITCHES = [name for name in FastPaths.__dataclass_fields__ if name != "fused_cpu_dropout"]


@pytest.mark.parametrize("switch", SWITCHES)
@pytest.mark.parametrize("attention_type", ["bn", "sh", "bn_sh", "sparse", "linear_bn_sh"])
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_each_fast_path_switch_leaves_outputs_and_gradients_as_they_are(switch, attention_type, padded):
    """Off, a trick's plain counterpart runs; outputs and gradients stay the formula's (the eager path, which
    tests/attention/test_attention.py holds to the float64 references written out one query at a time)."""
    generator = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 40, 4, 8, generator=generator, dtype=torch.float64).transpose(1, 2).requires_grad_()
               for _ in range(3))
    key_mask = torch.arange(40)[None, :] < torch.tensor([[40], [29]]) if padded else None
    options = AttentionOptions(spec=parse_attention_type(attention_type), head_scales=(1, 1, 2, 4),
                               attention_window=5)

    def run(implementation):
        output, _ = primal_dual_attention(q, k, v, options, key_mask, implementation=implementation)
        return output, torch.autograd.grad(output.square().sum(), (q, k, v))

    expected, expected_grads = run("eager")
    with fast_paths(**{switch: False}) as switches:
        assert getattr(switches, switch) is False
        output, grads = run("sdpa")
    assert getattr(FAST_PATHS, switch) is True  # restored after the block
    torch.testing.assert_close(output, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)


def test_an_unknown_switch_is_refused_with_the_list():
    with pytest.raises(ValueError, match="Unknown fast-path switches.*strided_pooling"):
        with fast_paths(strided_poolng=False):
            pass
