"""The compiled CPU attention kernel with dropout inside (hf_primaldual/cpu_attention.py): exact against the float64
formula ``((softmax(S) * keep) / (1 - p)) V`` written out here with the mask the kernel drew (its debug entry point),
its generator against Philox's published answers, its masks against the binomial law and independent across heads,
batch items and calls; the family's dropout through it; and the fallback where it is off or cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from scipy.stats import binomtest

from hf_primaldual import cpu_attention
from hf_primaldual.attention import AttentionOptions, parse_attention_type, primal_dual_attention
from hf_primaldual.attention_kernels import _CPU_DROPOUT_KERNEL_MAX_HEAD_DIM as MAX_HEAD_DIM
from hf_primaldual.attention_kernels import fast_paths

OP = "hf_primaldual::attention_dropout_cpu"
P_VALUE_FLOOR = 1e-4


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if not cpu_attention.kernel_available():
        pytest.skip(f"the CPU attention kernel is not available here: {cpu_attention.unavailable_reason()}")


def formula(q, k, v, allowed, keep, p, scale):
    """((softmax(scale Q K^T) * keep) / (1 - p)) V in float64, masked keys taking no weight."""
    scores = (q.double() @ k.double().transpose(-1, -2)) * scale
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a query with no key: weight 0 everywhere
    return ((weights * keep) / (1 - p)) @ v.double()


def inputs(batch=2, heads=3, n_q=13, n_k=21, dim=5, dim_v=7, dtype=torch.float64, seed=0):
    """q, k, v as (B, H, N, D) views of (B, N, H, D) tensors: strided, as the models' projections give them."""
    generator = torch.Generator().manual_seed(seed)

    def make(n, d):
        return torch.randn(batch, n, heads, d, generator=generator, dtype=torch.float64).to(dtype).transpose(1, 2)

    return make(n_q, dim), make(n_k, dim), make(n_k, dim_v)


def masks(kind, batch, n_q, n_k):
    if kind == "none":
        return None
    if kind == "padding":  # (B, 1, 1, N_k), the second item with 8 real keys
        return (torch.arange(n_k)[None, :] < torch.tensor([[n_k], [8]]))[:, None, None, :]
    allowed = torch.rand(batch, 1, n_q, n_k, generator=torch.Generator().manual_seed(1)) > 0.4  # per query
    allowed[0, 0, 3] = False  # a query that may attend to no key
    return allowed


def test_philox_gives_the_published_known_answers():
    """Random123's known-answer vectors for Philox4x32-10 (kat_vectors)."""
    assert cpu_attention.philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert cpu_attention.philox4x32_10((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2) == (
        0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)
    assert cpu_attention.philox4x32_10(
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)
    ) == (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)


