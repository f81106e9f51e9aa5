"""The ViT and time-series models: checkpoint interoperability with transformers' ViT, Auto classes, outputs,
padding, config and input validation, gradient checkpointing, bf16."""

from __future__ import annotations

import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hf_primaldual import (
    ATTENTION_TYPES,
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualTimeSeriesModel,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
    PrimalDualViTModel,
)

ALL_TYPES = list(ATTENTION_TYPES)
# transformers' configs are strict dataclasses: their validators' ValueErrors arrive wrapped, message kept.
CONFIG_ERRORS = (ValueError, StrictDataclassError)
TINY_VIT = dict(
    hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32, patch_size=8,
    num_labels=5,
)
TINY_TS = dict(
    num_input_channels=3, max_sequence_length=24, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
    intermediate_size=32, num_labels=4, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    attention_window=3,
)


def images(batch=2, size=32, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """A random transformers ViTForImageClassification saved to disk (the format of ViT and DeiT on the Hub)."""
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(**TINY_VIT, qkv_bias=True)).eval()
    path = tmp_path_factory.mktemp("vit")
    model.save_pretrained(path)
    return path, model


def test_vit_checkpoint_loads_with_softmax_and_gives_the_same_logits(vit_checkpoint):
    path, reference = vit_checkpoint
    model, info = PrimalDualViTForImageClassification.from_pretrained(
        path, attention_type="softmax", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = images()
    torch.testing.assert_close(model.eval()(x).logits, reference(x).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention_type", ["bn", "sh", "bn_sh", "linear_bn_sh", "sparse"])
def test_vit_checkpoint_loads_with_every_weight_for_the_new_attentions(vit_checkpoint, attention_type):
    path, reference = vit_checkpoint
    model, info = PrimalDualViTForImageClassification.from_pretrained(
        path, attention_type=attention_type, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.attention_type == attention_type
    torch.testing.assert_close(model.classifier.weight, reference.classifier.weight)
    torch.testing.assert_close(model.vit.layers[1].attention.q_proj.weight, reference.vit.layers[1].attention.q_proj.weight)


def test_primaldual_softmax_checkpoint_loads_back_into_transformers_vit(tmp_path):
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT)).eval()
    model.save_pretrained(tmp_path)
    vit, info = ViTForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x = images()
    torch.testing.assert_close(vit.eval()(x).logits, model(x).logits, atol=1e-5, rtol=0)


@pytest.mark.slow  # a training run
def test_fine_tuning_a_vit_checkpoint_as_bn_reduces_the_loss(vit_checkpoint):
    path, _ = vit_checkpoint
    model = PrimalDualViTForImageClassification.from_pretrained(path, attention_type="bn").train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, labels = images(batch=8, seed=1), torch.arange(8) % 5
    losses = []
    for _ in range(15):
        loss = model(x, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "config_class, model_class, auto_class",
    [
        (PrimalDualViTConfig, PrimalDualViTModel, AutoModel),
        (PrimalDualViTConfig, PrimalDualViTForImageClassification, AutoModelForImageClassification),
        (PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesModel, AutoModel),
        (PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesForClassification, AutoModelForSequenceClassification),
    ],
)
def test_auto_classes_resolve_the_models(config_class, model_class, auto_class):
    config = AutoConfig.for_model(config_class.model_type, num_hidden_layers=1)
    assert type(config) is config_class
    assert type(auto_class.from_config(config)) is model_class


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_vit_outputs_for_every_type(attention_type):
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type=attention_type)).eval()
    x = images()
    fast = model(x)
    model.set_attn_implementation("eager")
    full = model(x, output_attentions=True, output_hidden_states=True)
    torch.testing.assert_close(full.logits, fast.logits, atol=1e-5, rtol=1e-4)
    assert fast.attentions is None and fast.hidden_states is None
    assert len(full.attentions) == 2 and full.attentions[0].shape == (2, 3, 17, 17)
    assert len(full.hidden_states) == 3 and full.hidden_states[0].shape == (2, 17, 24)
    torch.testing.assert_close(full.attentions[0].sum(-1), torch.ones(2, 3, 17))
    logits, = model(x, return_dict=False)
    torch.testing.assert_close(logits, fast.logits)


def test_vit_interpolates_position_embeddings_for_other_image_sizes():
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type="bn_sh")).eval()
    with pytest.raises(ValueError, match=r"48x48.*32x32.*interpolate_pos_encoding=True"):
        model(images(size=48))
    assert model(images(size=48), interpolate_pos_encoding=True).logits.shape == (2, 5)


def test_vit_rejects_bad_images():
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT)).eval()
    with pytest.raises(ValueError, match="1 channels but the model takes 3"):
        model(torch.randn(2, 1, 32, 32))
    x = images()
    x[1, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf values \(batch items \[1\]\)"):
        model(x)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"attention_type": "flash"}, "Unknown attention_type 'flash'"),
        ({"attention_type": "sh", "head_scales": [1, 2]}, "one factor per head: got 2"),
        ({"attention_type": "sh", "head_scales": [1, 0, 2]}, r"head_scales must be integers in \[1, "),
        ({"attention_type": "sh", "head_scales": [2, 2, 4]}, "at least one head at scale 1"),
        ({"hidden_size": 25}, "divisible by num_attention_heads"),
        ({"attention_type": "sparse", "attention_window": 0}, r"attention_window must be an integer in \[1, "),
        ({"image_size": 30}, "not a whole number of"),
    ],
)
def test_vit_config_validation(overrides, message):
    with pytest.raises(CONFIG_ERRORS, match=message):
        PrimalDualViTConfig(**{**TINY_VIT, **overrides})


