"""The image training command with a checkpoint (issue 21): a checkpoint whose encoder weights do not match is refused
with exit 2 naming them (never trained from random weights), and ``--image_size`` with a DeiT checkpoint resamples
its position embeddings and saves the model at that size, the card reporting the model actually saved."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    BeitConfig,
    BeitForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
    ViTImageProcessor,
)

from helpers import FIXTURES
from hf_primaldual.cli import train_image

FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
TINY = dict(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=48, num_labels=4)


def checkpoint(folder, model) -> str:
    model.save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return str(folder)


def test_a_mismatched_checkpoint_is_refused_with_exit_2(tmp_path, capsys):
    source = checkpoint(tmp_path / "beit", BeitForImageClassification(BeitConfig(**TINY)))
    output = tmp_path / "out"
    code = train_image.main(["--dataset", str(FASHION_SAMPLE), "--model_name_or_path", source,
                             "--output_dir", str(output), "--num_train_epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "missing (vit.embeddings" in err and "beit." in err, err
    assert not (output / "config.json").exists()


@pytest.mark.slow
def test_image_size_with_a_deit_checkpoint_resamples_and_the_card_reports_the_saved_model(tmp_path, capsys):
    torch.manual_seed(0)
    source = checkpoint(tmp_path / "deit", DeiTForImageClassificationWithTeacher(DeiTConfig(**TINY)))
    output = tmp_path / "out"
    code = train_image.main([
        "--dataset", str(FASHION_SAMPLE), "--model_name_or_path", source, "--output_dir", str(output),
        "--image_size", "48", "--num_train_epochs", "1", "--max_train_samples", "32", "--max_eval_samples", "16",
        "--attention_type", "bn", "--per_device_train_batch_size", "16",
    ])
    assert code == 0, capsys.readouterr().err
    config = json.loads((output / "config.json").read_text())
    assert config["image_size"] == 48 and config["distillation_head"] is True and config["hidden_size"] == 24
    card = (output / "README.md").read_text()
    assert "| image_size | 48 |" in card and "| patch_size | 8 |" in card and "| hidden_size | 24 |" in card
    assert "| lr_scheduler | cosine |" in card and "SchedulerType" not in card
    assert "base_model:" not in card and "a local checkpoint" in card
    processor = json.loads((output / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 48, "width": 48}
