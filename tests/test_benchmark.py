"""scripts/benchmark.py in its smoke version (no timing asserts), the explicit attention path running only when it
is asked for, and the optimised attention paths giving what the general ones give."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification, attention
from hf_primaldual.attention import (
    ATTENTION_TYPES,
    AttentionOptions,
    TokenLayout,
    batch_normalize_queries_keys,
    parse_attention_type,
    pool_keys_values,
    primal_dual_attention,
)

REPO = Path(__file__).resolve().parents[1]
ALL_TYPES = list(ATTENTION_TYPES)
SOFTMAX_KERNEL_TYPES = [name for name, spec in ATTENTION_TYPES.items() if spec.kernel == "softmax"]


def load_benchmark_module():
    spec = importlib.util.spec_from_file_location("primaldual_benchmark", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The command line's smoke run, once: its output folder and stdout."""
    output = tmp_path_factory.mktemp("benchmark")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--smoke", "--output_dir", str(output)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return output, result.stdout


def test_smoke_run_writes_the_tables_and_the_plots(smoke_run):
    output, stdout = smoke_run
    report = (output / "results.md").read_text()
    for section in ("## ViT training step", "## Attention layer", "## Time-series classifier training step",
                    "## Explicit path only when asked", "## Targets"):
        assert section in report
    for plot in ("attention_time.png", "attention_memory.png"):
        path = output / plot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    assert "Targets (ratios measured in this run):" in stdout


def test_smoke_run_covers_every_attention_type(smoke_run):
    output, _ = smoke_run
    results = json.loads((output / "results.json").read_text())
    assert {row["model"] for row in results["vit"]} == {"transformers ViT (sdpa)", *ALL_TYPES}
    assert all(row["same_weights_same_logits"] for row in results["vit"])
    sweep = [row for row in results["attention"] if row["run"] == "sweep"]
    for length in {row["length"] for row in sweep}:
        assert {row["attention_type"] for row in sweep if row["length"] == length} == set(ALL_TYPES)
    dropout = [row for row in results["attention"] if row["run"] == "dropout"]
    assert {row["attention_type"] for row in dropout} == {"torch SDPA", "softmax", "bn", "sh", "bn_sh"}
    assert all(row["dropout"] == 0.1 and row["speedup_vs_torch_sdpa"] > 0 for row in dropout)
    assert {row["attention_type"] for row in results["timeseries"]} == set(ALL_TYPES)
    for row in results["attention"]:
        assert row["forward_ms"] > 0 and row["forward_backward_peak_mb"] > 0 and row["forward_gflop"] > 0
    for row in results["vit"] + results["timeseries"]:
        assert row["step_ms"] > 0 and row["peak_mb"] > 0
    assert all(row["fast_path_fused"] and row["explicit_path_when_asked"] for row in results["explicit_path"])


def test_benchmark_functions_are_importable_and_return_rows():
    benchmark = load_benchmark_module()
    settings = benchmark.Settings.smoke()
    rows = benchmark.benchmark_attention(settings, ["softmax", "sh"], log=lambda _: None)
    assert {(row["length"], row["attention_type"]) for row in rows} == {
        (n, t) for n in settings.attention_lengths for t in ("softmax", "sh")
    }
    # SH's analytic FLOPs: heads at scale s see N / s keys
    full = benchmark.attention_flops("softmax", 1024, 8, (1,) * 8)
    assert benchmark.attention_flops("sh", 1024, 8, (1, 1, 2, 2, 4, 4, 8, 8)) < 0.5 * full
    assert benchmark.attention_flops("linear", 4096, 8, (1,) * 8) < benchmark.attention_flops("softmax", 4096, 8, (1,) * 8) / 50


def test_peak_memory_measures_the_tensors_a_call_allocates():
    benchmark = load_benchmark_module()
    x = torch.ones(1024, 256)  # 1 MiB

    def two_temporaries():
        a = x * 2
        b = a + 1  # both live: 2 MiB
        del a
        return b.sum()

    peak = benchmark.peak_memory_bytes(two_temporaries)
    assert 2 * 2**20 <= peak < 2.1 * 2**20


# ----------------------------------------------------------------------------------------------------------------
# The explicit path runs only when asked for
# ----------------------------------------------------------------------------------------------------------------


def options_for(attention_type: str, heads: int = 4) -> AttentionOptions:
    return AttentionOptions(spec=parse_attention_type(attention_type), head_scales=(1, 2, 4, 1)[:heads],
                            attention_window=3)


def qkv(batch=2, heads=4, length=40, dim=8):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, length, heads, dim, generator=generator).transpose(1, 2) for _ in range(3)]


