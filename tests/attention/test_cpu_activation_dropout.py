"""The elementwise dropout of the compiled CPU kernel (``cpu_attention.dropout``, the models' activation dropouts):
its mask against the documented Philox layout computed here one generator call at a time (the generator itself is
checked against Philox's published answers in test_cpu_dropout_kernel.py), the output and gradient against
``x * keep / (1 - p)`` with that mask, the masks against the binomial law and independent across calls, neighbours
and rows, seeded runs reproduced, and the time-series model's dropout layers on it or on PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import binom, binomtest

from hf_primaldual import PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesForClassification, cpu_attention
from hf_primaldual.attention_kernels import dropout, fast_paths

P_VALUE_FLOOR = 1e-4


@pytest.fixture(scope="module", autouse=True)
def kernel():
    if not cpu_attention.kernel_available():
        pytest.skip(f"the CPU attention kernel is not available here: {cpu_attention.unavailable_reason()}")


def documented_keep(numel: int, p: float, seed: int) -> torch.Tensor:
    """The keep mask of `cpu_attention.dropout`'s documentation: rows of `dropout_row()` elements, element f of row
    r kept where lane f // calls of Philox((f % calls, r mod 2^32, r // 2^32, 0xFFFFFFFF), seed) >= round(p 2^16)."""
    row, threshold, seed_bits = cpu_attention.dropout_row(), round(p * 65536), seed & (1 << 64) - 1
    keep = torch.zeros(numel, dtype=torch.bool)
    for r, start in enumerate(range(0, numel, row)):
        length = min(row, numel - start)
        calls = -(-length // 8)
        for c in range(calls):
            words = cpu_attention.philox4x32_10((c, r & 0xFFFFFFFF, r >> 32, 0xFFFFFFFF),
                                                (seed_bits & 0xFFFFFFFF, seed_bits >> 32))
            for lane in range(8):
                f = lane * calls + c
                if f < length:
                    keep[start + f] = (words[lane // 2] >> (16 * (lane % 2)) & 0xFFFF) >= threshold
    return keep


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 0.0), (torch.float32, 1e-7), (torch.bfloat16, 8e-3)],
                         ids=["float64", "float32", "bfloat16"])
def test_output_and_gradient_are_the_formula_with_the_documented_mask(dtype, tolerance):
    """Two rows, the second partial (4,096 + 404 elements, in a strided view): y = x * keep / (1 - p) and
    dL/dx = dL/dy * keep / (1 - p), the same mask."""
    p, seed = 0.3, 0x0123_4567_89AB_CDEF
    base = torch.randn(90, 50, dtype=torch.float64)
    x = base.to(dtype).t().requires_grad_()  # (50, 90), not contiguous: the mask follows the logical order
    keep = documented_keep(x.numel(), p, seed).view(50, 90)
    scale = 1 / (1 - cpu_attention.dropout_probability(p))
    output = cpu_attention.dropout(x, p, seed=seed)
    expected = x.detach().double() * keep * scale
    torch.testing.assert_close(output.double(), expected, atol=0.0, rtol=tolerance)
    grad = torch.randn(50, 90, dtype=torch.float64).to(dtype)
    output.backward(grad)
    torch.testing.assert_close(x.grad.double(), grad.double() * keep * scale, atol=0.0, rtol=tolerance)


def test_a_seeded_run_is_reproduced_and_each_call_draws_a_new_mask():
    x = torch.randn(3, 1000)
    torch.manual_seed(4)
    first = dropout(x, 0.5)
    state = torch.get_rng_state()
    second = dropout(x, 0.5)
    torch.set_rng_state(state)  # what the Trainer's saved RNG state does on resume
    assert torch.equal(dropout(x, 0.5), second)
    assert not torch.equal(first, second)
    torch.manual_seed(4)
    assert torch.equal(cpu_attention.dropout(x, 0.5, seed=cpu_attention.draw_seed()), first)


def keep_draws(count: int, numel: int, p: float) -> torch.Tensor:
    """count masks of numel elements, each with the next seed of torch's generator (as calls do)."""
    torch.manual_seed(0)
    ones = torch.ones(numel, dtype=torch.float64)
    return torch.stack([cpu_attention.dropout(ones, p) != 0 for _ in range(count)])


