"""The attention family against the plain formulas of SPEC.md (helpers/reference_attention.py), and its invariants."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_primaldual.attention import ATTENTION_TYPES, AttentionOptions, AttentionSpec, TokenLayout, parse_attention_type
from hf_primaldual.attention_kernels import (
    attention_dropout_additive_mask,
    attention_dropout_keep_mask,
    fast_paths,
    softmax_attention_with_dropout,
)
from hf_primaldual.attention import primal_dual_attention
from hf_primaldual.attention_reference import elu_feature_map
from helpers.reference_attention import reference_attention, reference_probabilities

ALL_TYPES = list(ATTENTION_TYPES)
SH_SCALES = (1, 2, 3, 1)  # a non-contiguous, non-divisor mix: groups {0, 3}, {1}, {2}


def options_for(attention_type: str, heads: int = 4, **overrides) -> AttentionOptions:
    return AttentionOptions(
        spec=parse_attention_type(attention_type),
        head_scales=overrides.pop("head_scales", SH_SCALES[:heads]),
        attention_window=overrides.pop("attention_window", 2),
        **overrides,
    )


def random_qkv(batch=2, heads=4, length=11, dim=8, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=generator, dtype=dtype) for _ in range(3)]


def padding_mask(batch: int, length: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]


def assert_close_on_real_queries(actual, expected, key_mask, atol=1e-5):
    query_mask = torch.ones(actual.shape[0], actual.shape[2], dtype=torch.bool) if key_mask is None else key_mask
    selected = query_mask[:, None, :, None].expand_as(actual)
    torch.testing.assert_close(actual.double()[selected], expected[selected], atol=atol, rtol=1e-4)


@pytest.mark.parametrize("attention_type", ALL_TYPES)
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_sequence_attention_matches_reference(attention_type, padded, implementation):
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 6]) if padded else None
    output, weights = primal_dual_attention(q, k, v, options_for(attention_type), key_mask, implementation=implementation)
    expected = reference_attention(q, k, v, attention_type, key_mask, head_scales=SH_SCALES, window=2)
    assert_close_on_real_queries(output, expected, key_mask)
    assert (weights is not None) == (implementation == "eager")


@pytest.mark.parametrize("attention_type", ["sh", "bn_sh", "linear_sh", "linear_bn_sh"])
@pytest.mark.parametrize("grid", [(4, 4), (5, 3)], ids=["4x4", "5x3"])
def test_image_sh_pools_the_grid_and_never_the_class_token(attention_type, grid):
    q, k, v = random_qkv(length=1 + grid[0] * grid[1], heads=3)
    options = options_for(attention_type, heads=3, head_scales=(1, 2, 4))
    layout = TokenLayout(num_prefix_tokens=1, grid=grid)
    output, _ = primal_dual_attention(q, k, v, options, layout=layout)
    expected = reference_attention(q, k, v, attention_type, head_scales=(1, 2, 4), prefix=1, grid=grid)
    assert_close_on_real_queries(output, expected, None)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("attention_type", ["sh", "linear_bn_sh"])
def test_sh_max_pooling_matches_reference(attention_type, implementation):
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 7])
    options = options_for(attention_type, sh_pooling="max")
    output, _ = primal_dual_attention(q, k, v, options, key_mask, implementation=implementation)
    expected = reference_attention(q, k, v, attention_type, key_mask, head_scales=SH_SCALES, pooling="max")
    assert_close_on_real_queries(output, expected, key_mask)


@pytest.mark.parametrize("mean_weight, use_std", [(1.0, True), (1.0, False), (0.5, True), (0.0, False)])
def test_bn_settings_match_reference(mean_weight, use_std):
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [9, 11])
    options = options_for("bn", bn_mean_weight=mean_weight, bn_use_std=use_std, bn_eps=1e-3)
    output, _ = primal_dual_attention(q, k, v, options, key_mask)
    expected = reference_attention(q, k, v, "bn", key_mask, eps=1e-3, mean_weight=mean_weight, use_std=use_std)
    assert_close_on_real_queries(output, expected, key_mask)


@pytest.mark.parametrize("attention_type", ["softmax", "bn", "linear", "linear_bn", "sparse"])
def test_explicit_probabilities_match_reference(attention_type):
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 5])
    _, weights = primal_dual_attention(q, k, v, options_for(attention_type), key_mask, implementation="eager")
    expected = reference_probabilities(q, k, v, attention_type, key_mask, window=2)
    real = key_mask[:, None, :, None].expand_as(weights)
    torch.testing.assert_close(weights.double()[real], expected[real], atol=1e-5, rtol=1e-4)
    real_query_padded_key = key_mask[:, None, :, None] & ~key_mask[:, None, None, :]
    assert torch.all(weights.masked_select(real_query_padded_key) == 0), "padded keys took weight"


@pytest.mark.parametrize("attention_type", ["sh", "bn_sh"])
def test_sh_probabilities_over_original_keys_reproduce_the_output(attention_type):
    """For mean pooling, spreading a slot's weight over its members is exact: output == weights @ values."""
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 8])
    output, weights = primal_dual_attention(q, k, v, options_for(attention_type), key_mask, implementation="eager")
    assert weights.shape == (2, 4, 11, 11)
    torch.testing.assert_close(weights @ v, output, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 11))


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_fused_path_matches_explicit_path(attention_type):
    q, k, v = random_qkv(length=70, seed=3)  # longer than the sparse block of 32
    key_mask = padding_mask(2, 70, [70, 41])
    fused, _ = primal_dual_attention(q, k, v, options_for(attention_type), key_mask)
    explicit, _ = primal_dual_attention(q, k, v, options_for(attention_type), key_mask, implementation="eager")
    assert_close_on_real_queries(fused, explicit.double(), key_mask)


