"""Compiled training: the masked batch norm is BatchNorm1d over the real steps, and a training step (forward and
backward, attention dropout on, padding masks on) compiles without a graph break for both families and for stock
models under every registered ``primaldual_<type>``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounterWithBackend

from deploy.tiny_models import TYPES, stock_bert, stock_llama, stock_vit, timeseries, vit
from hf_primaldual.modeling_primaldual_timeseries import MaskedBatchNorm


@pytest.mark.parametrize("momentum", [0.1, None])
def test_masked_batch_norm_is_batch_norm_over_the_real_steps(momentum):
    torch.manual_seed(0)
    layer = MaskedBatchNorm(6, 1e-5).double().train()
    layer.norm.momentum = momentum
    with torch.no_grad():
        layer.norm.weight.normal_()
        layer.norm.bias.normal_()
    reference = copy.deepcopy(layer.norm)  # torch's BatchNorm1d, fed the real steps alone
    for _ in range(3):  # three steps: the running statistics' updates compound
        hidden = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
        mask = torch.rand(3, 7) > 0.4
        gathered = hidden.detach().clone().requires_grad_()
        expected = torch.zeros_like(gathered).index_put((mask,), reference(gathered[mask]))
        output = layer(hidden, mask)
        torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
        assert (output[~mask] == 0).all()
        grad = torch.randn_like(output)
        (output * grad).sum().backward()
        (expected * grad).sum().backward()
        torch.testing.assert_close(hidden.grad, gathered.grad, rtol=0, atol=1e-12)
        for name in ("weight", "bias"):
            torch.testing.assert_close(getattr(layer.norm, name).grad, getattr(reference, name).grad)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            torch.testing.assert_close(getattr(layer.norm, name), getattr(reference, name), rtol=0, atol=1e-14)
        layer.zero_grad()
        reference.zero_grad()


def test_masked_batch_norm_in_half_precision_keeps_float32_statistics():
    torch.manual_seed(0)
    layer = MaskedBatchNorm(4, 1e-5).train()
    hidden = torch.randn(2, 9, 4) * 50 + 1000  # a large mean: bfloat16 sums would lose the variance
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    expected = copy.deepcopy(layer)(hidden, mask)
    output = layer.to(torch.bfloat16)(hidden.to(torch.bfloat16), mask)
    assert output.dtype == torch.bfloat16
    # bfloat16 holds 1000 +- 50 to about 4 units: the normalised values to about 0.1
    torch.testing.assert_close(output.float(), expected, rtol=0, atol=0.15)


# ----------------------------------------------------------------------------------------------------------------
# A training step in one graph
# ----------------------------------------------------------------------------------------------------------------

# Every type on the two models with padding masks (the family's and transformers' masks through the registered
# function); on the others the types that cover their remaining paths (grid pooling, BN, the window, the causal
# mask), to keep the suite's time down. A causal model's queries see different keys: SH and the linear kernel's BN
# are refused there (eagerly too).
CASES = [(build, t) for build in (timeseries, stock_bert) for t in TYPES] + [
    (vit, "bn_sh"), (vit, "linear_bn_sh"), (vit, "sparse"), (stock_vit, "bn_sh"), (stock_vit, "linear_sh"),
    (stock_llama, "bn"), (stock_llama, "linear"), (stock_llama, "sparse")]


@pytest.mark.slow  # 26 dynamo + AOTAutograd traces, 5-15 s each on 2 shared cores
@pytest.mark.parametrize(("build", "attention_type"), CASES, ids=[f"{b.__name__}-{t}" for b, t in CASES])
def test_a_training_step_compiles_into_one_graph(build, attention_type):
    """fullgraph=True refuses any graph break; AOTAutograd traces the backward from the same graph, which fails on
    a data-dependent shape (what the gathering batch norm had: IndexPutBackward0)."""
    torch.manual_seed(0)
    model, inputs = build(attention_type)
    model.train()
    model.config.problem_type = "single_label_classification" if "labels" in inputs and inputs["labels"].dim() == 1 \
        else None  # set by the loss on the first call otherwise: a recompile, not a break
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True)
    loss = compiled(**inputs).loss
    loss.backward()
    assert counter.frame_count == 1
    assert torch.isfinite(loss)
    trained = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained)
    # the same step compiled again: no recompile (a guard on a value would show here)
    compiled(**inputs).loss.backward()
    assert counter.frame_count == 1
