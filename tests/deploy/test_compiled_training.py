"""Compiled training: the masked batch norm is BatchNorm1d over the real steps, and a training step (forward and
backward, attention dropout on, padding masks on) compiles without a graph break for both families and for stock
models under every registered ``primaldual_<type>``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
from torch import nn

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