def two_sided_binomial_p(counts: np.ndarray, trials: int, probability: float) -> np.ndarray:
    return np.minimum(1.0, 2 * np.minimum(binom.cdf(counts, trials, probability),
                                          binom.sf(counts - 1, trials, probability)))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_the_masks_are_binomial_overall_and_per_position(p):
    """Over 1,000 calls of two rows (4,096 + 300 elements): the kept count overall passes a two-sided binomial test
    at the keep probability, and so does the count at each of 400 positions (lane boundaries and both rows' ends
    among them), p > 1e-4."""
    keep_probability = 1 - cpu_attention.dropout_probability(p)
    kept = keep_draws(1000, 4096 + 300, p)
    assert binomtest(int(kept.sum()), kept.numel(), keep_probability).pvalue > P_VALUE_FLOOR
    calls = 4096 // 8
    positions = sorted({*range(0, 64), *range(calls - 8, calls + 8), *range(4096 - 64, 4096 + 64),
                        *range(4096 + 300 - 64, 4096 + 300), *range(100, 4096, 37)})[:400]
    worst = two_sided_binomial_p(kept[:, positions].sum(dim=0).numpy(), kept.shape[0], keep_probability).min()
    assert worst > P_VALUE_FLOOR, worst


def test_the_masks_are_independent_across_calls_neighbours_words_and_rows():
    """Element pairs that share all but the call, sit side by side, share a generator word (f and f + calls) or
    share their place in two rows are both dropped with probability p^2 (binomial test, p > 1e-4)."""
    p, row = 0.5, cpu_attention.dropout_row()
    drop = ~keep_draws(1000, 2 * row, p)
    calls = row // 8
    pairs = {
        "calls": (drop[:-1], drop[1:]),
        "neighbours": (drop[:, :-1], drop[:, 1:]),
        "same word": (drop[:, :calls], drop[:, calls:2 * calls]),
        "rows": (drop[:, :row], drop[:, row:]),
    }
    p_drop = cpu_attention.dropout_probability(p)
    for name, (a, b) in pairs.items():
        both = int((a & b).sum())
        result = binomtest(both, a.numel(), p_drop**2).pvalue
        assert result > P_VALUE_FLOOR, (name, both / a.numel(), result)


def test_bad_inputs_are_refused_naming_the_problem():
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\)"):
        cpu_attention.dropout(torch.ones(4), 1.0)
    with pytest.raises(TypeError, match="float32, bfloat16 or float64"):
        cpu_attention.dropout(torch.ones(4, dtype=torch.float16), 0.1)


def tiny_model() -> PrimalDualTimeSeriesForClassification:
    config = PrimalDualTimeSeriesConfig(num_input_channels=3, max_sequence_length=20, hidden_size=16,
                                        num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                                        num_labels=4, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0)
    return PrimalDualTimeSeriesForClassification(config)


@pytest.mark.parametrize("switch, kernel_on", [("cpu_dropout_kernel", True), ("cpu_dropout_kernel", False),
                                               ("cpu_activation_dropout", False)],
                         ids=["kernel", "fallback", "activation-switch-off"])
def test_the_time_series_models_dropouts_run_the_kernel_in_training_only(switch, kernel_on, monkeypatch):
    """Training on CPU: every activation dropout is the kernel's (no bernoulli_), or PyTorch's with either switch
    off; in eval mode none runs and the output is deterministic."""
    calls = []
    kernel_dropout = cpu_attention.dropout
    monkeypatch.setattr(cpu_attention, "dropout", lambda *args, **kwargs: calls.append(1) or kernel_dropout(*args, **kwargs))
    model, values = tiny_model().train(), torch.randn(4, 20, 3)
    with fast_paths(**{switch: kernel_on}), torch.profiler.profile() as profile:
        model(past_values=values, labels=torch.tensor([0, 1, 2, 3])).loss.backward()
    bernoulli = "aten::bernoulli_" in {event.name for event in profile.events()}
    # the embeddings, three per layer (attention output, FFN hidden, FFN output), the head
    assert (len(calls), bernoulli) == ((1 + 3 * 2 + 1, False) if kernel_on else (0, True))
    model.eval()
    calls.clear()
    with torch.no_grad():
        assert torch.equal(model(past_values=values).logits, model(past_values=values).logits)
    assert not calls


@pytest.mark.slow
def test_the_custom_op_passes_torchs_op_checks_and_compiles_to_the_eager_result():
    """Under torch.compile the dropout is the registered custom op (schema, fake kernel and autograd checked), its
    seed drawn in the graph: one graph, and the eager path's result for the same generator state."""
    x = torch.randn(30, 50, requires_grad=True)
    torch.library.opcheck(torch.ops.hf_primaldual.dropout_cpu.default, (x, 0.2, torch.tensor(3)))

    def step(x):
        return dropout(x, 0.2).square().sum()

    torch.manual_seed(1)
    expected = torch.autograd.grad(step(x), x)[0]
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.manual_seed(1)
    torch.testing.assert_close(torch.autograd.grad(compiled(x), x)[0], expected)
