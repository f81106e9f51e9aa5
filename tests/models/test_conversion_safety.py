"""The conversion never publishes what it should not and never loses a result: links leaving the source are
skipped, pickle weights become safetensors (read without running code), a second conversion into the same folder
is refused while the first runs, and staging folders of a killed conversion are cleaned."""

from __future__ import annotations

import os

import pytest
import torch
import transformers
from filelock import FileLock
from safetensors.torch import load_file

from hf_primaldual.conversion import ConversionError, convert_checkpoint


def tiny_bert() -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, num_labels=3,
    )).eval()


def test_a_link_leaving_the_source_is_not_copied(tmp_path, caplog):
    source = tmp_path / "bert"
    tiny_bert().save_pretrained(source)
    secret = tmp_path / "token.txt"
    secret.write_text("hf_secret")
    (source / "vocab.txt").symlink_to(secret)
    (source / "inside.txt").write_text("a file of the checkpoint")
    (source / "alias.txt").symlink_to(source / "inside.txt")  # a link that stays inside is a file of it
    output = convert_checkpoint(str(source), "bn", tmp_path / "converted")
    assert not (output / "vocab.txt").exists()
    assert (output / "alias.txt").read_text() == "a file of the checkpoint"
    assert "vocab.txt" in caplog.text and "outside the source" in caplog.text
    assert not any("hf_secret" in path.read_text(errors="ignore") for path in output.rglob("*") if path.is_file())


def test_pickle_weights_become_safetensors_with_the_same_values(tmp_path):
    model = tiny_bert()
    source = tmp_path / "bert"
    model.config.save_pretrained(source)
    torch.save(model.state_dict(), source / "pytorch_model.bin")
    output = convert_checkpoint(str(source), "bn", tmp_path / "converted")
    assert not list(output.glob("*.bin")) and (output / "model.safetensors").is_file()
    saved = load_file(output / "model.safetensors")
    for name, tensor in model.state_dict().items():
        assert torch.equal(saved[name], tensor), name
    import hf_primaldual  # noqa: F401  (registers primaldual_bn)

    reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(output).eval()
    ids = torch.randint(1, 64, (2, 7))
    model.set_attn_implementation("primaldual_bn")
    torch.testing.assert_close(reloaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    source = tmp_path / "bert"
    tiny_bert().config.save_pretrained(source)

    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"weight": Payload()}, source / "pytorch_model.bin")
    with pytest.raises(ConversionError, match="could not be read as plain weights"):
        convert_checkpoint(str(source), "bn", tmp_path / "converted")
    assert not (tmp_path / "converted").exists()


def test_a_second_conversion_into_a_folder_in_use_is_refused(tmp_path):
    source = tmp_path / "bert"
    tiny_bert().save_pretrained(source)
    output = tmp_path / "converted"
    with FileLock(tmp_path / ".converted.lock"):  # what a running conversion holds
        with pytest.raises(ConversionError, match="Another conversion is writing"):
            convert_checkpoint(str(source), "bn", output)
    assert not output.exists()
    convert_checkpoint(str(source), "bn", output)  # free again
    assert (output / "config.json").is_file()


def test_the_staging_folder_of_a_killed_conversion_is_removed(tmp_path, caplog):
    source = tmp_path / "bert"
    tiny_bert().save_pretrained(source)
    abandoned = tmp_path / ".converted.converting-0123456789ab"
    abandoned.mkdir()
    (abandoned / "model.safetensors").write_bytes(b"half")
    convert_checkpoint(str(source), "bn", tmp_path / "converted")
    assert not abandoned.exists() and "interrupted conversion" in caplog.text
