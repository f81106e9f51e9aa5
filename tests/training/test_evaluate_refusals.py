"""`hf-primaldual-evaluate` refuses, with exit status 2 and a message naming the problem and the fix, what it
used to score or crash on (issue 22): weights that are NaN or infinite (it scored the argmax of NaN), a folder
missing its classifier head (a random head, scored), a truncated ``model.safetensors`` (a raw safetensors
traceback naming no file), and data the model cannot take (another number of channels or longer series: a raw
ValueError, exit 1; other classes). The push (`hf-primaldual-push`) refuses the same broken folders through the
same check (`model_folders.load_checked_model`). A Hub model that does not exist exits 2, one that cannot be
fetched exits 1; data holding only some of the model's classes evaluates, and the summary names the others.

The model folders are saved here as the package saves them (`save_pretrained` of a small time-series classifier
and its feature extractor fitted on real BasicMotions; a small ViT with its image processor), then broken.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ViTImageProcessorPil

from helpers import FIXTURES
from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesForClassification,
    PrimalDualViTConfig,
    PrimalDualViTForImageClassification,
)
from hf_primaldual.cli import evaluate_checkpoint as evaluate_command
from hf_primaldual.cli import push_to_hub as push_command
from hf_primaldual.data import load_uea
from hf_primaldual.feature_extraction_primaldual_timeseries import PrimalDualTimeSeriesFeatureExtractor

BASIC_MOTIONS = FIXTURES / "BasicMotions"
DATA = [str(BASIC_MOTIONS / "BasicMotions_TRAIN.ts"), "--test_file", str(BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")]


@pytest.fixture(scope="module")
def basic_motions():
    return load_uea(train_path=BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_path=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")


def save_timeseries_model(folder: Path, dataset, max_sequence_length: int = 100) -> Path:
    """A small classifier for `dataset` and its feature extractor (fitted on the training series), saved."""
    names = dataset["train"].features["label"].names
    torch.manual_seed(0)
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=6, max_sequence_length=max_sequence_length, num_labels=len(names), hidden_size=16,
        num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, id2label=dict(enumerate(names)),
        label2id={name: index for index, name in enumerate(names)},
    )
    PrimalDualTimeSeriesForClassification(config).save_pretrained(folder)
    extractor = PrimalDualTimeSeriesFeatureExtractor(num_input_channels=6)
    extractor.fit(dataset["train"].with_format("numpy")["past_values"]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, basic_motions) -> Path:
    return save_timeseries_model(tmp_path_factory.mktemp("saved") / "basic-motions-bn", basic_motions)


def edit_weights(folder: Path, edit) -> None:
    """Rewrite model.safetensors with `edit(name, tensor)` applied (None drops the tensor)."""
    tensors = load_file(folder / "model.safetensors")
    edited = {name: edit(name, tensor.clone()) for name, tensor in tensors.items()}
    save_file({name: t for name, t in edited.items() if t is not None}, folder / "model.safetensors",
              metadata={"format": "pt"})


def nan_weights(folder: Path) -> None:
    edit_weights(folder, lambda name, t: t.fill_(float("nan")) if name.endswith("norm_after_mlp.norm.weight") else t)


def infinite_weights(folder: Path) -> None:
    edit_weights(folder, lambda name, t: t.fill_(float("inf")) if name == "classifier.bias" else t)


def no_classifier(folder: Path) -> None:
    edit_weights(folder, lambda name, t: None if name.startswith("classifier") else t)


def truncated(folder: Path) -> None:
    whole = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(whole[: len(whole) // 2])  # a download or copy cut short


BROKEN = {
    "nan-weights": (nan_weights, r"the weights hold NaN or infinite values \(model\.layers\.0\.norm_after_mlp\.norm"
                                 r"\.weight\): the model diverged.*Train again"),
    "infinite-weights": (infinite_weights, r"NaN or infinite values \(classifier\.bias\)"),
    "no-classifier": (no_classifier, r"the weights leave its classifier head of PrimalDualTimeSeriesForClassification "
                                     r"out \(classifier\.bias, classifier\.weight\).*Save the whole model again"),
    "truncated": (truncated, r"model\.safetensors is not a safetensors file that can be read \(.*\): it is truncated "
                             r"or corrupt.*Re-download it, or re-save the model with save_pretrained"),
}


def evaluate(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = evaluate_command.main(argv)
    except SystemExit as exit_:  # argparse's parser.exit
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(BROKEN))
def test_evaluate_and_push_refuse_a_folder_whose_weights_cannot_work(model_folder, tmp_path, capsys, case):
    folder = tmp_path / model_folder.name
    shutil.copytree(model_folder, folder)
    break_folder, message = BROKEN[case]
    break_folder(folder)
    output = tmp_path / "confusion.png"
    code, err = evaluate([str(folder), *DATA, "--output", str(output)], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert re.search(message, err.splitlines()[-1]), err
    assert not output.exists()
    push_code = push_command.main([str(folder), "user/never-created", "--dry_run"])
    push_err = capsys.readouterr().err
    assert push_code == 2 and re.search(message, push_err), push_err


def test_the_unbroken_folder_evaluates_and_pushes(model_folder, tmp_path, capsys):
    summary = evaluate_command.run([str(model_folder), *DATA, "--output", str(tmp_path / "confusion.png")])
    assert summary["examples"] == 40 and 0 <= summary["accuracy"] <= 1
    assert push_command.main([str(model_folder), "user/never-created", "--dry_run"]) == 0


def five_channel_parquet(dataset, folder: Path) -> list[str]:
    """BasicMotions without its last channel, as nested Parquet files: the arguments that read them."""
    for split, rows in dataset.with_format("numpy").items():
        names = rows.features["label"].names
        table = pd.DataFrame({f"c{c}": [values[:, c].tolist() for values in rows["past_values"]] for c in range(5)})
        table["label"] = [names[label] for label in rows["label"]]
        table.to_parquet(folder / f"{split}.parquet")
    return [str(folder / "train.parquet"), "--test_file", str(folder / "test.parquet")]


def test_data_with_other_channels_is_refused_before_the_model_loads(model_folder, basic_motions, tmp_path, capsys):
    code, err = evaluate([str(model_folder), *five_channel_parquet(basic_motions, tmp_path),
                          "--output", str(tmp_path / "confusion.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"train\.parquet \(test split\) has 5 channel\(s\) per series, but the model .* was trained on 6 "
                     r"\(num_input_channels\): evaluate it on data with the channels it was trained on", err), err


def test_series_longer_than_the_model_takes_are_refused(basic_motions, tmp_path, capsys):
    folder = save_timeseries_model(tmp_path / "short-model", basic_motions, max_sequence_length=64)
    code, err = evaluate([str(folder), *DATA, "--output", str(tmp_path / "confusion.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert re.search(r"series 0 has 100 time steps, but the model .* takes at most max_sequence_length=64", err), err


def test_data_of_other_classes_names_the_models_classes(model_folder, tmp_path, capsys):
    code, err = evaluate([str(model_folder), "JapaneseVowels", "--output", str(tmp_path / "confusion.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "JapaneseVowels: the labels '1', '2'" in err and "are not among the classes of the model" in err
    assert "--class_names" not in err  # an option the evaluate command does not have


@pytest.fixture(scope="module")
def image_model_folder(tmp_path_factory) -> Path:
    """A small PrimalDualViT of two classes and its image processor, saved."""
    folder = tmp_path_factory.mktemp("saved") / "vit-two-classes"
    labels = {"id2label": {0: "ant", 1: "bee"}, "label2id": {"ant": 0, "bee": 1}}
    config = PrimalDualViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=1,
                                 num_attention_heads=3, intermediate_size=48, **labels)
    PrimalDualViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_an_image_model_on_a_dataset_of_other_classes_exits_2(image_model_folder, tmp_path, capsys):
    code, err = evaluate([str(image_model_folder), str(FIXTURES / "cifar10-sample"), "--output",
                          str(tmp_path / "c.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "The model's classes ['ant', 'bee'] are not the dataset's ['cat', 'dog', 'ship']" in err


def test_an_image_model_on_time_series_files_exits_2(image_model_folder, tmp_path, capsys):
    code, err = evaluate([str(image_model_folder), str(BASIC_MOTIONS), "--output", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "it holds BasicMotions_TEST.ts.gz, BasicMotions_TRAIN.ts" in err and "classifies images" in err



def test_a_hub_model_that_cannot_be_fetched_exits_1_without_a_traceback(tmp_path, capsys, monkeypatch):
    """Offline (or the Hub unreachable), transformers' OSError became a traceback; the network is not the
    arguments, so the status is 1 (run again), as for the push."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    code, err = evaluate(["org/model", "JapaneseVowels", "--revision", "v1", "--trust_remote_code",
                          "--output", str(tmp_path / "c.png")], capsys)
    assert code == 1 and "Traceback" not in err, err
    assert "org/model: the model could not be fetched from the Hub" in err and "run the command again" in err


