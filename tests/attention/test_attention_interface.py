"""The family registered in transformers' AttentionInterface (primaldual_<type>), on stock transformers models:
ViT, DeiT (distillation token), DINOv2, BEiT, BERT (padding), Wav2Vec2 (padding), PatchTST and a causal Llama with
grouped-query attention. Each against an independent float64 reference written in this file (one query at a time,
from the formulas, through tests/helpers/reference_attention.py), registered as an attention function of its own."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    AttentionInterface,
    AttentionMaskInterface,
    BeitConfig,
    BeitModel,
    BertConfig,
    BertModel,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    Dinov2Config,
    Dinov2Model,
    LlamaConfig,
    LlamaForCausalLM,
    PatchTSTConfig,
    PatchTSTForClassification,
    ViTConfig,
    ViTForImageClassification,
    Wav2Vec2Config,
    Wav2Vec2Model,
    YolosConfig,
    YolosModel,
)
from transformers.masking_utils import sdpa_mask

import hf_primaldual  # noqa: F401  (registers primaldual_<type>)
from helpers import FIXTURES
from hf_primaldual import ATTENTION_TYPES, REGISTERED_ATTENTIONS
from helpers.reference_attention import batch_norm_head, elu_plus_one, reference_attention

ALL_TYPES = list(ATTENTION_TYPES)
FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
WINDOW = 16  # the registered functions' default attention_window
VISION = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
              patch_size=8)


def default_scales(heads: int) -> list[int]:
    """SPEC's default split of the heads over scales 1, 2, 4, written out."""
    return {2: [1, 2], 3: [1, 2, 4], 4: [1, 1, 2, 4]}[heads]


# ----------------------------------------------------------------------------------------------------------------
# The reference, as an attention function of its own
# ----------------------------------------------------------------------------------------------------------------


def causal_reference(q, k, v, attention_type, allowed):
    """Per query i: the SVR fitted on the keys query i may see; BN statistics from those keys only."""
    batch, heads, q_len, dim = q.shape
    out = torch.zeros(batch, heads, q_len, v.shape[-1], dtype=torch.float64)
    for b in range(batch):
        for h in range(heads):
            for i in range(q_len):
                keys = [j for j in range(k.shape[2]) if allowed[b, 0, i, j]]
                if attention_type == "sparse":
                    offset = k.shape[2] - q_len
                    keys = [j for j in keys if abs(offset + i - j) <= WINDOW]
                if not keys:
                    continue
                qi, kj, vj = q[b, h, i], k[b, h, keys], v[b, h, keys]
                if "bn" in attention_type:
                    qi, kj = batch_norm_head(qi[None], kj, torch.ones(len(keys), dtype=torch.bool), 1e-5, 1.0, True)
                    qi = qi[0]
                if attention_type.startswith("linear"):
                    weights = elu_plus_one(kj) @ elu_plus_one(qi)
                    weights = weights / weights.sum()
                else:
                    weights = torch.softmax(kj @ qi / math.sqrt(dim), dim=0)
                out[b, h, i] = weights @ vj
    return out


def reference_function(attention_type, prefix, grid):
    def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        groups = query.shape[1] // key.shape[1]
        q, k, v = query.double(), key.double().repeat_interleave(groups, 1), value.double().repeat_interleave(groups, 1)
        q_len, k_len = q.shape[2], k.shape[2]
        allowed = attention_mask
        if allowed is None and module.is_causal and q_len > 1:
            allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)[None, None].expand(q.shape[0], 1, -1, -1)
        if allowed is None or (allowed == allowed[:, :, :1]).all():
            key_mask = None if allowed is None else allowed[:, 0, 0]
            out = reference_attention(q, k, v, attention_type, key_mask, head_scales=default_scales(q.shape[1]),
                                      window=WINDOW, prefix=prefix, grid=grid(k_len - prefix) if grid else None)
        else:
            out = causal_reference(q, k, v, attention_type, allowed)
        return out.to(query.dtype).transpose(1, 2).contiguous(), None

    return attention


