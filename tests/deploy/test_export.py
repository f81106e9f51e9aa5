"""Export for every attention: torch.export and ONNX (torch.onnx.export(dynamo=True) through hf_primaldual.export) of
both families and of stock ViT, BERT and Llama under every primaldual_<type> their structure allows, with dynamic
batch and sequence axes and padding masks; ONNX Runtime (CPU) gives eager PyTorch's logits within 1e-5 at batch
sizes and lengths other than the example's.

Exporting is slow on 2 cores (10-30 s a model): where a model is checked under several types at once, it holds one
type per layer, each layer running its type's code exactly as a model of that type alone does."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deploy.tiny_models import LENGTH, TYPES, stock_bert, stock_llama, stock_vit, timeseries, vit
from hf_primaldual.attention import AttentionOptions
from hf_primaldual.export import dynamic_shapes_for, export_onnx, export_program, shortest_sequence

onnxruntime = pytest.importorskip("onnxruntime", reason="the deploy extra: pip install -c constraints.txt -e '.[deploy]'")

pytestmark = pytest.mark.slow  # each export takes 10-60 s on 2 shared cores

# The linear kernel's SH types export with a fixed length: torch.export cannot follow matmul's folding of their
# pooled key axis for a symbolic length (docs/DEPLOY.md).
FIXED_LENGTH = ["linear_sh", "linear_bn_sh"]
DYNAMIC_LENGTH = [t for t in TYPES if t not in FIXED_LENGTH]
# A causal model's queries see different keys: SH and the linear kernel's BN are refused there (eagerly too).
CAUSAL = ["softmax", "linear", "sparse", "bn"]


def one_type_per_layer(build, types):
    """The model ``build`` gives, with as many layers as ``types`` and layer ``i`` running ``types[i]``."""
    torch.manual_seed(0)
    model, inputs = build(types[0], num_hidden_layers=len(types))
    if build in (timeseries, vit):
        layers = model.model.layers if build is timeseries else model.vit.layers
        for layer, attention_type in zip(layers, types):
            config = copy.copy(model.config)
            config.attention_type = attention_type
            layer.attention.options = AttentionOptions.from_config(config)
    else:
        for attention, attention_type in zip(attention_modules(model), types):
            config = copy.copy(model.config)
            config._attn_implementation = f"primaldual_{attention_type}"
            attention.config = config
    inputs.pop("labels")
    return model.eval(), inputs


def attention_modules(model):
    return [m for name, m in model.named_modules()
            if name.endswith(("attention.self", "attention.attention", "self_attn"))]


def other_inputs(inputs: dict, length: int) -> dict:
    """A batch of 3 (and 1: the example's batch is 2) at ``length``, padded unevenly, ``inputs``' kinds."""
    generator = torch.Generator().manual_seed(1)
    if "pixel_values" in inputs:
        return {"pixel_values": torch.randn(3, *inputs["pixel_values"].shape[1:], generator=generator)}
    mask = torch.ones(3, length, dtype=torch.long)
    mask[0, length - 3:] = 0
    mask[2, length - 1:] = 0
    if "past_values" in inputs:
        values = torch.randn(3, length, inputs["past_values"].shape[-1], generator=generator)
        return {"past_values": values, "attention_mask": mask}
    return {"input_ids": torch.randint(0, 50, (3, length), generator=generator), "attention_mask": mask}


def assert_onnxruntime_matches_eager(model, inputs, path, lengths, dynamic_shapes=None):
    export_onnx(model, inputs, path, dynamic_shapes=dynamic_shapes)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(inputs)
    for length in lengths:
        batch = other_inputs(inputs, length)
        for rows in (slice(None), slice(1, 2)):
            given = {name: tensor[rows] for name, tensor in batch.items()}
            with torch.no_grad():
                expected = model(**given).logits.numpy()
            (logits,) = session.run(["logits"], {name: tensor.numpy() for name, tensor in given.items()})
            np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)


# Every type on the package's time-series classifier; on stock BERT what the registered function adds (its padding
# mask as the family's key mask, SH's layout inferred from the config): the kernels' paths are the same code.
SEQUENCE_CASES = [(timeseries, t) for t in TYPES] + [(stock_bert, t) for t in ("softmax", "bn_sh")]


@pytest.mark.parametrize(("build", "attention_type"), SEQUENCE_CASES,
                         ids=[f"{b.__name__}-{t}" for b, t in SEQUENCE_CASES])
def test_sequence_models_export_to_onnx_with_dynamic_batch_and_length(build, attention_type, tmp_path):
    model, inputs = one_type_per_layer(build, [attention_type])
    if attention_type in FIXED_LENGTH:
        batch_only = {name: {0: torch.export.Dim("batch")} for name in inputs}
        assert_onnxruntime_matches_eager(model, inputs, tmp_path / "model.onnx", [LENGTH], batch_only)
    else:
        # SH's largest scale + 2 (the series' default for 4 heads goes to 4, BERT's settings to 2)
        assert shortest_sequence(model) == ((6 if build is timeseries else 4) if "sh" in attention_type else 1)
        assert_onnxruntime_matches_eager(model, inputs, tmp_path / "model.onnx", lengths=[LENGTH, 7])


def test_a_causal_model_exports_under_every_type_it_takes(tmp_path):
    model, inputs = one_type_per_layer(stock_llama, CAUSAL)
    assert_onnxruntime_matches_eager(model, inputs, tmp_path / "model.onnx", lengths=[LENGTH, 7])


# The types that cover the grid's paths (SH pooling on the patch grid with a class token, BN on pooled keys, the
# linear kernel, the window over the flattened grid), one per layer.
IMAGE_TYPES = ["bn_sh", "linear_bn_sh", "sparse"]


@pytest.mark.parametrize("build", [vit, stock_vit], ids=["PrimalDualViT", "stock ViT"])
def test_image_models_export_with_a_dynamic_batch(build, tmp_path):
    model, inputs = one_type_per_layer(build, IMAGE_TYPES)
    assert_onnxruntime_matches_eager(model, inputs, tmp_path / "model.onnx", lengths=[None])


def test_an_exported_program_refuses_what_eager_refuses():
    """Inside the graph the input checks are assertions: the torch.export program refuses NaN values and a
    sequence without a real step, as the eager model does (ONNX drops them: docs/DEPLOY.md)."""
    torch.manual_seed(0)
    model, inputs = timeseries("bn")
    inputs.pop("labels")
    program = export_program(model.eval(), inputs).module()
    values, mask = other_inputs(inputs, LENGTH).values()
    torch.testing.assert_close(program(values, mask)[0], model(past_values=values, attention_mask=mask).logits)
    with pytest.raises(RuntimeError, match="contains NaN or inf"):
        program(values.index_fill(1, torch.tensor([2]), float("nan")), mask)
    with pytest.raises(RuntimeError, match="no real token"):
        program(values, mask.index_fill(0, torch.tensor([1]), 0))


def test_bad_export_requests_say_what_to_change(tmp_path):
    model, inputs = timeseries("softmax")
    inputs.pop("labels")
    with pytest.raises(ValueError, match="training mode: call model.eval"):
        export_program(model.train(), inputs)
    with pytest.raises(ValueError, match="outside the lengths the export is for"):
        dynamic_shapes_for({"past_values": torch.randn(2, 40, 3)}, max_length=LENGTH)
    with pytest.raises(ValueError, match="not among the inputs"):
        export_program(model.eval(), inputs, dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}})
