"""The `time-series-classification` pipeline on real UEA files: JapaneseVowels (unequal lengths, so batches are
padded) and BasicMotions (class names). Scores are checked against a standardisation and softmax written out here,
batches against one-by-one calls, and a saved checkpoint against a fresh process without the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import pipeline

from helpers import FIXTURES
from helpers.without_package import run_without_package
from hf_primaldual import (
    PrimalDualTimeSeriesClassificationPipeline,
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesFeatureExtractor,
    PrimalDualTimeSeriesForClassification,
)
from hf_primaldual.data import SHIPPED_UEA_DIR, load_uea
from hf_primaldual.training import save_model_and_processor

BASIC_MOTIONS = FIXTURES / "BasicMotions"


def tiny_classifier(splits, attention_type: str) -> PrimalDualTimeSeriesClassificationPipeline:
    """A randomly initialised classifier with the dataset's class names and a feature extractor fitted on train."""
    train = splits["train"]
    names = train.features["label"].names
    longest = max(max(train["length"]), max(splits["test"]["length"]))
    extractor = PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=longest).fit(train["past_values"])
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=len(train[0]["past_values"][0]), max_sequence_length=longest, hidden_size=16,
        num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, num_labels=len(names),
        attention_type=attention_type, head_scales=[1, 2] if "sh" in attention_type else None,
        id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)},
    )
    torch.manual_seed(0)
    model = PrimalDualTimeSeriesForClassification(config).eval()
    return PrimalDualTimeSeriesClassificationPipeline(model=model, feature_extractor=extractor, device="cpu")


@pytest.fixture(scope="module")
def vowels():
    return load_uea("JapaneseVowels", data_dir=SHIPPED_UEA_DIR)


@pytest.fixture(scope="module")
def motions():
    return load_uea(
        train_path=BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_path=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz"
    )


@pytest.fixture(scope="module")
def vowels_pipe(vowels):
    # bn_sh: both padding-sensitive parts of the family (BN statistics over the keys, SH pooling).
    return tiny_classifier(vowels, "bn_sh")


def first_series(split, count: int) -> list[np.ndarray]:
    return [np.asarray(values, dtype=np.float32) for values in split["past_values"][:count]]


def expected_scores(pipe, train_split, series: np.ndarray) -> dict[str, float]:
    """Label -> probability computed here: standardisation with statistics taken from the training split by numpy
    (population std), one unpadded series through the model, softmax in float64."""
    stacked = np.concatenate([np.asarray(values, dtype=np.float64) for values in train_split["past_values"]])
    standardised = (series - stacked.mean(axis=0)) / stacked.std(axis=0)
    with torch.no_grad():
        logits = pipe.model(past_values=torch.tensor(standardised, dtype=torch.float32)[None]).logits[0]
    probabilities = torch.softmax(logits.double(), dim=-1)
    return {pipe.model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)}


def as_dict(result: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def test_scores_are_the_models_softmax_over_the_class_names(motions):
    pipe = tiny_classifier(motions, "bn")
    series = first_series(motions["test"], 5)
    results = pipe(series)
    assert len(results) == 5
    for values, result in zip(series, results):
        assert {item["label"] for item in result} == {"Standing", "Running", "Walking", "Badminton"}
        scores = [item["score"] for item in result]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-6)
        expected = expected_scores(pipe, motions["train"], values)
        assert as_dict(result) == pytest.approx(expected, abs=1e-6)


def test_one_series_gives_one_ranking_and_top_k_cuts_it(vowels, vowels_pipe):
    series = first_series(vowels["test"], 1)[0]
    ranking = vowels_pipe(series)
    assert isinstance(ranking, list) and len(ranking) == 9
    assert vowels_pipe(series, top_k=2) == ranking[:2]
    assert vowels_pipe([series]) == [ranking]


