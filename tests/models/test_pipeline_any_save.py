"""Every time-series checkpoint is pipeline-ready without the package (issue 21): a folder written by the model's own
`save_pretrained` (with the fitted feature extractor saved beside it) and the Trainer's checkpoints and `save_model`
name the `time-series-classification` pipeline in config.json and hold its code, so
``pipeline(model=folder, trust_remote_code=True)`` classifies raw series in a process where hf_primaldual cannot be
imported, with the scores of the package's pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments

from helpers.without_package import run_without_package
from hf_primaldual import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesClassificationPipeline,
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesFeatureExtractor,
    PrimalDualTimeSeriesForClassification,
)

CLASSES = ["calm", "rising", "wavy"]


def synthetic_series(count: int, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """``count`` series of 2 channels and 8 to 16 steps, of three kinds (class = kind)."""
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for index in range(count):
        label, length = index % 3, int(rng.integers(8, 17))
        steps = np.arange(length, dtype=np.float32)[:, None]
        shape = [np.zeros_like(steps), steps / 4, np.sin(steps)][label]
        series.append((5 + 3 * shape + rng.normal(size=(length, 2))).astype(np.float32))
        labels.append(label)
    return series, labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A plain save_pretrained folder and a Trainer run's folders of one classifier, and the package's results."""
    base = tmp_path_factory.mktemp("pipeline-any-save")
    series, labels = synthetic_series(12, seed=0)
    extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=16).fit(series)
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=2, max_sequence_length=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, attention_type="bn_sh", head_scales=[1, 2], num_labels=3,
        id2label=dict(enumerate(CLASSES)), label2id={name: i for i, name in enumerate(CLASSES)},
    )
    torch.manual_seed(0)
    model = PrimalDualTimeSeriesForClassification(config)
    rows = [{"past_values": values, "label": label} for values, label in zip(series, labels)]
    args = TrainingArguments(
        output_dir=str(base / "run"), num_train_epochs=1, per_device_train_batch_size=4, save_strategy="epoch",
        use_cpu=True, report_to=[], disable_tqdm=True, remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=extractor,
                      data_collator=DataCollatorForTimeSeriesClassification(extractor))
    trainer.train()
    trainer.save_model(str(base / "trainer-save-model"))
    model.eval()
    model.save_pretrained(base / "plain")  # the model's own save ...
    extractor.save_pretrained(base / "plain")  # ... and the fitted extractor's, no pipeline object involved
    test_series, _ = synthetic_series(5, seed=1)
    np.savez(base / "series.npz", *test_series)
    package_pipeline = PrimalDualTimeSeriesClassificationPipeline(model=model, feature_extractor=extractor, device="cpu")
    (base / "expected.json").write_text(json.dumps(package_pipeline(test_series)))
    return base


def test_every_save_names_the_pipeline_and_holds_its_code(saved):
    folders = [saved / "plain", saved / "trainer-save-model", *saved.glob("run/checkpoint-*")]
    assert len(folders) == 3
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert config["custom_pipelines"]["time-series-classification"]["impl"] == (
            "pipeline_timeseries.PrimalDualTimeSeriesClassificationPipeline"
        ), folder
        for name in ("pipeline_timeseries.py", "feature_extraction_primaldual_timeseries.py", "preprocessor_config.json"):
            assert (folder / name).is_file(), (folder, name)


@pytest.mark.slow  # a fresh interpreter loading three folders' remote code: about 35 s on 2 cores
def test_pipeline_without_the_package_on_a_plain_save_and_on_the_trainers_folders(saved):
    run_without_package(
        """
        import json
        from pathlib import Path
        import numpy as np
        from transformers import pipeline

        series = list(np.load("series.npz").values())
        results = {}
        for folder in ["plain", "trainer-save-model", *map(str, sorted(Path(".").glob("run/checkpoint-*")))]:
            pipe = pipeline(model=folder, trust_remote_code=True, device="cpu")
            assert pipe.task == "time-series-classification", pipe.task
            assert "hf_primaldual" not in type(pipe).__module__
            results[folder] = pipe(series, batch_size=2)
        json.dump(results, open("results.json", "w"))
        """,
        saved,
    )
    results = json.loads((saved / "results.json").read_text())
    expected = json.loads((saved / "expected.json").read_text())
    assert len(results) == 3
    for folder, result in results.items():
        for got, reference in zip(result, expected, strict=True):
            assert [item["label"] for item in got] == [item["label"] for item in reference], folder
            assert {i["label"]: i["score"] for i in got} == pytest.approx(
                {i["label"]: i["score"] for i in reference}, abs=1e-6
            ), folder
