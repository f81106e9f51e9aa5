"""Conversion that persists: stock checkpoints written again with a primal-dual attention reload with it, through
the Auto classes with the package and through `trust_remote_code=True` without it, computing exactly what the
stock model computes with that attention; weights untouched, the card says what changed, refusals explain."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from huggingface_hub import HfApi, ModelCard

from helpers.hub_clients import load_script, run_client
from helpers.without_package import WITHOUT_PACKAGE
from hf_primaldual.conversion import ConversionError, convert_checkpoint
from hf_primaldual.hub import REPO_ID_PLACEHOLDER


@dataclass
class Case:
    model: transformers.PreTrainedModel
    attention_type: str
    auto_class: str
    inputs: dict[str, torch.Tensor]
    source: Path | None = None
    output: Path | None = None
    expected: torch.Tensor | None = None
    source_files: dict[str, str] | None = None


def make_cases() -> dict[str, Case]:
    torch.manual_seed(0)
    padded = torch.ones(2, 7, dtype=torch.long)
    padded[1, 5:] = 0
    return {
        "vit": Case(
            transformers.ViTForImageClassification(transformers.ViTConfig(
                hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48, image_size=32,
                patch_size=8, num_labels=4,
            )),
            "bn_sh", "AutoModelForImageClassification", {"pixel_values": torch.randn(2, 3, 32, 32)},
        ),
        "bert": Case(
            transformers.BertForSequenceClassification(transformers.BertConfig(
                vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=32, num_labels=3,
            )),
            "bn_sh", "AutoModelForSequenceClassification",
            {"input_ids": torch.randint(1, 64, (2, 7)), "attention_mask": padded},
        ),
        "llama": Case(  # causal, grouped-query attention, padding
            transformers.LlamaForCausalLM(transformers.LlamaConfig(
                vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64,
            )),
            "bn", "AutoModelForCausalLM", {"input_ids": torch.randint(1, 64, (2, 7)), "attention_mask": padded},
        ),
    }


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


def logits(model: transformers.PreTrainedModel, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**inputs).logits


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("conversion")
    cases = make_cases()
    for name, case in cases.items():
        case.source, case.output = root / f"{name}-stock", root / f"{name}-{case.attention_type}"
        case.model.save_pretrained(case.source)
        case.source_files = digests(case.source)
        assert convert_checkpoint(case.source, case.attention_type, case.output) == case.output
        # "The converted model": the stock checkpoint loaded with the attention chosen by argument.
        stock = type(case.model).from_pretrained(case.source, attn_implementation=f"primaldual_{case.attention_type}")
        case.expected = logits(stock, case.inputs)
        assert not torch.equal(case.expected, logits(case.model, case.inputs)), "the attention changed nothing"
        torch.save({"inputs": case.inputs, "expected": case.expected}, root / f"{name}.pt")
    return cases


@pytest.mark.parametrize("name", ["vit", "bert", "llama"])
def test_reload_with_the_package_runs_the_attention(converted: dict[str, Case], name: str) -> None:
    case = converted[name]
    model = getattr(transformers, case.auto_class).from_pretrained(case.output)  # no attn_implementation argument
    assert model.config._attn_implementation == f"primaldual_{case.attention_type}"
    assert type(model) is type(case.model)  # transformers' own class: the package needs no remote code
    assert torch.equal(logits(model, case.inputs), case.expected)


@pytest.mark.slow  # fresh interpreters, without the package
def test_reload_without_the_package(converted: dict[str, Case], tmp_path: Path) -> None:
    folders = {
        name: (str(case.output), case.auto_class, case.attention_type, type(case.model.base_model).__name__)
        for name, case in converted.items()
    }
    data = str(next(iter(converted.values())).output.parent)
    run_client(
        WITHOUT_PACKAGE + f"""
import os, torch, transformers
for name, (folder, auto_class, attention_type, base_class) in {folders!r}.items():
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    assert "configuration_primaldual_registration" in type(config).__module__, type(config)
    model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
    assert "hf_primaldual" not in type(model).__module__, type(model)
    assert model.config._attn_implementation == "primaldual_" + attention_type
    saved = torch.load(os.path.join({data!r}, name + ".pt"))
    with torch.no_grad():
        assert torch.equal(model(**saved["inputs"]).logits, saved["expected"]), name
    base = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)
    assert type(base).__name__ == base_class and isinstance(base, getattr(transformers, base_class)), type(base)