def test_config_validation_also_applies_to_from_pretrained_overrides(vit_checkpoint):
    path, _ = vit_checkpoint
    with pytest.raises(CONFIG_ERRORS, match="one factor per head"):
        PrimalDualViTForImageClassification.from_pretrained(path, attention_type="sh", head_scales=[1, 2])


def test_model_construction_revalidates_an_edited_config():
    config = PrimalDualTimeSeriesConfig(**TINY_TS)
    object.__setattr__(config, "attention_type", "bn+sh")  # bypass the setter, as a hand-edited attribute might
    with pytest.raises(ValueError, match="Unknown attention_type"):
        PrimalDualTimeSeriesForClassification(config)


def test_default_sh_scales_and_head_scales_round_trip(tmp_path):
    config = PrimalDualViTConfig(attention_type="sh", head_scales=(1, 2, 4))
    assert config.head_scales == [1, 2, 4]
    config.save_pretrained(tmp_path)
    assert PrimalDualViTConfig.from_pretrained(tmp_path).head_scales == [1, 2, 4]
    model = PrimalDualViTModel(PrimalDualViTConfig(attention_type="sh", num_hidden_layers=1))
    assert model.layers[0].attention.options.head_scales == (1, 2, 4)


def series(batch=3, length=20, channels=3, seed=0):
    return torch.randn(batch, length, channels, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("pooling", ["flatten", "mean", "cls"])
@pytest.mark.parametrize("attention_type", ALL_TYPES)
@pytest.mark.parametrize("norm_type", ["batch", pytest.param("layer", marks=pytest.mark.slow)])
def test_padding_a_series_changes_no_output(attention_type, pooling, norm_type):
    torch.manual_seed(0)
    config = PrimalDualTimeSeriesConfig(**TINY_TS, attention_type=attention_type, pooling=pooling, norm_type=norm_type)
    model = PrimalDualTimeSeriesForClassification(config)
    x = series(length=13)
    short = model.train()(x, attention_mask=torch.ones(3, 13)).logits  # train mode: batch statistics
    padded = torch.cat([x, torch.full((3, 7, 3), 1e3)], dim=1)
    mask = torch.cat([torch.ones(3, 13), torch.zeros(3, 7)], dim=1)
    torch.testing.assert_close(model(padded, attention_mask=mask).logits, short, atol=1e-4, rtol=1e-4)
    model.eval()
    torch.testing.assert_close(
        model(padded, attention_mask=mask).logits, model(x).logits, atol=1e-4, rtol=1e-4
    )


def test_timeseries_batch_of_unequal_lengths_equals_one_by_one():
    model = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS, attention_type="bn_sh")).eval()
    x = series(length=20)
    lengths = [20, 11, 5]
    mask = (torch.arange(20)[None, :] < torch.tensor(lengths)[:, None]).long()
    batched = model(x, attention_mask=mask).logits
    for i, length in enumerate(lengths):
        torch.testing.assert_close(batched[i], model(x[i : i + 1, :length]).logits[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_timeseries_outputs_and_loss(attention_type):
    model = PrimalDualTimeSeriesForClassification(
        PrimalDualTimeSeriesConfig(**TINY_TS, attention_type=attention_type, pooling="cls")
    ).eval()
    model.set_attn_implementation("eager")
    labels = torch.tensor([0, 3, 1])
    output = model(series(), labels=labels, output_attentions=True, output_hidden_states=True)
    expected_loss = torch.nn.functional.cross_entropy(output.logits, labels)
    torch.testing.assert_close(output.loss, expected_loss)
    assert output.attentions[0].shape == (3, 4, 21, 21) and len(output.hidden_states) == 3


def test_timeseries_rejects_bad_series():
    model = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS)).eval()
    with pytest.raises(ValueError, match="5 channels but the model takes 3"):
        model(torch.randn(2, 10, 5))
    with pytest.raises(ValueError, match="30 time steps.*max_sequence_length=24"):
        model(torch.randn(2, 30, 3))
    with pytest.raises(ValueError, match=r"\(batch_size, time, channels\)"):
        model(torch.randn(10, 3))
    x = series()
    x[2, 4, 1] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf values \(batch items \[2\]\)"):
        model(x)
    with pytest.raises(ValueError, match="no real token"):
        model(series(), attention_mask=torch.zeros(3, 20))
    x[2, 4, 1] = float("nan")  # a NaN at a padded step is ignored
    mask = torch.ones(3, 20)
    mask[2, 4:] = 0
    assert torch.isfinite(model(x, attention_mask=mask).logits).all()


@pytest.mark.parametrize("family", ["vit", "timeseries"])
def test_gradient_checkpointing_gives_the_same_gradients(family):
    torch.manual_seed(0)
    if family == "vit":
        model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type="bn_sh"))
        inputs = {"pixel_values": images(), "labels": torch.tensor([0, 4])}
    else:
        model = PrimalDualTimeSeriesForClassification(PrimalDualTimeSeriesConfig(**TINY_TS, attention_type="bn_sh"))
        inputs = {"past_values": series(), "labels": torch.tensor([0, 3, 1])}
    model.train()

    def gradients():
        model.zero_grad()
        model(**inputs).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.activation_checkpointing_enable()
    assert model.is_activation_checkpointing
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_bf16_forward_and_backward(attention_type):
    torch.manual_seed(0)
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**TINY_VIT, attention_type=attention_type))
    x = images()
    reference = model.eval()(x).logits
    model = model.to(torch.bfloat16)
    logits = model(x.to(torch.bfloat16)).logits
    assert logits.dtype == torch.bfloat16
    torch.testing.assert_close(logits.float(), reference, atol=0.15, rtol=0.1)
    model.train()(x.to(torch.bfloat16), labels=torch.tensor([1, 2])).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
