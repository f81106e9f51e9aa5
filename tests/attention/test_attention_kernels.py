"""The fast kernels (``attn_implementation="sdpa"``) against the readable formulas of hf_primaldual.attention
(``"eager"``), and the switch between the two: the fused kernels run unless the eager implementation is chosen."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification, attention_kernels, modeling_attention
from hf_primaldual.attention import (
    ATTENTION_TYPES,
    AttentionOptions,
    TokenLayout,
    parse_attention_type,
    primal_dual_attention,
)
from hf_primaldual.attention_reference import batch_normalize_queries_keys, pool_keys_values

ALL_TYPES = list(ATTENTION_TYPES)
SOFTMAX_KERNEL_TYPES = [name for name, spec in ATTENTION_TYPES.items() if spec.kernel != "linear"]
TINY_VIT = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
                patch_size=8, num_labels=5)


def options_for(attention_type: str, heads: int = 4) -> AttentionOptions:
    return AttentionOptions(spec=parse_attention_type(attention_type), head_scales=(1, 2, 4, 1)[:heads],
                            attention_window=3)


def qkv(batch=2, heads=4, length=40, dim=8):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, length, heads, dim, generator=generator).transpose(1, 2) for _ in range(3)]


# ----------------------------------------------------------------------------------------------------------------
# One switch: the implementation
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention_type", SOFTMAX_KERNEL_TYPES)
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_sdpa_runs_the_fused_kernel_and_eager_the_formula(attention_type, padded):
    q, k, v = qkv()
    key_mask = (torch.arange(40)[None, :] < torch.tensor([[40], [23]])) if padded else None
    options = options_for(attention_type)
    softmax_calls = []
    original_softmax = torch.Tensor.softmax

    def counting_softmax(self, *args, **kwargs):
        softmax_calls.append(self.shape)
        return original_softmax(self, *args, **kwargs)

    sdpa = mock.patch.object(attention_kernels.F, "scaled_dot_product_attention",
                             wraps=torch.nn.functional.scaled_dot_product_attention)
    matmul = mock.patch.object(torch, "matmul", wraps=torch.matmul)
    softmax = mock.patch.object(torch.Tensor, "softmax", counting_softmax)
    with sdpa as fused, matmul as explicit_matmul, softmax:
        output, weights = primal_dual_attention(q, k, v, options, key_mask, implementation="sdpa")
        assert weights is None and fused.call_count >= 1
        assert explicit_matmul.call_count == 0 and not softmax_calls
        fused.reset_mock()
        _, weights = primal_dual_attention(q, k, v, options, key_mask, implementation="eager")
        assert weights.shape == (2, 4, 40, 40)
        assert fused.call_count == 0 and explicit_matmul.call_count >= 2 and softmax_calls


def test_an_unknown_implementation_is_refused_with_the_choices():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="attn_implementation='flash_attention_2' is not available.*'eager' or 'sdpa'"):
        primal_dual_attention(q, k, v, options_for("bn"), implementation="flash_attention_2")


@pytest.mark.parametrize("attention_type", ["softmax", "bn_sh", "sparse", "linear"])
def test_the_model_computes_with_its_attn_implementation(attention_type):
    """The config's attn_implementation, and nothing else (not output_attentions), picks the implementation."""
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type=attention_type)).eval()
    assert model.config._attn_implementation == "sdpa"
    pixels = torch.randn(2, 3, 32, 32)
    implementations = lambda spy: [call.args[6] for call in spy.call_args_list]  # noqa: E731
    with mock.patch.object(modeling_attention, "primal_dual_attention",
                           wraps=modeling_attention.primal_dual_attention) as spy:
        fused = model(pixels, output_attentions=True)
        assert implementations(spy) == ["sdpa", "sdpa"] and fused.attentions == ()  # as transformers' ViT gives
        spy.reset_mock()
        model.set_attn_implementation("eager")
        eager = model(pixels, output_attentions=True)
        assert implementations(spy) == ["eager", "eager"] and eager.attentions[0].shape == (2, 3, 17, 17)
    torch.testing.assert_close(eager.logits, fused.logits, atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
# The optimised paths give what the formulas give
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize(
    "layout, length",
    [(TokenLayout(), 23), (TokenLayout(1), 24), (TokenLayout(0, (6, 6)), 36), (TokenLayout(1, (5, 7)), 36),
     (TokenLayout(1, (8, 8)), 65)],
    ids=["1d", "1d+cls", "grid", "partial-grid+cls", "grid+cls"],
)
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("masked", ["none", "all-real", "padded"])
def test_pooling_fast_paths_match_the_formula(layout, length, scale, mode, masked):
    """Without a key mask, pooling takes strided reductions / avg_pool2d; with one, windows gathered by reshaping.
    Both against the membership-matrix definition of hf_primaldual.attention: values, masks and gradients."""
    generator = torch.Generator().manual_seed(scale)
    base = torch.randn(2, length, 3, 4, 4, generator=generator, dtype=torch.float64)
    key, value = [base[:, :, i].transpose(1, 2)[:, 1:3].detach().requires_grad_() for i in range(2)]
    key_mask = {
        "none": None,
        "all-real": torch.ones(2, length, dtype=torch.bool),
        "padded": torch.arange(length)[None, :] < torch.tensor([[length], [length - 2 * scale - 1]]),
    }[masked]
    fast = attention_kernels.pool_keys_values(key, value, key_mask, scale, layout, mode)
    formula = pool_keys_values(key, value, key_mask, scale, layout, mode)
    if key_mask is None:
        assert fast[2] is None and formula[2] is None
    else:
        assert torch.equal(fast[2], formula[2])
    for a, b in zip(fast[:2], formula[:2]):
        torch.testing.assert_close(a, b)
        assert a.stride(-1) == 1  # what the fused kernel needs to stay on its fast path
    weights = torch.randn(fast[0].shape, generator=generator, dtype=torch.float64)
    grads_fast = torch.autograd.grad((fast[0] * weights).sum() + fast[1].square().sum(), (key, value))
    grads_formula = torch.autograd.grad((formula[0] * weights).sum() + formula[1].square().sum(), (key, value))
    for a, b in zip(grads_fast, grads_formula):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mean_weight, use_std", [(1.0, True), (0.5, True), (0.0, True), (1.0, False), (0.0, False)])
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_bn_for_the_softmax_kernel_gives_the_scores_and_gradients_of_the_plain_formula(mean_weight, use_std, padded):
    """Attention-BN puts the whole scale on the queries for the softmax kernel (and writes out its backward when
    every key is real): q'^T k' and every gradient are those of ((q - b mu) s)^T ((k - b mu) s)."""
    generator = torch.Generator().manual_seed(0)
    q, k = [(3 * torch.randn(2, 13, 3, 5, generator=generator, dtype=torch.float64) + 1).transpose(1, 2)
            .requires_grad_() for _ in range(2)]
    key_mask = (torch.arange(13)[None, :] < torch.tensor([[13], [8]])) if padded else None
    upstream = torch.randn(2, 3, 13, 13, generator=generator, dtype=torch.float64)

    def scores(normalise):
        nq, nk = normalise(q, k, None if key_mask is None else key_mask[:, None, None, :], 1e-3, mean_weight, use_std)
        s = nq @ nk.transpose(-1, -2)
        return s, torch.autograd.grad((s * upstream).sum(), (q, k))

    folded, folded_grads = scores(attention_kernels.batch_normalize_for_dot_product)
    plain, plain_grads = scores(batch_normalize_queries_keys)
    torch.testing.assert_close(folded, plain)
    for a, b in zip(folded_grads, plain_grads):
        torch.testing.assert_close(a, b)