def test_sh_with_every_scale_one_equals_softmax():
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 4])
    sh, _ = primal_dual_attention(q, k, v, options_for("sh", head_scales=(1, 1, 1, 1)), key_mask)
    softmax, _ = primal_dual_attention(q, k, v, options_for("softmax"), key_mask)
    torch.testing.assert_close(sh, softmax)


@settings(max_examples=25, deadline=None)
@given(
    shift=st.lists(st.floats(-50, 50), min_size=8, max_size=8),
    attention_type=st.sampled_from(["bn", "bn_sh", "linear_bn"]),
)
def test_bn_is_unchanged_by_adding_a_vector_to_all_queries_and_keys(shift, attention_type):
    q, k, v = random_qkv(dtype=torch.float64)
    key_mask = padding_mask(2, 11, [11, 7])
    offset = torch.tensor(shift, dtype=torch.float64)
    options = options_for(attention_type)
    before, _ = primal_dual_attention(q, k, v, options, key_mask)
    after, _ = primal_dual_attention(q + offset, k + offset, v, options, key_mask)
    torch.testing.assert_close(after, before, atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_padding_keys_changes_no_output(attention_type):
    q, k, v = random_qkv(batch=1, length=9)
    padded = [torch.cat([x, torch.randn(1, 4, 6, 8) * 100], dim=2) for x in (q, k, v)]
    key_mask = padding_mask(1, 15, [9])
    options = options_for(attention_type)
    plain, _ = primal_dual_attention(q, k, v, options)
    with_padding, _ = primal_dual_attention(*padded, options, key_mask)
    torch.testing.assert_close(with_padding[:, :, :9], plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention_type", ["softmax", "linear", "bn", "linear_bn"])
def test_permuting_keys_and_values_together_changes_nothing(attention_type):
    q, k, v = random_qkv()
    key_mask = padding_mask(2, 11, [11, 6])
    permutation = torch.randperm(11, generator=torch.Generator().manual_seed(1))
    options = options_for(attention_type)
    before, _ = primal_dual_attention(q, k, v, options, key_mask)
    after, _ = primal_dual_attention(q, k[:, :, permutation], v[:, :, permutation], options, key_mask[:, permutation])
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


@settings(max_examples=30, deadline=None)
@given(
    length=st.integers(1, 80),
    window=st.integers(1, 40),
    real=st.floats(0.05, 1.0),
)
def test_local_window_blocks_match_the_dense_band(length, window, real):
    """The O(N * window) blocked fast path against a dense band mask, for any length and window."""
    q, k, v = random_qkv(batch=2, heads=2, length=length, dim=4, seed=length)
    key_mask = padding_mask(2, length, [length, max(1, int(real * length))])
    options = options_for("sparse", heads=2, attention_window=window)
    fused, _ = primal_dual_attention(q, k, v, options, key_mask)
    explicit, weights = primal_dual_attention(q, k, v, options, key_mask, implementation="eager")
    assert_close_on_real_queries(fused, explicit.double(), key_mask)
    positions = torch.arange(length)
    outside = (positions[:, None] - positions[None, :]).abs() > window
    real_query_outside_window = key_mask[:, None, :, None] & outside
    assert torch.all(weights.masked_select(real_query_outside_window) == 0)


@pytest.mark.parametrize("sh_pooling", ["mean", "max"])
@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_eager_attention_weights_are_the_tensors_the_output_is_computed_from(attention_type, sh_pooling):
    """Gradient-based attribution needs the returned weights in the graph (for SH: the pooled weights spread over
    the original keys as part of the computation, not rebuilt beside it)."""
    q, k, v = (x.requires_grad_() for x in random_qkv())
    key_mask = padding_mask(2, 11, [11, 8])
    options = options_for(attention_type, sh_pooling=sh_pooling)
    output, weights = primal_dual_attention(q, k, v, options, key_mask, implementation="eager")
    weights.retain_grad()
    (output * torch.randn_like(output)).sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 11))


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_constant_key_features_and_large_inputs_stay_finite_in_every_precision(attention_type, dtype, implementation):
    """A constant key feature makes BN's 1 / (var + eps) 1e5, beyond float16; large inputs overflow the linear
    kernel's sums over the keys in float16."""
    q, k, v = random_qkv(length=40, seed=5)
    k[..., 0] = 3.0  # a constant feature in every head
    key_mask = padding_mask(2, 40, [40, 23])
    options = options_for(attention_type)
    for scale in (1.0, 300.0):
        inputs = [(x * scale).to(dtype) for x in (q, k, v)]
        output, weights = primal_dual_attention(*inputs, options, key_mask, implementation=implementation)
        assert output.dtype == dtype and torch.isfinite(output).all(), (scale, output.abs().max())
        if weights is not None:
            assert torch.isfinite(weights).all()
    reference = reference_attention(q, k, v, attention_type, key_mask, head_scales=SH_SCALES, window=2)
    output, _ = primal_dual_attention(q.to(dtype), k.to(dtype), v.to(dtype), options, key_mask,
                                      implementation=implementation)
    tolerance = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-4}[dtype]
    assert_close_on_real_queries(output.float(), reference, key_mask, atol=tolerance * 5)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_the_linear_feature_map_is_elu_plus_one_with_its_gradient(dtype, compiled):
    """Eager and as the compiler sees it (written out there), it is elu(x) + 1 (computed in float64): values and
    gradients, with a transposed input as the attention gives it, finite where exp would overflow."""
    points = torch.cat([torch.linspace(-100, 100, 399, dtype=torch.float64),
                        torch.tensor([0.0, -0.0, 1e-30, -1e-30, 88.0, 89.0], dtype=torch.float64)])
    points = points.reshape(9, 45).t()
    x = points.to(dtype).requires_grad_()
    exact_input = x.detach().double().requires_grad_()  # the same (rounded) points
    grad = torch.rand_like(exact_input)
    feature_map = torch.compile(elu_feature_map, backend="aot_eager", fullgraph=True) if compiled else elu_feature_map
    output = feature_map(x)
    expected = torch.nn.functional.elu(exact_input) + 1.0
    (output * grad.to(dtype)).sum().backward()
    (expected * grad).sum().backward()
    # elu(x) + 1 rounds twice: in bfloat16, to one unit of the last place at 1
    tolerance = {"atol": 2 ** -7, "rtol": 2 ** -7} if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(output, expected.to(dtype), **tolerance)
    torch.testing.assert_close(x.grad, exact_input.grad.to(dtype), **tolerance)
    assert torch.isfinite(x.grad).all() and (output >= 0).all()


