"""Under torch.compile the models refuse what they refuse eagerly (NaN inputs, an additive 0/-inf mask given as the
padding mask, an all-padding sequence, out-of-range labels), without breaking the graph to check."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from hf_primaldual import PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesForClassification

pytestmark = pytest.mark.slow  # compiling takes tens of seconds on 2 cores


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = PrimalDualTimeSeriesConfig(num_input_channels=3, max_sequence_length=16, hidden_size=16,
                                        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                        num_labels=4, attention_type="bn_sh")
    return PrimalDualTimeSeriesForClassification(config).eval()


@pytest.fixture(scope="module")
def compiled(model):
    torch._dynamo.reset()
    return torch.compile(model)


def good_inputs():
    return {"past_values": torch.randn(2, 16, 3), "attention_mask": torch.ones(2, 16, dtype=torch.long),
            "labels": torch.tensor([0, 3])}


BAD = {
    "nan": ({"past_values": torch.full((2, 16, 3), float("nan"))}, "contains NaN or inf"),
    "additive mask": ({"attention_mask": torch.zeros(2, 16).index_fill_(1, torch.arange(12, 16), float("-inf"))},
                      "must hold 1 \\(attend\\) and 0 \\(padding\\)"),
    "all padding": ({"attention_mask": torch.ones(2, 16, dtype=torch.long).index_fill_(0, torch.tensor([1]), 0)},
                    "no real token"),
    "label out of range": ({"labels": torch.tensor([0, 9])}, "out of range for num_labels=4"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_compiled_refuses_what_eager_refuses(model, compiled, case):
    change, message = BAD[case]
    inputs = {**good_inputs(), **change}
    with pytest.raises(ValueError, match=message):
        model(**inputs)
    assert torch.isfinite(compiled(**good_inputs()).logits).all()
    with pytest.raises(RuntimeError, match=message):
        compiled(**inputs)


def test_the_checks_do_not_break_the_graph(model):
    explanation = torch._dynamo.explain(model)(**good_inputs())
    assert explanation.graph_break_count == 0, explanation.break_reasons