def test_the_mask_is_one_philox_lane_per_entry_as_documented():
    """Entry (b, h, i, j) is kept where lane j // calls of Philox((j % calls, i, b, h), seed) is >= round(p 2^16):
    computed here one call at a time, against the kernel's vectorised draw (70 keys: whole and partial vectors)."""
    batch, heads, n_q, n_k, p, seed = 2, 2, 3, 70, 0.3, 0x1234_5678_9ABC_DEF0 - (1 << 63)
    calls = -(-n_k // 8)
    threshold = round(p * 65536)
    seed_bits = seed & (1 << 64) - 1
    expected = torch.zeros(batch, heads, n_q, n_k, dtype=torch.bool)
    for b in range(batch):
        for h in range(heads):
            for i in range(n_q):
                for c in range(calls):
                    words = cpu_attention.philox4x32_10((c, i, b, h), (seed_bits & 0xFFFFFFFF, seed_bits >> 32))
                    for lane in range(8):
                        j = lane * calls + c
                        if j < n_k:
                            expected[b, h, i, j] = (words[lane // 2] >> (16 * (lane % 2)) & 0xFFFF) >= threshold
    assert torch.equal(cpu_attention.keep_mask(batch, heads, n_q, n_k, p, seed), expected)


@pytest.fixture(params=["row", "blocked"])
def kernel_path(request):
    """The kernel's row path or its GEMM-blocked one, forced whatever the head dim (each is the default for some)."""
    module = cpu_attention._module()
    default = module.blocked_min_head_dim()
    module.set_blocked_min_head_dim(1 if request.param == "blocked" else 1 << 30)
    yield request.param
    module.set_blocked_min_head_dim(default)


# (n_q, n_k, dim, dim_v): queries in part of one of the blocked path's 64-row blocks (13), in one and a part
# (70 = 64 + 6), in two and a part (130); head dims 40 and 64 take the blocked path by default, 5 and 7 the row path.
SHAPES = [(13, 21, 5, 7), (70, 37, 40, 40), (130, 21, 64, 64)]


@pytest.mark.parametrize("mask_kind", ["none", "padding", "per_query"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-12), (torch.float32, 2e-6), (torch.bfloat16, 4e-2)],
                         ids=["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_output_and_gradients_equal_the_formula_with_the_drawn_mask(shape, mask_kind, dtype, tolerance, kernel_path):
    n_q, n_k, dim, dim_v = shape
    q, k, v = inputs(n_q=n_q, n_k=n_k, dim=dim, dim_v=dim_v, dtype=dtype)
    batch, heads = q.shape[:2]
    allowed = masks(mask_kind, batch, n_q, n_k)
    # scores of the same spread at every head dim (the 0.45 of head dim 5), so that the tolerances mean the same
    p, scale, seed = 0.3, 0.45 * (5 / dim) ** 0.5, 987654321
    keep = cpu_attention.keep_mask(batch, heads, n_q, n_k, p, seed)
    assert 0 < keep.float().mean() < 1
    grad_output = torch.randn(batch, heads, n_q, v.shape[-1], generator=torch.Generator().manual_seed(2),
                              dtype=torch.float64)

    exact = [x.detach().double().requires_grad_() for x in (q, k, v)]
    expected = formula(*exact, allowed, keep, cpu_attention.dropout_probability(p), scale)
    expected_grads = torch.autograd.grad(expected, exact, grad_output)

    ours = [x.detach().requires_grad_() for x in (q, k, v)]
    output = cpu_attention.softmax_attention_dropout(*ours, allowed, p, scale, seed=seed)
    grads = torch.autograd.grad(output, ours, grad_output.to(dtype))
    assert output.dtype == dtype and all(g.dtype == dtype for g in grads)
    torch.testing.assert_close(output.double(), expected, atol=tolerance, rtol=tolerance)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, atol=tolerance, rtol=tolerance)
    if mask_kind == "per_query":  # the query with no key: output 0, no gradient
        assert output[0, :, 3].abs().max() == 0 and grads[0][0, :, 3].abs().max() == 0


@pytest.mark.parametrize("dim", [1, 8, 12, 64, 67])
def test_any_head_dim_without_dropout_is_pytorchs_attention(dim):
    """p = 0 keeps every weight: the kernel is then plain attention (PyTorch's SDPA in float64, the independent
    reference), at head dims below, at and above a vector width, on the row path (1, 8) and the blocked one."""
    q, k, v = inputs(batch=1, heads=2, n_q=9, n_k=17, dim=dim, dim_v=dim)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(cpu_attention.softmax_attention_dropout(q, k, v, None, 0.0), expected,
                               atol=1e-12, rtol=1e-12)


def test_the_seed_is_a_draw_of_torchs_generator():
    """torch.manual_seed reproduces the call and a saved RNG state (what the Trainer checkpoints) resumes it; each
    call draws a new seed."""
    q, k, v = inputs(dtype=torch.float32)
    torch.manual_seed(7)
    first = cpu_attention.softmax_attention_dropout(q, k, v, None, 0.5)
    state = torch.get_rng_state()
    second = cpu_attention.softmax_attention_dropout(q, k, v, None, 0.5)
    torch.set_rng_state(state)
    assert torch.equal(cpu_attention.softmax_attention_dropout(q, k, v, None, 0.5), second)
    assert not torch.equal(first, second)
    torch.manual_seed(7)
    seed = cpu_attention.draw_seed()
    assert torch.equal(cpu_attention.softmax_attention_dropout(q, k, v, None, 0.5, seed=seed), first)


def draws(count, shape, p):
    """count keep masks of shape (B, H, N_q, N_k), each with the next seed of torch's generator (as calls do)."""
    torch.manual_seed(0)
    return torch.stack([cpu_attention.keep_mask(*shape, p, cpu_attention.draw_seed()) for _ in range(count)])


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_masks_are_binomial_overall_and_per_position(p):
    """As strict as xformers' dropout test: over 1,000 calls the number of kept entries, overall and at every
    position, passes a two-sided binomial test at the kernel's keep probability (p > 1e-4)."""
    keep_probability = 1 - cpu_attention.dropout_probability(p)
    kept = draws(1000, (2, 2, 5, 20), p)
    overall = binomtest(int(kept.sum()), kept.numel(), keep_probability).pvalue
    assert overall > P_VALUE_FLOOR, overall
    per_position = kept.sum(dim=0).flatten().tolist()
    worst = min(binomtest(int(count), kept.shape[0], keep_probability).pvalue for count in per_position)
    assert worst > P_VALUE_FLOOR, worst


def test_the_masks_are_independent_across_heads_batch_items_calls_and_neighbouring_keys():
    """Entries that share everything but the head, the batch item, the call, or sit in the same generator word
    (keys j and j + calls) are both dropped with probability p^2 (binomial test, p > 1e-4); a shared or
    correlated stream would drop them together with probability up to p."""
    p = 0.5
    drop = ~draws(1000, (2, 2, 4, 32), p)
    p_drop = cpu_attention.dropout_probability(p)
    calls = 32 // 8
    pairs = {
        "heads": (drop[:, :, 0], drop[:, :, 1]),
        "batch items": (drop[:, 0], drop[:, 1]),
        "calls": (drop[:-1], drop[1:]),
        "same word": (drop[..., :calls], drop[..., calls:2 * calls]),
        "neighbouring keys": (drop[..., :-1], drop[..., 1:]),
        "neighbouring queries": (drop[..., :-1, :], drop[..., 1:, :]),
    }
    for name, (a, b) in pairs.items():
        both = int((a & b).sum())
        result = binomtest(both, a.numel(), p_drop**2).pvalue
        assert result > P_VALUE_FLOOR, (name, both / a.numel(), result)


def test_bad_inputs_are_refused_naming_the_problem():
    q, k, v = inputs(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        cpu_attention.softmax_attention_dropout(q, k, v, None, 1.0)
    with pytest.raises(TypeError, match="float32, bfloat16 or float64"):
        cpu_attention.softmax_attention_dropout(q.half(), k.half(), v.half(), None, 0.1)
    with pytest.raises(TypeError, match="boolean mask"):
        cpu_attention.softmax_attention_dropout(q, k, v, torch.ones(2, 1, 1, 21), 0.1)
    with pytest.raises(RuntimeError, match="must share the head dim"):
        cpu_attention.softmax_attention_dropout(q, k[..., :3], v, None, 0.1)
    with pytest.raises(RuntimeError, match="must share a dtype"):
        cpu_attention.softmax_attention_dropout(q, k.double(), v, None, 0.1)


@pytest.mark.slow
def test_the_custom_op_passes_torchs_op_checks(kernel_path):
    """Schema, fake (meta) kernels (shapes and strides, here of strided inputs) and autograd registration, as
    torch.compile relies on them; on both paths (the blocked one calls ATen's addmm inside the op)."""
    q, k, v = (x.detach().float().requires_grad_() for x in inputs())
    allowed, seed = masks("padding", 2, 13, 21), torch.tensor(11)
    torch.library.opcheck(torch.ops.hf_primaldual.attention_dropout_cpu.default, (q, k, v, allowed, 0.2, 0.4, seed))
    output, lse = torch.ops.hf_primaldual.attention_dropout_cpu(q, k, v, allowed, 0.2, 0.4, seed)
    torch.library.opcheck(torch.ops.hf_primaldual.attention_dropout_cpu_backward.default,
                          (torch.randn_like(output), q.detach(), k.detach(), v.detach(), output.detach(), lse,
                           allowed, 0.2, 0.4, seed))


@pytest.mark.slow
def test_torch_compile_keeps_the_kernel_in_one_graph():
    q, k, v = (x.detach().contiguous().float().requires_grad_() for x in inputs())
    seed = torch.tensor(5)

    def step(q, k, v):
        return cpu_attention.softmax_attention_dropout(q, k, v, None, 0.2, seed=seed).square().sum()

    expected = torch.autograd.grad(step(q, k, v), (q, k, v))
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    for got, want in zip(torch.autograd.grad(compiled(q, k, v), (q, k, v)), expected):
        torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------------------------------------------------
# The family's dropout through the kernel, and the fallback
# ----------------------------------------------------------------------------------------------------------------


def family_options(attention_type):
    return AttentionOptions(spec=parse_attention_type(attention_type), head_scales=(1, 2, 1, 4), attention_window=3)


@pytest.mark.parametrize("attention_type", ["softmax", "bn"])
def test_the_familys_dropout_is_the_formula_with_the_kernels_mask(attention_type):
    """softmax and BN (through its transformed q and k) with attention dropout equal the eager weights (no dropout)
    times the mask the kernel draws with the next seed of torch's generator, over (1 - p), times V."""
    q, k, v = inputs(batch=2, heads=4, n_q=24, n_k=24, dim=8, dim_v=8)
    key_mask = torch.arange(24)[None, :] < torch.tensor([[24], [17]])
    options = family_options(attention_type)
    _, weights = primal_dual_attention(q, k, v, options, key_mask, implementation="eager")
    p = 0.25
    torch.manual_seed(3)
    output, _ = primal_dual_attention(q, k, v, options, key_mask, dropout_p=p)
    torch.manual_seed(3)
    keep = cpu_attention.keep_mask(2, 4, 24, 24, p, cpu_attention.draw_seed())
    expected = ((weights * keep) / (1 - cpu_attention.dropout_probability(p))) @ v
    torch.testing.assert_close(output, expected, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("attention_type", ["softmax", "bn", "sh", "bn_sh", "sparse"])
@pytest.mark.parametrize("kernel_on", [True, False], ids=["kernel", "fallback"])
def test_the_familys_dropout_runs_the_kernel_or_the_fallback(attention_type, kernel_on):
    """With the switch on, every dropout call of the family is the kernel's op (no softmax, bernoulli or flash call);
    off, the fused-kernel path runs, as where the kernel cannot be built."""
    q, k, v = (x.float().requires_grad_() for x in inputs(batch=2, heads=4, n_q=192, n_k=192, dim=8, dim_v=8))
    with fast_paths(cpu_dropout_kernel=kernel_on), torch.profiler.profile() as profile:
        output, _ = primal_dual_attention(q, k, v, family_options(attention_type), dropout_p=0.1)
        output.sum().backward()
    ops = {event.name for event in profile.events()}
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    if kernel_on:
        assert OP in ops and f"{OP}_backward" in ops
        assert not ops & {flash, "aten::_softmax", "aten::bernoulli_"}, ops
    else:  # sparse attention's small blocks go to PyTorch's math kernel there
        assert OP not in ops and (flash in ops or attention_type == "sparse")


def test_stock_models_attention_dropout_runs_the_kernel():
    """A stock transformers model under primaldual_softmax, training with attention dropout, goes through it."""
    from transformers import BertConfig, BertForSequenceClassification

    import hf_primaldual  # noqa: F401  (registers the primaldual_<type> attention functions)

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                        vocab_size=100, attention_probs_dropout_prob=0.1)
    model = BertForSequenceClassification(config).train()
    model.set_attn_implementation("primaldual_softmax")
    with torch.profiler.profile() as profile:
        model(input_ids=torch.randint(0, 100, (2, 40)), labels=torch.tensor([0, 1])).loss.backward()
    assert OP in {event.name for event in profile.events()}


@pytest.mark.parametrize("dim", [33, 64, MAX_HEAD_DIM, MAX_HEAD_DIM + 1])
def test_head_dims_up_to_the_limit_run_the_kernel_and_larger_ones_the_path_before(dim):
    """Up to the head dim where the kernel was measured faster than PyTorch's math kernel (docs/PERFORMANCE.md) the
    family's dropout runs it; above, the path before it."""
    q, k, v = inputs(batch=1, heads=2, n_q=192, n_k=192, dim=dim, dim_v=dim, dtype=torch.float32)
    with torch.profiler.profile() as profile:
        primal_dual_attention(q, k, v, family_options("softmax"), dropout_p=0.1)
    assert (OP in {event.name for event in profile.events()}) == (dim <= MAX_HEAD_DIM)


def test_without_dropout_pytorchs_attention_runs_bit_for_bit(monkeypatch):
    """No dropout, training or not: PyTorch's attention, the same bits as a checkpoint's remote-code copy (which has
    no compiled kernel), and nothing to build."""
    monkeypatch.setattr(cpu_attention, "_load", lambda: pytest.fail("built or loaded the kernel"))
    monkeypatch.setattr(cpu_attention, "_tried", False)
    q, k, v = (x.float().requires_grad_() for x in inputs(batch=1, heads=2, n_q=16, n_k=16, dim=8, dim_v=8))
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.equal(primal_dual_attention(q, k, v, family_options("softmax"))[0], expected)


def test_where_the_kernel_cannot_be_built_the_fallback_runs(monkeypatch, tmp_path):
    """No source (a remote-code copy of the module) or the environment switch: not available, with the reason; the
    family's dropout then takes the fused-kernel path."""
    monkeypatch.setattr(cpu_attention, "_extension", None)
    monkeypatch.setattr(cpu_attention, "_tried", False)
    monkeypatch.setattr(cpu_attention, "SOURCE", tmp_path / "missing.cpp")
    assert not cpu_attention.kernel_available()
    assert "missing.cpp" in cpu_attention.unavailable_reason()
    q, k, v = inputs(batch=2, heads=4, n_q=192, n_k=192, dim=8, dim_v=8, dtype=torch.float32)
    with torch.profiler.profile() as profile:
        primal_dual_attention(q, k, v, family_options("softmax"), dropout_p=0.1)
    ops = {event.name for event in profile.events()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops and OP not in ops


@pytest.mark.slow
def test_the_environment_switch_turns_the_kernel_off_for_a_whole_run():
    code = ("from hf_primaldual import cpu_attention, attention_kernels as a;"
            "print(cpu_attention.kernel_available(), a.FAST_PATHS.cpu_dropout_kernel, cpu_attention.unavailable_reason())")
    env = {**os.environ, cpu_attention.ENVIRONMENT_SWITCH: "0"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip() == f"False False {cpu_attention.ENVIRONMENT_SWITCH}=0 is set", result.stderr[-2000:]
