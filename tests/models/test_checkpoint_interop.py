"""Any ViT or DeiT checkpoint (issue 21): transformers' ViTModel, ViTForImageClassification, DeiTModel,
DeiTForImageClassification and DeiTForImageClassificationWithTeacher load into PrimalDualViTForImageClassification
with every weight (softmax logits equal to transformers' own model's), a saved PrimalDualViT loads back into the
DeiT class it came from, a checkpoint of another family is refused naming its weights, and the position
embeddings are resampled as transformers' `interpolate_pos_encoding` resamples them."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BeitConfig,
    BeitForImageClassification,
    DeiTConfig,
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    DeiTForMaskedImageModeling,
    DeiTModel,
    ViTConfig,
    ViTForImageClassification,
    ViTForMaskedImageModeling,
    ViTModel,
)

from hf_primaldual import PrimalDualViTConfig, PrimalDualViTForImageClassification, PrimalDualViTModel
from hf_primaldual.checkpoints import CheckpointError, load_image_checkpoint
from hf_primaldual.modeling_primaldual_vit import resample_position_embeddings

TINY = dict(
    hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32, patch_size=8,
    num_labels=5,
)
DEIT_CLASSES = [DeiTForImageClassification, DeiTForImageClassificationWithTeacher]


def images(batch: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight random (transformers zeroes DeiT's distillation token and position embeddings at init, which
    would let a checkpoint that loads neither look right)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


@pytest.fixture(scope="module", params=DEIT_CLASSES, ids=lambda cls: cls.__name__)
def deit_checkpoint(request, tmp_path_factory):
    """A random transformers DeiT classifier saved by transformers."""
    model = randomised(request.param(DeiTConfig(**TINY)))
    path = tmp_path_factory.mktemp(request.param.__name__)
    model.save_pretrained(path)
    return path, model


def test_deit_checkpoint_loads_with_every_weight_and_gives_transformers_logits(deit_checkpoint):
    path, reference = deit_checkpoint
    model, info = PrimalDualViTForImageClassification.from_pretrained(path, output_loading_info=True)
    assert not any(info.values()), info
    assert model.config.attention_type == "softmax" and model.config.distillation_token
    assert model.config.distillation_head == isinstance(reference, DeiTForImageClassificationWithTeacher)
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x).logits, reference(x).logits, atol=1e-5, rtol=0)


def test_a_saved_deit_loads_back_into_transformers_deit(deit_checkpoint, tmp_path):
    """The other way: fine-tuned here (weights changed), saved, loaded by transformers' DeiT class."""
    path, reference = deit_checkpoint
    model = PrimalDualViTForImageClassification.from_pretrained(path)
    randomised(model, seed=1)
    model.save_pretrained(tmp_path)
    back, info = type(reference).from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    x = images(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(x).logits, model(x).logits, atol=1e-5, rtol=0)
        again = PrimalDualViTForImageClassification.from_pretrained(tmp_path).eval()
        torch.testing.assert_close(again(x).logits, model(x).logits, atol=0, rtol=0)


def test_trainer_style_load_state_dict_of_a_saved_deit_loads_every_weight(deit_checkpoint, tmp_path):
    """The Trainer's load_best_model_at_end and resume read the saved file with load_state_dict(strict=False)."""
    from safetensors.torch import load_file

    path, _ = deit_checkpoint
    model = randomised(PrimalDualViTForImageClassification.from_pretrained(path), seed=3)
    model.save_pretrained(tmp_path)
    fresh = PrimalDualViTForImageClassification(model.config).eval()
    result = fresh.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x).logits, model(x).logits, atol=0, rtol=0)


@pytest.mark.parametrize("source_class", [ViTModel, DeiTModel])
def test_base_model_checkpoints_give_the_same_encoder_output(source_class, tmp_path):
    config = (DeiTConfig if source_class is DeiTModel else ViTConfig)(**TINY)
    reference = randomised(source_class(config))
    reference.save_pretrained(tmp_path)
    model, info = PrimalDualViTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    x = images()
    with torch.no_grad():
        expected, got = reference(x), model.eval()(x)
    torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=1e-5, rtol=0)