def square(tokens: int) -> tuple[int, int]:
    side = math.isqrt(tokens)
    return side, side


# family -> (model factory, inputs factory, prefix tokens, grid of the non-prefix tokens or None, causal)
def _vit():
    return ViTForImageClassification(ViTConfig(**VISION, num_labels=3)), {"pixel_values": torch.randn(2, 3, 32, 32)}


def _deit():
    return DeiTForImageClassificationWithTeacher(DeiTConfig(**VISION)), {"pixel_values": torch.randn(2, 3, 32, 32)}


def _dinov2():
    return Dinov2Model(Dinov2Config(**VISION)), {"pixel_values": torch.randn(2, 3, 32, 32)}


def _beit():
    return BeitModel(BeitConfig(**VISION)), {"pixel_values": torch.randn(2, 3, 32, 32)}


def _bert():
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0
    model = BertModel(BertConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                                 vocab_size=50))
    return model, {"input_ids": torch.randint(0, 50, (2, 11)), "attention_mask": mask}


def _wav2vec2():
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                            conv_dim=(8, 8), conv_stride=(4, 4), conv_kernel=(8, 8), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, feat_extract_norm="layer")
    mask = torch.ones(2, 400, dtype=torch.long)
    mask[1, 300:] = 0
    return Wav2Vec2Model(config), {"input_values": torch.randn(2, 400), "attention_mask": mask}


def _patchtst():
    config = PatchTSTConfig(num_input_channels=3, context_length=32, patch_length=4, patch_stride=4, d_model=16,
                            num_hidden_layers=2, num_attention_heads=4, ffn_dim=32, num_targets=3)
    return PatchTSTForClassification(config), {"past_values": torch.randn(2, 32, 3)}


def _llama():
    config = LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         intermediate_size=40, vocab_size=60)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding, as for generation
    return LlamaForCausalLM(config), {"input_ids": torch.randint(0, 60, (2, 9)), "attention_mask": mask}


FAMILIES = {
    "vit": (_vit, 1, square),
    "deit": (_deit, 2, square),
    "dinov2": (_dinov2, 1, square),
    "beit": (_beit, 1, square),
    "bert": (_bert, 0, None),
    "wav2vec2": (_wav2vec2, 0, None),
    "patchtst": (_patchtst, 0, None),
    "llama": (_llama, 0, None),
}
CAUSAL_TYPES = ["softmax", "linear", "sparse", "bn"]  # what a causal model accepts (SH and linear_bn refused)


def family_cases():
    for family in FAMILIES:
        for attention_type in ALL_TYPES:
            if family == "llama" and attention_type not in CAUSAL_TYPES:
                continue
            yield family, attention_type


def build(family, dtype=torch.float64):
    torch.manual_seed(0)
    factory, prefix, grid = FAMILIES[family]
    model, inputs = factory()
    model = model.to(dtype).eval()
    inputs = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    return model, inputs, prefix, grid


def main_output(model, inputs):
    return model(**inputs)[0]  # logits or last hidden state (a ModelOutput's first non-None field)


def real_positions(family, inputs, output):
    """The output rows of real (non-padded) tokens, where the comparison is made."""
    if family == "bert":
        return output[inputs["attention_mask"].bool()]
    if family == "llama":
        return output[inputs["attention_mask"].bool()]
    return output