@pytest.mark.parametrize("attention_type", SOFTMAX_KERNEL_TYPES)
@pytest.mark.parametrize("padded", [False, True], ids=["dense", "padded"])
def test_softmax_kernel_takes_the_fused_branch_unless_weights_are_asked_for(attention_type, padded):
    q, k, v = qkv()
    key_mask = (torch.arange(40)[None, :] < torch.tensor([[40], [23]])) if padded else None
    options = options_for(attention_type)
    softmax_calls = []
    original_softmax = torch.Tensor.softmax

    def counting_softmax(self, *args, **kwargs):
        softmax_calls.append(self.shape)
        return original_softmax(self, *args, **kwargs)

    sdpa = mock.patch.object(attention.F, "scaled_dot_product_attention",
                             wraps=torch.nn.functional.scaled_dot_product_attention)
    matmul = mock.patch.object(torch, "matmul", wraps=torch.matmul)
    softmax = mock.patch.object(torch.Tensor, "softmax", counting_softmax)
    with sdpa as fused, matmul as explicit_matmul, softmax:
        primal_dual_attention(q, k, v, options, key_mask)
        assert fused.call_count >= 1
        assert explicit_matmul.call_count == 0 and not softmax_calls
        fused.reset_mock()
        _, weights = primal_dual_attention(q, k, v, options, key_mask, need_weights=True)
        assert weights.shape == (2, 4, 40, 40)
        assert fused.call_count == 0 and explicit_matmul.call_count >= 2 and softmax_calls


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_fast_path_runs_no_explicit_softmax_op(attention_type):
    """The same from the op names torch.profiler records, for every type (linear types have no softmax at all)."""
    benchmark = load_benchmark_module()
    fast = benchmark.attention_ops(attention_type, need_weights=False)
    explicit = benchmark.attention_ops(attention_type, need_weights=True)
    assert not fast & {"aten::softmax", "aten::_softmax", "aten::_safe_softmax"}
    if parse_attention_type(attention_type).kernel == "softmax":
        assert not fast & {"aten::matmul", "aten::bmm"}
        assert any("scaled_dot_product" in op for op in fast)
        assert explicit & {"aten::softmax", "aten::_softmax"}


@pytest.mark.parametrize("attention_type", ["softmax", "bn_sh", "sparse", "linear"])
def test_model_asks_for_the_explicit_path_only_with_output_attentions(attention_type):
    config = PrimalDualViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                                 image_size=32, patch_size=8, num_labels=5, attention_type=attention_type)
    model = PrimalDualViTForImageClassification(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    with mock.patch.object(attention, "primal_dual_attention", wraps=attention.primal_dual_attention) as spy:
        model(pixels)
        assert spy.call_count == 2 and all(call.args[6] is False for call in spy.call_args_list)
        spy.reset_mock()
        model(pixels, output_attentions=True)
        assert spy.call_count == 2 and all(call.args[6] is True for call in spy.call_args_list)


# ----------------------------------------------------------------------------------------------------------------
# The optimised paths give what the general ones give
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize(
    "layout, length",
    [(TokenLayout(), 23), (TokenLayout(1), 24), (TokenLayout(0, (6, 6)), 36), (TokenLayout(1, (5, 7)), 36),
     (TokenLayout(1, (8, 8)), 65)],
    ids=["1d", "1d+cls", "grid", "partial-grid+cls", "grid+cls"],
)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_unmasked_pooling_fast_paths_match_the_masked_general_path(layout, length, scale, mode):
    """Without a key mask, pooling takes strided reductions / avg_pool2d; an all-real mask takes the general
    gather-the-windows path. Values and gradients agree."""
    generator = torch.Generator().manual_seed(scale)
    base = torch.randn(2, length, 3, 4, 4, generator=generator, dtype=torch.float64)
    key, value = [base[:, :, i].transpose(1, 2)[:, 1:3].detach().requires_grad_() for i in range(2)]
    everything_real = torch.ones(2, length, dtype=torch.bool)
    fast = pool_keys_values(key, value, None, scale, layout, mode)
    general = pool_keys_values(key, value, everything_real, scale, layout, mode)
    assert fast[2] is None and general[2].all()
    torch.testing.assert_close(fast[3], general[3])
    for a, b in zip(fast[:2], general[:2]):
        torch.testing.assert_close(a, b)
        assert a.stride(-1) == 1  # what the fused kernel needs to stay on its fast path
    weights = torch.randn(fast[0].shape, generator=generator, dtype=torch.float64)
    grads_fast = torch.autograd.grad((fast[0] * weights).sum() + fast[1].square().sum(), (key, value))
    grads_general = torch.autograd.grad((general[0] * weights).sum() + general[1].square().sum(), (key, value))
    for a, b in zip(grads_fast, grads_general):
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
        nq, nk = normalise(q, k, key_mask, 1e-3, mean_weight, use_std)
        s = nq @ nk.transpose(-1, -2)
        return s, torch.autograd.grad((s * upstream).sum(), (q, k))

    folded, folded_grads = scores(attention._batch_normalize_for_dot_product)
    plain, plain_grads = scores(batch_normalize_queries_keys)
    torch.testing.assert_close(folded, plain)
    for a, b in zip(folded_grads, plain_grads):
        torch.testing.assert_close(a, b)
