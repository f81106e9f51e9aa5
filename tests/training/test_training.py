"""The training and evaluation scripts end to end on real data, in a few steps: hub-ready output folders, resume,
the image-classification pipeline, and 2 processes under `accelerate launch` (gloo on CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoFeatureExtractor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    pipeline,
)

import hf_primaldual  # noqa: F401  (registers the Auto classes)
from helpers import FIXTURES, SHARED_DATA
from helpers import REPO_ROOT as REPO
from helpers.training_runs import accelerate_launch, run_script
from hf_primaldual.data.images import load_fashion_mnist

pytestmark = pytest.mark.slow  # training runs, fresh interpreters, accelerate launch

FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
FASHION_MNIST = SHARED_DATA / "images" / "fashion-mnist"  # the real set (a stratified split needs it)
SMALL_TIMESERIES = ["--hidden_size", "32", "--num_hidden_layers", "2", "--num_attention_heads", "4",
                    "--intermediate_size", "64"]
SMALL_VIT = ["--hidden_size", "24", "--num_hidden_layers", "2", "--num_attention_heads", "3",
             "--intermediate_size", "48", "--per_device_train_batch_size", "8"]
HUB_READY_FILES = {"config.json", "model.safetensors", "README.md", "training_metrics.json",
                   "preprocessor_config.json", "attention.py"}


def test_timeseries_script_writes_a_hub_ready_folder_that_evaluates_the_same(tmp_path):
    output = tmp_path / "jv-bn"
    summary = run_script(
        "train_timeseries.py", "--output_dir", str(output), "--num_train_epochs", "2", *SMALL_TIMESERIES
    )
    assert summary["dataset"] == "JapaneseVowels" and summary["attention_type"] == "bn"
    assert HUB_READY_FILES <= {p.name for p in output.iterdir()}
    metrics = json.loads((output / "training_metrics.json").read_text())
    assert len(metrics["eval_history"]) == 2 and metrics["test_accuracy_final"] == summary["test_accuracy_final"]
    card = (output / "README.md").read_text()
    assert "model-index" in card and "arxiv.org/abs/2406.13781" in card
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"]["0"] == "1" and config["max_sequence_length"] == 29

    evaluation = run_script("evaluate_checkpoint.py", str(output), "JapaneseVowels",
                            "--output", str(tmp_path / "cm.png"))
    assert evaluation["accuracy"] == pytest.approx(summary["test_accuracy_final"])
    assert (tmp_path / "cm.png").stat().st_size > 10_000

    model = AutoModelForSequenceClassification.from_pretrained(output)
    extractor = AutoFeatureExtractor.from_pretrained(output)
    assert type(model).__name__ == "PrimalDualTimeSeriesForClassification" and extractor.is_fitted


def test_resume_goes_on_from_the_last_checkpoint(tmp_path):
    output = tmp_path / "run"
    common = ["--output_dir", str(output), "--attention_type", "sh", *SMALL_TIMESERIES]
    run_script("train_timeseries.py", *common, "--num_train_epochs", "1")
    steps_per_epoch = json.loads((output / "checkpoint-17" / "trainer_state.json").read_text())["global_step"]
    assert steps_per_epoch == 17  # 270 series, batch 16
    run_script("train_timeseries.py", *common, "--num_train_epochs", "2", "--resume_from_checkpoint", "last")
    metrics = json.loads((output / "training_metrics.json").read_text())
    # The history and the best epoch cover the epoch before the resume too, which this process did not run.
    assert [record["epoch"] for record in metrics["eval_history"]] == [1.0, 2.0]
    first = json.loads((output / "checkpoint-17" / "trainer_state.json").read_text())["log_history"]
    assert metrics["eval_history"][0]["eval_accuracy"] == next(e["eval_accuracy"] for e in first if "eval_accuracy" in e)
    assert metrics["test_accuracy_best_epoch"] == max(r["eval_accuracy"] for r in metrics["eval_history"])
    assert (output / "checkpoint-34").is_dir()


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "train_timeseries.py"), "--output_dir", str(tmp_path / "new"),
               "--resume_from_checkpoint", "last"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode != 0 and "no complete checkpoint-N folder" in result.stderr
    assert not (tmp_path / "new" / "training_metrics.json").exists()


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="shared data folder beside the repository not present")
def test_image_script_with_a_validation_split_ends_with_the_best_epochs_weights(tmp_path):
    """load_best_model_at_end (and resume) load a checkpoint file with plain load_state_dict, whose legacy ViT names
    transformers' from_pretrained would rename: the final model must be the best checkpoint's, weight for weight."""
    output = tmp_path / "fmnist-bn"
    summary = run_script(
        "train_image.py", "--dataset", str(FASHION_MNIST), "--max_train_samples", "400", "--max_eval_samples", "100",
        "--output_dir", str(output), "--num_train_epochs", "3", "--validation_fraction", "0.25", "--attention_type", "bn",
        *SMALL_VIT,
    )
    last = max(output.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    best = Path(state["best_model_checkpoint"])
    # the best checkpoint is the epoch of the highest validation accuracy (not the lowest)
    accuracies = {entry["step"]: entry["eval_accuracy"] for entry in state["log_history"] if "eval_accuracy" in entry}
    assert len(set(accuracies.values())) > 1, "both epochs scored the same: the test cannot tell best from worst"
    assert accuracies[int(best.name.split("-")[1])] == max(accuracies.values()) == state["best_metric"]
    final = AutoModelForImageClassification.from_pretrained(output).state_dict()
    kept = AutoModelForImageClassification.from_pretrained(best).state_dict()
    assert final.keys() == kept.keys() and all(torch.equal(final[name], kept[name]) for name in final)
    assert summary["validation_accuracy_best"] > 0


def test_image_script_output_works_with_the_pipeline(tmp_path):
    output = tmp_path / "fmnist-bn_sh"
    summary = run_script(
        "train_image.py", "--dataset", str(FASHION_SAMPLE), "--output_dir", str(output), "--num_train_epochs", "1",
        "--attention_type", "bn_sh", "--head_scales", "1", "2", "4", *SMALL_VIT,
    )
    assert 0.0 <= summary["test_accuracy_final"] <= 1.0
    assert HUB_READY_FILES <= {p.name for p in output.iterdir()}
    classifier = pipeline("image-classification", model=str(output))
    image = load_fashion_mnist(FASHION_SAMPLE)["test"][0]["image"]
    predictions = classifier(image, top_k=3)
    assert len(predictions) == 3 and predictions[0]["label"] in hf_primaldual.data.FASHION_MNIST_CLASSES
    with torch.inference_mode():
        logits = classifier.model(**classifier.image_processor(image.convert("RGB"), return_tensors="pt")).logits
    assert predictions[0]["score"] == pytest.approx(logits.softmax(-1).max().item(), rel=1e-5)


def test_two_processes_under_accelerate_match_one_process_in_quality(tmp_path):
    """The same script, unchanged, with 2 CPU processes (gloo): the global batch stays 16 (8 per process)."""
    epochs = ["--num_train_epochs", "6", *SMALL_TIMESERIES, "--dropout", "0.0", "--eval_strategy", "no",
              "--save_strategy", "no"]
    single = run_script("train_timeseries.py", "--output_dir", str(tmp_path / "one"), *epochs)
    # Without a GPU, accelerate turns a multi-process launch into MULTI_CPU with the gloo backend.
    launcher = accelerate_launch("--multi_gpu", "--num_processes", "2", "--num_machines", "1")
    double = run_script(
        "train_timeseries.py", "--output_dir", str(tmp_path / "two"), *epochs,
        "--per_device_train_batch_size", "8", launcher=launcher, timeout=600,
    )
    metrics = json.loads((tmp_path / "two" / "training_metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["global_step"] == 102  # 17 steps of 2 x 8 series per epoch: both processes share each batch
    assert single["test_accuracy_final"] > 0.8 and double["test_accuracy_final"] > 0.8
    assert abs(single["test_accuracy_final"] - double["test_accuracy_final"]) < 0.06
    assert metrics["test_accuracy_final"] == double["test_accuracy_final"]