def test_function_to_apply_none_gives_the_logits(vowels, vowels_pipe):
    series = first_series(vowels["test"], 1)[0]
    logits = as_dict(vowels_pipe(series, function_to_apply="none"))
    with torch.no_grad():
        model_logits = vowels_pipe.model(**vowels_pipe.feature_extractor(series)).logits[0]
    id2label = vowels_pipe.model.config.id2label
    assert logits == pytest.approx({id2label[i]: float(value) for i, value in enumerate(model_logits)}, abs=1e-6)
    exponentials = {label: np.exp(value - max(logits.values())) for label, value in logits.items()}
    softmax = {label: value / sum(exponentials.values()) for label, value in exponentials.items()}
    assert as_dict(vowels_pipe(series)) == pytest.approx(softmax, abs=1e-6)


def test_unequal_lengths_batched_equal_one_by_one(vowels, vowels_pipe):
    series = first_series(vowels["test"], 23)
    assert len({len(values) for values in series}) > 3  # the batches really are padded
    one_by_one = [vowels_pipe(values) for values in series]
    for batch_size in (4, 23):
        batched = vowels_pipe(series, batch_size=batch_size)
        for single, joint in zip(one_by_one, batched, strict=True):
            assert [item["label"] for item in joint] == [item["label"] for item in single]
            assert as_dict(joint) == pytest.approx(as_dict(single), abs=1e-6)
    for values, single in zip(series[:3], one_by_one):
        assert as_dict(single) == pytest.approx(expected_scores(vowels_pipe, vowels["train"], values), abs=1e-6)


def test_numpy_torch_and_nested_lists_give_the_same_result(motions):
    pipe = tiny_classifier(motions, "softmax")
    series = first_series(motions["test"], 3)
    reference = pipe(series)
    assert pipe(np.stack(series)) == reference  # an array (batch, time, channels)
    assert pipe([torch.from_numpy(values) for values in series]) == reference
    assert pipe([values.tolist() for values in series]) == reference
    assert pipe(series[0].tolist()) == reference[0]  # one series as nested lists, not a batch of time steps
    assert pipe([]) == []


@pytest.mark.parametrize(
    "make_inputs, message",
    [
        (lambda s: s[0][:, :11], "The series has 11 channels but this feature extractor was fitted on 12 channels"),
        (lambda s: [s[0], s[1][:, :11]], "Input series 1: .*has 11 channels"),
        (lambda s: np.concatenate([s[0], s[0]]), "more than this feature extractor's max_sequence_length=29"),
        (lambda s: [s[0], np.where(np.arange(len(s[1]))[:, None] == 3, np.nan, s[1])],
         r"Input series 1: .*NaN or infinite values \(first at time step 3, channel 0\)"),
        # a time axis alone is one univariate series: refused for this 12-channel model, with the shape it needs
        (lambda s: s[0][:, 0], r"has shape \(19,\); expected \(time, channels\) with 12 channels: 1 dimension is read"),
    ],
    ids=["channels", "channels-in-list", "too-long", "nan", "no-channel-axis"],
)
def test_bad_series_are_refused_with_the_extractors_message(vowels, vowels_pipe, make_inputs, message):
    with pytest.raises(ValueError, match=message):
        vowels_pipe(make_inputs(first_series(vowels["test"], 2)), batch_size=2)