def test_local_window_does_not_compose_with_bn_or_sh():
    with pytest.raises(ValueError, match="local_window kernel.*does not compose"):
        AttentionSpec("local_window", batch_norm=True)
    with pytest.raises(ValueError, match="local_window kernel.*does not compose"):
        AttentionSpec("local_window", scaled_heads=True)
    with pytest.raises(ValueError, match="Unknown attention kernel 'cosine'"):
        AttentionSpec("cosine")


def test_unknown_attention_type_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown attention_type 'bn-sh'.*bn_sh"):
        parse_attention_type("bn-sh")


def test_fully_padded_query_windows_stay_finite():
    q, k, v = random_qkv(batch=1, length=40)
    key_mask = padding_mask(1, 40, [3])
    output, _ = primal_dual_attention(q, k, v, options_for("sparse"), key_mask)
    assert torch.isfinite(output).all()


# --- attention dropout ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_attention_dropout_matches_the_formula_with_the_same_mask(padded):
    """((softmax(QK^T / sqrt(D)) * keep) / (1 - p)) V, and its gradients, written out with autograd in float64;
    one query has every key dropped (its output must be 0)."""
    q, k, v = (x.requires_grad_() for x in random_qkv(length=13, dtype=torch.float64, seed=3))
    mask = padding_mask(2, 13, [13, 9])[:, None, None, :] if padded else None
    keep = torch.rand(2, 4, 13, 13, generator=torch.Generator().manual_seed(0)) >= 0.3
    keep[0, 1, 4] = False
    scores = q @ k.transpose(-1, -2) / 8**0.5
    if padded:
        scores = scores.masked_fill(~mask, float("-inf"))
    expected = (scores.softmax(-1) * keep / 0.7) @ v
    actual = softmax_attention_with_dropout(q, k, v, mask, keep, 0.3)
    torch.testing.assert_close(actual, expected, atol=1e-12, rtol=1e-10)
    assert torch.all(actual[0, 1, 4] == 0)
    weights = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad((actual * weights).sum(), (q, k, v)),
                         torch.autograd.grad((expected * weights).sum(), (q, k, v))):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)