def test_a_hub_repo_that_does_not_exist_exits_2(hub_env, tmp_path, capsys):
    repo_id = hub_env.hub.new_repo_id("never-created")
    code, err = evaluate([repo_id, "JapaneseVowels", "--output", str(tmp_path / "c.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert f"{repo_id}: no model config could be loaded" in err and "--revision" in err


def test_a_pushed_time_series_model_evaluates_from_the_hub_as_the_docstring_shows(model_folder, hub_env, tmp_path,
                                                                                 capsys):
    """The docstring's Hub example, `hf-primaldual-evaluate org/model DATA --revision v1 --trust_remote_code`, on
    the test Hub server, gives the local folder's accuracy."""
    repo_id = hub_env.hub.new_repo_id("evaluate-from-hub")
    assert push_command.main([str(model_folder), repo_id, "--tag", "v1"]) == 0
    capsys.readouterr()
    remote = evaluate_command.run([repo_id, *DATA, "--revision", "v1", "--trust_remote_code",
                                   "--output", str(tmp_path / "hub.png")])
    local = evaluate_command.run([str(model_folder), *DATA, "--output", str(tmp_path / "local.png")])
    assert remote["accuracy"] == local["accuracy"] and remote["examples"] == 40


def test_data_without_some_of_the_models_classes_evaluates_and_says_which(model_folder, tmp_path, capsys):
    """Evaluating on a subset of the model's classes is fine: the summary names the classes without an example
    (their recall is not measured), and the loader's warning for training ("remove them from --class_names", an
    option evaluate does not have) is not shown."""
    sources = {"TRAIN": BASIC_MOTIONS / "BasicMotions_TRAIN.ts", "TEST": BASIC_MOTIONS / "BasicMotions_TEST.ts.gz"}
    for split, source in sources.items():
        text = gzip.decompress(source.read_bytes()).decode() if source.suffix == ".gz" else source.read_text()
        (tmp_path / f"BasicMotions_{split}.ts").write_text(
            "".join(line for line in text.splitlines(True) if not line.rstrip().endswith(":Badminton")))
    summary = evaluate_command.run([str(model_folder), str(tmp_path / "BasicMotions_TRAIN.ts"), "--test_file",
                                    str(tmp_path / "BasicMotions_TEST.ts"), "--output", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert summary["examples"] == 30 and summary["classes_without_examples"] == ["Badminton"]
    assert "no example of the model's class(es) 'Badminton': their recall is not measured" in err
    assert "--class_names" not in err