""",
        {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )


def test_weights_are_copied_byte_for_byte_and_the_source_is_untouched(converted: dict[str, Case]) -> None:
    for case in converted.values():
        assert digests(case.source) == case.source_files
        written = digests(case.output)
        assert written["model.safetensors"] == case.source_files["model.safetensors"]
        stock = json.loads((case.source / "config.json").read_text())
        config = json.loads((case.output / "config.json").read_text())
        added = {"attn_implementation", "primaldual_attention", "auto_map"}
        assert {key: value for key, value in config.items() if key not in added} == stock
        assert config["attn_implementation"] == f"primaldual_{case.attention_type}"
        assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", case.auto_class}
        for reference in config["auto_map"].values():
            assert (case.output / (reference.split(".")[0] + ".py")).is_file()
    assert (converted["llama"].output / "generation_config.json").is_file()


def test_card_says_what_changed(converted: dict[str, Case]) -> None:
    case = converted["vit"]
    card = ModelCard.load(case.output / "README.md")
    assert {"hf-primaldual", "attention-bn_sh"} <= set(card.data.tags)
    for text in (
        "primaldual_bn_sh", "Attention-BN", "Attention-SH", case.source.name, "unchanged",
        case.source_files["model.safetensors"], "trust_remote_code=True", "nguyen2023primaldual",
        "| bn_eps | 1e-05 |",
    ):
        assert text in card.text, text


def test_hub_source_at_a_revision_keeps_its_card(hub_env, tmp_path: Path) -> None:  # noqa: F811
    source = tmp_path / "source"
    make_cases()["vit"].model.save_pretrained(source)
    (source / "README.md").write_text("---\nlicense: mit\n---\n\n# Tiny ViT\n\nTrained on nothing at all.\n")
    api = HfApi()
    repo_id = hub_env.hub.new_repo_id("vit")
    api.create_repo(repo_id)
    first = api.upload_folder(folder_path=source, repo_id=repo_id).oid
    api.create_tag(repo_id, tag="v1")
    (source / "README.md").write_text("# A later card\n")
    api.upload_folder(folder_path=source, repo_id=repo_id)

    output = convert_checkpoint(repo_id, "bn", tmp_path / "converted", revision="v1")
    card = ModelCard.load(output / "README.md")
    assert card.data.license == "mit" and card.data.base_model == repo_id
    assert first in card.text and "Trained on nothing at all." in card.text and "A later card" not in card.text
    assert card.text.index("The card of") < card.text.index("# Tiny ViT")
    assert (output / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()

    with pytest.raises(ConversionError, match="no revision 'v9'"):
        convert_checkpoint(repo_id, "bn", tmp_path / "other", revision="v9")
    assert not (tmp_path / "other").exists()


def assert_refused(tmp_path: Path, source: Path, attention_type: str, match: str, **kwargs: Any) -> None:
    """The conversion fails with ``match`` and leaves nothing beside the source (no output, no staging folder)."""
    before = sorted(path.name for path in tmp_path.iterdir())
    with pytest.raises(ConversionError, match=match):
        convert_checkpoint(source, attention_type, tmp_path / "out", **kwargs)
    assert sorted(path.name for path in tmp_path.iterdir()) == before


@pytest.fixture
def stock(tmp_path: Path) -> Path:
    folder = tmp_path / "stock"
    make_cases()["llama"].model.save_pretrained(folder)
    return folder


def test_unknown_attention_type_lists_the_valid_ones(tmp_path: Path, stock: Path) -> None:
    assert_refused(tmp_path, stock, "bn-sh", r"Unknown attention_type 'bn-sh'\. Choose one of: softmax, .*bn_sh")


def test_sh_on_a_causal_model_fails_with_the_attention_message(tmp_path: Path, stock: Path) -> None:
    assert_refused(tmp_path, stock, "bn_sh", "(?s)primaldual_bn_sh cannot run this llama model: Attention-SH needs "
                   "every query to see the same keys.*without SH \\(primaldual_bn")


def test_unknown_settings_are_refused(tmp_path: Path, stock: Path) -> None:
    assert_refused(tmp_path, stock, "bn", r"Unknown primaldual_attention settings \['bn_epsilon'\]",
                   settings={"bn_epsilon": 1e-3})


def test_a_family_outside_attention_interface_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "deberta"
    transformers.DebertaV2ForSequenceClassification(transformers.DebertaV2Config(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
    )).save_pretrained(source)
    assert_refused(tmp_path, source, "bn", "(?s)deberta-v2 does not run its attention through transformers' "
                   "AttentionInterface.*never call the function.*Fix: convert a family")


def test_sh_on_a_vision_layout_it_cannot_infer(tmp_path: Path) -> None:
    source = tmp_path / "yolos"
    transformers.YolosForObjectDetection(transformers.YolosConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=[32, 32],
        patch_size=8, num_detection_tokens=2,
    )).save_pretrained(source)
    assert_refused(tmp_path, source, "bn_sh", "cannot pool yolos tokens: its detection tokens follow the patches.*"
                   r"--settings")
    # With the layout given, it converts.
    output = convert_checkpoint(source, "bn_sh", tmp_path / "out", settings={"num_prefix_tokens": 0, "grid": "none"})
    assert json.loads((output / "config.json").read_text())["primaldual_attention"]["grid"] == "none"


def test_an_existing_output_folder_is_replaced_only_with_overwrite(tmp_path: Path, stock: Path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    assert_refused(tmp_path, stock, "bn", "exists and is not empty.*overwrite=True")
    assert (output / "notes.txt").read_text() == "mine"
    convert_checkpoint(stock, "bn", output, overwrite=True)
    assert not (output / "notes.txt").exists() and (output / "model.safetensors").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "stock"]  # no staging or replaced folder
    with pytest.raises(ConversionError, match="overlap"):
        convert_checkpoint(stock, "bn", stock / "inside")
    with pytest.raises(ConversionError, match="overlap"):
        convert_checkpoint(stock, "bn", tmp_path, overwrite=True)  # would replace the folder holding the source
    assert digests(stock) and (stock / "model.safetensors").is_file()


def test_script(tmp_path: Path, stock: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("convert_attention")
    output = tmp_path / "out"
    assert script.main([str(stock), "bn", str(output), "--settings", '{"bn_eps": 0.001}']) == 0
    assert json.loads((output / "config.json").read_text())["primaldual_attention"]["bn_eps"] == 0.001
    for argv, message in (
        ([str(stock), "bn", str(tmp_path / "a"), "--settings", "{bn_eps: 1}"], "--settings is not valid JSON"),
        ([str(stock), "bn", str(tmp_path / "b"), "--settings", "[1]"], "--settings must be a JSON object"),
        ([str(stock), "nope", str(tmp_path / "c")], "Unknown attention_type 'nope'"),
        ([str(stock), "bn", str(output)], "exists and is not empty"),
        ([str(tmp_path / "missing"), "bn", str(tmp_path / "d")], "neither a local folder nor a valid Hub model id"),
    ):
        capsys.readouterr()
        assert script.main(argv) == 2, argv
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(stock)])
    assert exit_info.value.code == 2


def test_a_converted_checkpoint_is_published_and_loads_back_from_the_hub(  # noqa: F811
    hub_env, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """hf-primaldual-push publishes a folder of hf-primaldual-convert as it is: weights, config, code, the card (its
    repo id filled in) and the source's tokenizer files, and nothing else; from the Hub it runs the attention."""
    case = make_cases()["bert"]
    source = tmp_path / "bert-stock"
    case.model.save_pretrained(source)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [a + b for a in "abcdefgh" for b in "abcdefg"][:59]
    transformers.BertTokenizer(vocab={word: index for index, word in enumerate(words)}).save_pretrained(source)
    # as transformers 4 saved a tokenizer (many Hub checkpoints have it): "tokens" in its name is no credential
    special = {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]", "unk_token": "[UNK]"}
    (source / "special_tokens_map.json").write_text(json.dumps(special))
    (source / "notes.txt").write_text("not part of the model\n")
    output = convert_checkpoint(source, "bn", tmp_path / "bert-bn")

    repo_id = hub_env.hub.new_repo_id("bert-bn")
    assert load_script("push_to_hub").main([str(output), repo_id]) == 0, capsys.readouterr()
    files = hub_env.hub.files(repo_id)
    code = {path.name for path in output.glob("*.py")}
    assert "configuration_primaldual_registration.py" in code
    tokenizer_files = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert set(files) == {".gitattributes", "README.md", "config.json", "model.safetensors", *tokenizer_files, *code}
    for name in {"config.json", "model.safetensors", *tokenizer_files, *code}:
        assert files[name] == (output / name).read_bytes(), name
    card = files["README.md"].decode()
    assert REPO_ID_PLACEHOLDER not in card and repo_id in card

    model = transformers.AutoModelForSequenceClassification.from_pretrained(repo_id)
    assert model.config._attn_implementation == "primaldual_bn"
    batch = transformers.AutoTokenizer.from_pretrained(repo_id)(["ab ac ad", "ba"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 1:4].tolist() == [words.index("ab"), words.index("ac"), words.index("ad")]
    stock = transformers.BertForSequenceClassification.from_pretrained(source, attn_implementation="primaldual_bn")
    assert torch.equal(logits(model, dict(batch)), logits(stock, dict(batch)))