def test_attention_dropout_mask_drops_with_probability_p_at_every_position():
    keep, p = attention_dropout_keep_mask((4, 100_000), 0.1)
    assert p == round(0.1 * 65536) / 65536 and keep.shape == (4, 100_000)
    dropped = (~keep).double().view(-1, 4).mean(0)  # each of the 4 lanes a 64-bit word is cut into, separately
    sigma = (p * (1 - p) / 100_000) ** 0.5
    assert torch.all((dropped - p).abs() < 5 * sigma), dropped
    other, _ = attention_dropout_keep_mask((4, 100_000), 0.1)
    assert (keep != other).double().mean() > 0.15  # fresh draws each call
    torch.manual_seed(7)
    first, _ = attention_dropout_keep_mask((5, 7), 0.5)
    torch.manual_seed(7)
    assert torch.equal(attention_dropout_keep_mask((5, 7), 0.5)[0], first)  # reproducible under torch's seed


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_attention_dropout_additive_mask_is_the_keep_mask_as_zero_and_minus_infinity(dtype):
    shape = (3, 2, 1001, 523)  # over two chunks of lanes, and not a whole number of 64-bit words
    torch.manual_seed(11)
    keep, p = attention_dropout_keep_mask(shape, 0.25)
    torch.manual_seed(11)
    additive, additive_p = attention_dropout_additive_mask(shape, 0.25, dtype)
    assert additive.dtype == dtype and additive.shape == shape and additive_p == p == 0.25
    expected = torch.zeros(shape, dtype=dtype).masked_fill(~keep, float("-inf"))
    assert torch.equal(additive, expected)


