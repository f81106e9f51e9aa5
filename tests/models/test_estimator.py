"""`PrimalDualClassifier`, the scikit-learn estimator, on real arrays: BasicMotions (N, T, C) with string classes,
JapaneseVowels as a list of series of different lengths with integer classes, ItalyPowerDemand univariate (N, T).

* Three statements from arrays to a score; with the same seed, `fit` trains the model the training command trains
  (weight for weight), so the estimator is the command's protocol, not another one.
* `cross_val_score` gives the scores of a fold-by-fold `clone`/`fit`/`score` loop written out; `clone`,
  `get_params`/`set_params` behave; scikit-learn's own estimator checks pass (those that cannot apply are listed
  with the reason).
* `save_pretrained` writes the command's hub-ready folder (push accepts it, the pipeline loads it without the
  package); `from_pretrained` gives back the same predictions, also from a folder of the command.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from hf_primaldual import AttentionSettings, PrimalDualClassifier
from hf_primaldual.cli import train_timeseries as timeseries_script
from hf_primaldual.data import load_uea
from hf_primaldual.hub import list_push_files

from helpers.without_package import run_without_package

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASIC_MOTIONS = FIXTURES / "BasicMotions"
ITALY = FIXTURES / "ItalyPowerDemand"
SIZE = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
TINY = {**SIZE, "num_train_epochs": 2}


def arrays(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    rows = dataset[split].with_format("numpy")
    names = np.array(dataset[split].features["label"].names)
    return np.stack(list(rows["past_values"])), names[rows["label"]]


@pytest.fixture(scope="module")
def motions():
    dataset = load_uea(train_path=BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_path=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")
    return (*arrays(dataset, "train"), *arrays(dataset, "test"))


@pytest.fixture(scope="module")
def fitted(motions):
    x, y, _, _ = motions
    return PrimalDualClassifier(**TINY).fit(x, y)


def test_three_statements_from_arrays_to_a_score(motions):
    x_train, y_train, x_test, y_test = motions
    classifier = PrimalDualClassifier(**TINY).fit(x_train, y_train)
    score = classifier.score(x_test, y_test)
    predicted = classifier.predict(x_test)
    assert score == np.mean(predicted == y_test)
    assert list(classifier.classes_) == ["Badminton", "Running", "Standing", "Walking"]
    probabilities = classifier.predict_proba(x_test)
    assert probabilities.shape == (40, 4) and np.allclose(probabilities.sum(1), 1)
    assert (classifier.classes_[probabilities.argmax(1)] == predicted).all()


@pytest.mark.slow
def test_fit_trains_the_model_the_training_command_trains(motions, tmp_path):
    """Labels given as the header's class indices make the same dataset as the command's: same seed, same weights.
    The command runs without its per-epoch test evaluation, as `fit` does: an evaluation's data loader draws from
    torch's random generator between epochs, which changes the dropout of the next ones."""
    x_train, y_train, _, _ = motions
    header = ["Standing", "Running", "Walking", "Badminton"]
    codes = np.array([header.index(name) for name in y_train])
    classifier = PrimalDualClassifier(**TINY, random_state=3).fit(x_train, codes)
    flags = [f"--{key}={value}" for key, value in TINY.items()]
    timeseries_script.run(["--dataset", str(BASIC_MOTIONS), "--output_dir", str(tmp_path / "run"), "--seed", "3",
                           "--save_strategy", "no", "--eval_strategy", "no", "--disable_tqdm", "true", *flags])
    saved = load_file(tmp_path / "run" / "model.safetensors")
    ours = classifier.model_.state_dict()
    assert set(saved) <= set(ours)
    for name, tensor in saved.items():
        torch.testing.assert_close(ours[name], tensor, rtol=0, atol=0, msg=name)
    # the command's folder as an estimator: its classes are the header's names, its probabilities ours
    from_command = PrimalDualClassifier.from_pretrained(tmp_path / "run")
    assert list(from_command.classes_) == header
    np.testing.assert_array_equal(from_command.predict_proba(x_train[:8]), classifier.predict_proba(x_train[:8]))


@pytest.mark.slow
def test_cross_val_score_is_the_fold_by_fold_loop(motions):
    x, y, _, _ = motions
    estimator = PrimalDualClassifier(**{**SIZE, "num_train_epochs": 1})
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=0)
    scores = cross_val_score(estimator, x, y, cv=folds)
    by_hand = [clone(estimator).fit(x[train], y[train]).score(x[test], y[test]) for train, test in folds.split(x, y)]
    assert scores.tolist() == by_hand