def test_fine_tuning_a_distilled_deit_with_new_classes_and_bn(deit_checkpoint):
    path, reference = deit_checkpoint
    model = load_image_checkpoint(
        path, attention_type="bn", id2label={0: "cat", 1: "dog"}, ignore_mismatched_sizes=True
    ).train()
    torch.testing.assert_close(model.vit.embeddings.distillation_token, reference.deit.embeddings.distillation_token)
    x, labels = images(batch=4), torch.tensor([0, 1, 0, 1])
    output = model(x, labels=labels)
    assert output.logits.shape == (4, 2) and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.vit.embeddings.distillation_token.grad is not None


def test_a_checkpoint_of_another_family_is_refused_naming_its_weights(tmp_path):
    BeitForImageClassification(BeitConfig(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing \(vit\.embeddings.*unexpected \(beit\.") as caught:
        load_image_checkpoint(tmp_path, num_labels=3, ignore_mismatched_sizes=True)
    assert "--model_name_or_path" in str(caught.value)


def test_a_checkpoint_with_a_layer_less_is_refused(tmp_path):
    """Loaded with the run's own config (more layers than saved): the extra layer's weights are missing."""
    ViTForImageClassification(ViTConfig(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"missing \(vit\.layers\.2\."):
        load_image_checkpoint(tmp_path, num_hidden_layers=3)


@pytest.mark.parametrize("source_class", [ViTForMaskedImageModeling, DeiTForMaskedImageModeling])
def test_masked_image_modelling_checkpoints_give_their_encoder(source_class, tmp_path):
    """SimMIM pre-training: the encoder is fine-tuned, its mask token and decoder left out."""
    config = (DeiTConfig if source_class is DeiTForMaskedImageModeling else ViTConfig)(**TINY, encoder_stride=8)
    reference = randomised(source_class(config))
    reference.save_pretrained(tmp_path)
    model = load_image_checkpoint(tmp_path, num_labels=3).eval()
    encoder = reference.deit if source_class is DeiTForMaskedImageModeling else reference.vit
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(model.vit(x).last_hidden_state, encoder(x).last_hidden_state, atol=1e-5, rtol=0)


def test_a_vit_model_checkpoint_with_its_pooler_is_accepted(tmp_path):
    ViTModel(ViTConfig(**TINY)).save_pretrained(tmp_path)
    model = load_image_checkpoint(tmp_path, num_labels=3)
    assert model.config.num_labels == 3


@pytest.mark.parametrize("source_class", [ViTForImageClassification, DeiTForImageClassificationWithTeacher])
@pytest.mark.parametrize("new_size", [48, 16])
def test_resampled_position_embeddings_equal_transformers_interpolation(source_class, new_size, tmp_path):
    """Resized to ``new_size`` and saved, the model gives what transformers' own model gives on those images with
    interpolate_pos_encoding=True."""
    config = (DeiTConfig if source_class is DeiTForImageClassificationWithTeacher else ViTConfig)(**TINY)
    reference = randomised(source_class(config))
    reference.save_pretrained(tmp_path / "source")
    model = load_image_checkpoint(tmp_path / "source", image_size=new_size)
    prefix = 2 if source_class is DeiTForImageClassificationWithTeacher else 1
    assert model.vit.embeddings.position_embeddings.shape == (1, prefix + (new_size // 8) ** 2, 24)
    model.save_pretrained(tmp_path / "resized")
    reloaded = PrimalDualViTForImageClassification.from_pretrained(tmp_path / "resized").eval()
    assert reloaded.config.image_size == new_size
    x = images(size=new_size)
    with torch.no_grad():
        expected = reference(x, interpolate_pos_encoding=True).logits
        torch.testing.assert_close(reloaded(x).logits, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="does not match the model"):
        reloaded(images(size=32))


def test_resampling_to_a_size_that_is_no_whole_number_of_patches_is_refused(tmp_path):
    ViTForImageClassification(ViTConfig(**TINY)).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="whole number of the checkpoint's 8x8 patches: give a multiple of 8"):
        load_image_checkpoint(tmp_path, image_size=36)


def test_resampling_a_non_square_grid_is_refused():
    model = PrimalDualViTForImageClassification(PrimalDualViTConfig(**{**TINY, "image_size": [32, 16]}))
    with pytest.raises(ValueError, match="not square"):
        resample_position_embeddings(model, 48)