@pytest.mark.parametrize("attention_type", ["softmax", "bn", "sh", "bn_sh", "sparse"])
def test_training_attention_dropout_is_unbiased(attention_type):
    """Averaged over many dropout masks, training-mode attention equals the attention without dropout. The draws
    are a batch of copies of one input (every batch item draws its own mask) and a few calls."""
    q, k, v = random_qkv(batch=1, length=12)
    key_mask = padding_mask(1, 12, [10])
    options = options_for(attention_type)
    expected, _ = primal_dual_attention(q, k, v, options, key_mask)
    copies = 500
    q, k, v = (x.expand(copies, -1, -1, -1) for x in (q, k, v))
    torch.manual_seed(0)
    draws = torch.cat([primal_dual_attention(q, k, v, options, key_mask.expand(copies, -1), dropout_p=0.2)[0]
                       for _ in range(6)])
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[copies])
    assert_close_on_real_queries(draws.mean(0, keepdim=True), expected.double(), key_mask, atol=0.04)


def test_cpu_attention_dropout_runs_through_the_fused_kernel():
    """PyTorch's CPU SDPA falls back to its math kernel (softmax and bernoulli over the whole matrix) when given
    dropout; the family's dropout must not (the path where the compiled kernel is off or cannot be built;
    tests/attention/test_cpu_dropout_kernel.py tests the kernel's)."""
    q, k, v = (x.requires_grad_() for x in random_qkv(length=192))  # 2 x 4 x 192 x 192 scores: where it pays
    with torch.profiler.profile() as profile, fast_paths(cpu_dropout_kernel=False):
        output, _ = primal_dual_attention(q, k, v, options_for("softmax"), dropout_p=0.1)
        output.sum().backward()
    ops = {event.name for event in profile.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert not ops & {"aten::_softmax", "aten::bernoulli_", "aten::_scaled_dot_product_attention_math"}, ops


def test_small_attention_dropout_runs_through_pytorch_where_that_is_faster():
    """At 2 x 4 x 16 x 16 scores PyTorch's math kernel is faster than the fused path: where the compiled kernel
    is off, the family hands dropout to it."""
    q, k, v = random_qkv(length=16)
    torch.manual_seed(3)
    with fast_paths(cpu_dropout_kernel=False):
        small, _ = primal_dual_attention(q, k, v, options_for("softmax"), dropout_p=0.3)
    torch.manual_seed(3)
    assert torch.equal(small, torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.3))


def test_the_path_before_the_fused_dropout_stays_selectable():
    """Under fast_paths(fused_cpu_dropout=False) the family's dropout is PyTorch's own SDPA with dropout_p, draw for draw
    (same seed, same output), and the block restores the fused path after it, also after an error."""
    q, k, v = random_qkv(length=192)
    with fast_paths(fused_cpu_dropout=False):
        torch.manual_seed(5)
        before, _ = primal_dual_attention(q, k, v, options_for("softmax"), dropout_p=0.3)
        with pytest.raises(KeyError), fast_paths(fused_cpu_dropout=True):
            raise KeyError
        torch.manual_seed(5)
        still_before, _ = primal_dual_attention(q, k, v, options_for("softmax"), dropout_p=0.3)
    torch.manual_seed(5)
    pytorch = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=0.3)
    assert torch.equal(before, pytorch) and torch.equal(still_before, pytorch)
    with torch.profiler.profile() as profile, fast_paths(cpu_dropout_kernel=False):
        primal_dual_attention(q, k, v, options_for("softmax"), dropout_p=0.3)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in {event.name for event in profile.events()}


def test_the_environment_selects_the_path_before_for_a_whole_run():
    code = ("import torch; from hf_primaldual.attention import primal_dual_attention;"
            "from hf_primaldual.attention import AttentionOptions, parse_attention_type;"
            "q = torch.randn(2, 4, 192, 8); torch.manual_seed(0);"
            "out, _ = primal_dual_attention(q, q, q, AttentionOptions(spec=parse_attention_type('softmax'), head_scales=(1, 1)),"
            " dropout_p=0.5); torch.manual_seed(0);"
            "ref = torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=0.5);"
            "print(torch.equal(out, ref))")
    for value, same_as_pytorch in (("0", "True"), ("1", "False")):
        env = {**os.environ, "HF_PRIMALDUAL_FUSED_CPU_DROPOUT": value}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert result.stdout.strip() == same_as_pytorch, result.stderr[-2000:]