@pytest.mark.slow
def test_series_of_any_length_integer_classes_and_univariate_arrays():
    vowels = load_uea("JapaneseVowels")
    train = vowels["train"].with_format("numpy")
    series, labels = list(train["past_values"][:90]), train["label"][:90] + 1  # classes 1..9, 7 to 29 steps
    classifier = PrimalDualClassifier(**{**SIZE, "num_train_epochs": 1}, max_sequence_length=29).fit(series, labels)
    predicted = classifier.predict(list(vowels["test"].with_format("numpy")["past_values"][:20]))
    assert predicted.dtype == labels.dtype and set(predicted) <= set(range(1, 10))

    italy = load_uea(train_path=ITALY / "ItalyPowerDemand_TRAIN.ts", test_path=ITALY / "ItalyPowerDemand_TEST.ts.gz")
    x, y = arrays(italy, "train")
    x_test, y_test = arrays(italy, "test")
    univariate = PrimalDualClassifier(**{**SIZE, "num_train_epochs": 3}).fit(x[:, :, 0], y)  # (N, T)
    assert univariate.n_channels_ == 1 and univariate.score(x_test[:, :, 0], y_test) > 0.5


def test_params_clone_and_set_params(fitted):
    params = fitted.get_params()
    assert params["attention_type"] == "bn" and params["num_train_epochs"] == 2
    twin = clone(fitted)
    assert twin.get_params() == params and not hasattr(twin, "model_")
    twin.set_params(attention_type="softmax", hidden_size=8)
    assert twin.get_params()["attention_type"] == "softmax" and fitted.get_params()["attention_type"] == "bn"
    # every setting of the attention family is a parameter, so none is out of reach
    assert {item.name for item in fields(AttentionSettings)} <= set(params)


@pytest.mark.slow
def test_save_pretrained_writes_the_commands_folder_and_from_pretrained_reads_it(fitted, motions, tmp_path):
    _, _, x_test, _ = motions
    folder = fitted.save_pretrained(tmp_path / "motions-bn")
    names = {path.name for path in folder.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "training_metrics.json", "preprocessor_config.json",
            "pipeline_timeseries.py"} <= names
    list_push_files(folder)  # hub-ready: the push command takes it
    config = json.loads((folder / "config.json").read_text())
    assert list(config["id2label"].values()) == ["Badminton", "Running", "Standing", "Walking"]
    assert "custom_pipelines" in config
    loaded = PrimalDualClassifier.from_pretrained(folder)
    np.testing.assert_allclose(loaded.predict_proba(x_test), fitted.predict_proba(x_test), rtol=0, atol=1e-6)
    assert (loaded.predict(x_test) == fitted.predict(x_test)).all()
    assert loaded.get_params()["hidden_size"] == 16 and loaded.get_params()["attention_type"] == "bn"

    # the pipeline, in a fresh process without the package, gives the same first label
    np.save(tmp_path / "x.npy", x_test[:1])
    expected = fitted.predict(x_test[:1])[0]
    run_without_package(
        f"""
        import numpy as np
        from transformers import pipeline

        pipe = pipeline(model="motions-bn", trust_remote_code=True, device="cpu")
        label = pipe(np.load("x.npy")[0])[0]["label"]
        assert label == {expected!r}, label
        """,
        tmp_path,
    )


def test_bad_targets_and_inputs_are_refused(motions, fitted):
    x, y, _, _ = motions
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        PrimalDualClassifier(**TINY).fit(x, np.linspace(0.1, 0.9, len(x)))
    with pytest.raises(ValueError, match="a classifier needs samples of at least 2 classes"):
        PrimalDualClassifier(**TINY).fit(x, np.full(len(x), "Standing"))
    with pytest.raises(ValueError, match=r"series 0 has 5 channel\(s\), but the classifier was fitted on 6"):
        fitted.predict(x[:, :, :5])
    with pytest.raises(ValueError, match="X holds 40 series but y 39 labels"):
        PrimalDualClassifier(**TINY).fit(x, y[:-1])


# The checks that cannot apply, and why.
SECOND_AXIS_IS_TIME = (
    "X's second axis is time, and series may differ in length, so there is no fixed number of features "
    "(n_features_in_); the channels are what must match, and are checked (n_channels_)"
)
NOT_CHECKED = {
    "check_n_features_in": SECOND_AXIS_IS_TIME,
    "check_n_features_in_after_fitting": SECOND_AXIS_IS_TIME,
    "check_classifiers_train": (
        "asks for a training accuracy above 0.83 on blobs read as series of 2 steps after the 1 epoch the checks "
        "train for; 10 epochs reach 0.91, too slow for a suite that fits the estimator about 60 times"
    ),
}


@pytest.mark.slow
@parametrize_with_checks(
    [PrimalDualClassifier(**{**SIZE, "hidden_size": 8, "num_train_epochs": 1}, batch_size=64)],
    expected_failed_checks=lambda estimator: NOT_CHECKED,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