@pytest.mark.parametrize("family, attention_type", list(family_cases()))
def test_registered_attention_matches_the_reference_on_stock_models(family, attention_type):
    model, inputs, prefix, grid = build(family)
    name = f"test_reference_{attention_type}"
    AttentionInterface.register(name, reference_function(attention_type, prefix, grid))
    AttentionMaskInterface.register(name, sdpa_mask)
    model.set_attn_implementation(name)
    expected = real_positions(family, inputs, main_output(model, inputs))
    model.set_attn_implementation(f"primaldual_{attention_type}")
    actual = real_positions(family, inputs, main_output(model, inputs))
    torch.testing.assert_close(actual, expected, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_primaldual_softmax_is_the_models_own_attention(family, implementation):
    # float32: transformers' own eager attention gives NaN on left-padded rows in float64
    model, inputs, _, _ = build(family, torch.float32)
    model.set_attn_implementation(implementation)
    expected = real_positions(family, inputs, main_output(model, inputs))
    model.set_attn_implementation("primaldual_softmax")
    actual = real_positions(family, inputs, main_output(model, inputs))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("attention_type", ALL_TYPES)
def test_padding_changes_no_real_token_of_a_padded_text_model(attention_type):
    model, inputs, _, _ = build("bert")
    model.set_attn_implementation(f"primaldual_{attention_type}")
    ids, mask = inputs["input_ids"][1:, :7], inputs["attention_mask"][1:, :7]
    alone = model(input_ids=ids, attention_mask=mask).last_hidden_state
    padded = model(input_ids=torch.cat([ids, torch.randint(0, 50, (1, 6))], 1),
                   attention_mask=torch.cat([mask, torch.zeros(1, 6, dtype=torch.long)], 1)).last_hidden_state
    torch.testing.assert_close(padded[:, :7], alone)


@pytest.mark.parametrize("family, attention_type", [("vit", "bn_sh"), ("bert", "linear_bn_sh"), ("llama", "bn"),
                                                    ("patchtst", "sh"), ("wav2vec2", "bn")])
def test_gradients_flow_to_every_attention_weight(family, attention_type):
    model, inputs, _, _ = build(family)
    model.set_attn_implementation(f"primaldual_{attention_type}")
    model.train()
    main_output(model, inputs).square().mean().backward()
    projections = [p for n, p in model.named_parameters() if any(s in n for s in ("q_proj", "query", ".q."))]
    assert projections and all(p.grad is not None and p.grad.abs().sum() > 0 for p in projections)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("attention_type", ["softmax", "bn", "sparse"])
def test_generation_with_the_cache_gives_the_tokens_of_the_full_forward(attention_type):
    """Causal Attention-BN with a KV cache: each new token's statistics over the cached keys it may see."""
    model, inputs, _, _ = build("llama")
    model.set_attn_implementation(f"primaldual_{attention_type}")
    model.generation_config.eos_token_id = None  # five tokens whatever comes
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False, pad_token_id=0)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    for _ in range(5):  # no cache: the whole sequence again for every token (positions as generate gives them)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False).logits
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], 1)
        mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], 1)
    assert torch.equal(generated, ids)


@pytest.mark.parametrize("attention_type", ["sh", "bn_sh", "linear_sh", "linear_bn"])
def test_causal_models_refuse_what_is_not_defined_for_them(attention_type):
    model, inputs, _, _ = build("llama")
    model.set_attn_implementation(f"primaldual_{attention_type}")
    with pytest.raises(ValueError, match="queries see different (keys|ones)"):
        model(**inputs)


def test_vision_layouts_that_cannot_be_inferred_are_refused_with_the_fix():
    yolos = YolosModel(YolosConfig(**{**VISION, "image_size": [32, 32]}, num_detection_tokens=3)).eval()
    yolos.set_attn_implementation("primaldual_sh")
    with pytest.raises(ValueError, match="cannot pool yolos tokens: its detection tokens follow.*num_prefix_tokens"):
        yolos(pixel_values=torch.randn(1, 3, 32, 32))
    vit, _, _, _ = build("vit")
    vit.set_attn_implementation("primaldual_bn_sh")
    with pytest.raises(ValueError, match="not a square grid"):
        vit(pixel_values=torch.randn(1, 3, 32, 48).double(), interpolate_pos_encoding=True)
    vit.config.primaldual_attention = {"num_prefix_tokens": 1, "grid": [4, 6]}  # said explicitly: pooled on it
    assert vit(pixel_values=torch.randn(1, 3, 32, 48).double(), interpolate_pos_encoding=True).logits.shape == (1, 3)