def test_series_longer_than_the_model_are_refused_when_the_extractor_has_no_limit(vowels, vowels_pipe):
    extractor = PrimalDualTimeSeriesFeatureExtractor(
        channel_mean=vowels_pipe.feature_extractor.channel_mean, channel_std=vowels_pipe.feature_extractor.channel_std
    )
    pipe = PrimalDualTimeSeriesClassificationPipeline(
        model=vowels_pipe.model, feature_extractor=extractor, device="cpu"
    )
    too_long = np.zeros((30, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="30 time steps but the model takes at most max_sequence_length=29"):
        pipe(too_long)


def test_bad_arguments_are_refused(vowels_pipe):
    series = np.zeros((10, 12), dtype=np.float32)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        vowels_pipe(series, top_k=0)
    with pytest.raises(ValueError, match="function_to_apply must be 'softmax', 'sigmoid' or 'none'"):
        vowels_pipe(series, function_to_apply="argmax")
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['padding'\]"):
        vowels_pipe(series, padding="max_length")
    with pytest.raises(ValueError, match="needs the checkpoint's feature extractor"):
        PrimalDualTimeSeriesClassificationPipeline(model=vowels_pipe.model, device="cpu")


@pytest.fixture(scope="module")
def saved(vowels, vowels_pipe, tmp_path_factory):
    """A checkpoint written as the training scripts write theirs, the series and the expected results."""
    folder = tmp_path_factory.mktemp("pipeline")
    save_model_and_processor(vowels_pipe.model, vowels_pipe.feature_extractor, folder / "checkpoint")
    series = first_series(vowels["test"], 9)
    np.savez(folder / "series.npz", *series)
    (folder / "expected.json").write_text(json.dumps(vowels_pipe(series)))
    return folder


def test_saved_checkpoint_names_the_pipeline_and_holds_its_code(saved):
    checkpoint = saved / "checkpoint"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["custom_pipelines"] == {
        "time-series-classification": {
            "impl": "pipeline_timeseries.PrimalDualTimeSeriesClassificationPipeline",
            "pt": ["AutoModelForSequenceClassification"],
        }
    }
    for name in ("pipeline_timeseries.py", "feature_extraction_primaldual_timeseries.py", "preprocessor_config.json"):
        assert (checkpoint / name).is_file(), name


def test_pipeline_factory_with_the_package(saved, vowels, tmp_path):
    series = [saved_series for saved_series in np.load(saved / "series.npz").values()]
    expected = json.loads((saved / "expected.json").read_text())
    # transformers runs a checkpoint's custom_pipelines only with trust_remote_code=True or an explicit class
    by_class = pipeline(
        "time-series-classification", model=str(saved / "checkpoint"),
        pipeline_class=PrimalDualTimeSeriesClassificationPipeline, device="cpu",
    )
    by_remote_code = pipeline(model=str(saved / "checkpoint"), trust_remote_code=True, device="cpu")
    # a folder saved without the pipeline object (model and extractor alone) names the pipeline too: the model's
    # own save writes it (issue 21)
    plain = tmp_path / "plain"
    unsaved = tiny_classifier(vowels, "bn_sh")  # the same seed: the weights of the saved checkpoint
    unsaved.model.save_pretrained(plain)
    unsaved.feature_extractor.save_pretrained(plain)
    assert "time-series-classification" in json.loads((plain / "config.json").read_text())["custom_pipelines"]
    # transformers runs a folder's custom_pipelines only with trust_remote_code=True (or an explicit class), even
    # where the package has registered the task
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        pipeline("time-series-classification", model=str(plain), device="cpu")
    by_task = pipeline("time-series-classification", model=str(plain), trust_remote_code=True, device="cpu")
    assert type(by_task).__name__ == PrimalDualTimeSeriesClassificationPipeline.__name__
    for pipe in (by_class, by_remote_code, by_task):
        for result, reference in zip(pipe(series, batch_size=4), expected):
            assert [item["label"] for item in result] == [item["label"] for item in reference]
            assert as_dict(result) == pytest.approx(as_dict(reference), abs=1e-6)


@pytest.mark.slow  # a fresh interpreter, without the package
def test_pipeline_without_the_package(saved):
    run_without_package(
        """
        import json
        import numpy as np
        from transformers import pipeline

        pipe = pipeline(model="checkpoint", trust_remote_code=True, device="cpu")
        assert pipe.task == "time-series-classification", pipe.task
        for part in (pipe, pipe.model, pipe.feature_extractor):
            assert "hf_primaldual" not in type(part).__module__, type(part).__module__
        series = list(np.load("series.npz").values())
        results = {"one_by_one": pipe(series), "batched": pipe(series, batch_size=4), "lists": pipe(series[0].tolist())}
        try:
            pipe([series[0], series[1][:, :5]])
        except ValueError as error:
            results["error"] = str(error)
        json.dump(results, open("results.json", "w"))
        """,
        saved,
    )
    results = json.loads((saved / "results.json").read_text())
    expected = json.loads((saved / "expected.json").read_text())
    assert results["lists"] == results["one_by_one"][0]
    for name in ("one_by_one", "batched"):
        for result, reference in zip(results[name], expected, strict=True):
            assert [item["label"] for item in result] == [item["label"] for item in reference]
            assert as_dict(result) == pytest.approx(as_dict(reference), abs=1e-6)
    assert results["error"].startswith("Input series 1: The series has 5 channels but"), results["error"]