def test_settings_come_from_the_config_and_are_checked():
    model, inputs, prefix, grid = build("vit")
    model.config.primaldual_attention = {"head_scales": [1, 1, 2], "bn_use_std": False}
    model.set_attn_implementation("primaldual_bn_sh")
    actual = main_output(model, inputs)

    def reference(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        out = reference_attention(query, key, value, "bn_sh", head_scales=[1, 1, 2], prefix=1, grid=(4, 4),
                                  use_std=False)
        return out.transpose(1, 2).contiguous(), None

    AttentionInterface.register("test_reference_settings", reference)
    AttentionMaskInterface.register("test_reference_settings", sdpa_mask)
    model.set_attn_implementation("test_reference_settings")
    torch.testing.assert_close(actual, main_output(model, inputs))
    model.set_attn_implementation("primaldual_sh")
    model.config.primaldual_attention = {"head_scales": [2, 2, 4]}
    with pytest.raises(ValueError, match=r"primaldual_attention: head_scales needs at least one head at scale 1.*\[2, 2, 4\]"):
        model(**inputs)
    model.config.primaldual_attention = {"bn_epsilon": 1e-3}
    with pytest.raises(ValueError, match=r"Unknown primaldual_attention settings \['bn_epsilon'\]"):
        model(**inputs)


def test_a_position_bias_in_the_mask_is_refused_not_dropped():
    torch.manual_seed(0)
    beit = BeitModel(BeitConfig(**VISION, use_relative_position_bias=True)).eval()
    for module in beit.modules():  # zero at initialisation, where dropping it would change nothing
        if hasattr(module, "relative_position_bias_table"):
            torch.nn.init.normal_(module.relative_position_bias_table)
    beit.set_attn_implementation("primaldual_bn")
    with pytest.raises(ValueError, match="additive bias.*relative-position bias"):
        beit(pixel_values=torch.randn(1, 3, 32, 32))


def test_every_type_is_registered():
    assert set(REGISTERED_ATTENTIONS) == {f"primaldual_{t}" for t in ATTENTION_TYPES}
    assert all(name in AttentionInterface._global_mapping for name in REGISTERED_ATTENTIONS)
    assert all(name in AttentionMaskInterface._global_mapping for name in REGISTERED_ATTENTIONS)


def test_a_stock_vit_fine_tunes_with_the_trainer_under_attention_bn(tmp_path):
    """transformers' own ViTForImageClassification, loaded with attn_implementation="primaldual_bn", trained by the
    Trainer on real Fashion-MNIST images: the loss falls and every step ran Attention-BN."""
    from unittest import mock

    from transformers import Trainer, TrainingArguments, ViTImageProcessorPil

    from hf_primaldual import attention_interface
    from hf_primaldual.data.images import build_transforms, load_fashion_mnist

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       image_size=28, patch_size=7, num_channels=1, num_labels=10)
    ViTForImageClassification(config).save_pretrained(tmp_path / "stock")
    model = ViTForImageClassification.from_pretrained(tmp_path / "stock", attn_implementation="primaldual_bn")
    assert model.config._attn_implementation == "primaldual_bn"
    processor = ViTImageProcessorPil(size={"height": 28, "width": 28}, image_mean=[0.286], image_std=[0.353])
    train = load_fashion_mnist(FASHION_SAMPLE)["train"].with_transform(
        build_transforms(processor, train=False, horizontal_flip=False))
    args = TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=16, max_steps=12,
                             learning_rate=3e-3, logging_steps=1, report_to="none", save_strategy="no",
                             use_cpu=True, disable_tqdm=True, remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=train)
    with mock.patch.object(attention_interface, "primal_dual_attention",
                           wraps=attention_interface.primal_dual_attention) as spy:
        trainer.train()
    assert spy.call_count == 12 * 2 and all(call.args[3].spec.batch_norm for call in spy.call_args_list)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
