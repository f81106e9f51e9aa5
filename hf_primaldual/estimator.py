"""`PrimalDualClassifier`: the time-series classifier of the package as a scikit-learn estimator, trained with the
transformers Trainer on the protocol of the training command.

    from hf_primaldual import PrimalDualClassifier
    classifier = PrimalDualClassifier(attention_type="bn").fit(X_train, y_train)   # X: (N, T, C), y: any labels
    classifier.score(X_test, y_test)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, PrinterCallback, set_seed

from .attention import AttentionSettings
from .data.schema import series_dataset, series_features
from .data.timeseries import arrays_to_series
from .hub import render_model_card
from .modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification
from .training import (
    TimeSeriesAttentionArguments,
    TimeSeriesModelArguments,
    TimeSeriesTrainingArguments,
    save_hub_ready_folder,
    timeseries_setup,
    timeseries_trainer,
)

# The defaults of the training command, read from its argument classes.
_SETTINGS = AttentionSettings
_MODEL = TimeSeriesModelArguments
_TRAINING = TimeSeriesTrainingArguments


class PrimalDualClassifier(ClassifierMixin, BaseEstimator):
    """A `PrimalDualTimeSeriesForClassification` (mvts-transformer encoder with a primal-dual attention) as a
    scikit-learn classifier of multivariate or univariate time series.

    `fit` trains a new model with the transformers `Trainer` on the protocol of `hf-primaldual-train-timeseries`
    (channels standardised on the training series, RAdam, learning rate 1e-3 held constant, batch 16, 100 epochs):
    the defaults below are that command's. Series may differ in length; shorter ones are padded and masked.

    Args:
        attention_type: the attention (`softmax`, `linear`, `sparse`, `bn`, `sh`, `bn_sh`, ...; default Attention-BN).
        head_scales, sh_pooling, attention_window, bn_eps, bn_mean_weight, bn_use_std: the attention's settings
            (`hf_primaldual.AttentionSettings`), as the model config takes them.
        hidden_size, num_hidden_layers, num_attention_heads, intermediate_size, dropout, pooling, norm_type: the
            model's size and build, as the training command takes them.
        num_train_epochs, learning_rate, batch_size, weight_decay: the training.
        random_state: the seed of the weights' initialisation and of the batches.
        max_sequence_length: the longest series the model takes (default: the longest training series; with the
            default `pooling="flatten"` the model cannot take longer ones).
        array_layout: how a 3-D array `X` is laid out: `"NTC"` (series, time, channels) or `"NCT"` (aeon/sktime's).
        verbose: show the Trainer's progress bar and logs.

    Attributes (after `fit`):
        classes_: the classes, sorted; `predict` returns them and `predict_proba`'s columns follow them.
        model_: the trained `PrimalDualTimeSeriesForClassification` (in eval mode).
        feature_extractor_: its fitted `PrimalDualTimeSeriesFeatureExtractor`.
        n_channels_: the number of channels C of the series.
    """

    def __init__(
        self,
        attention_type: str = TimeSeriesAttentionArguments.attention_type,
        *,
        head_scales: Sequence[int] | None = _SETTINGS.head_scales,
        sh_pooling: str = _SETTINGS.sh_pooling,
        attention_window: int = _SETTINGS.attention_window,
        bn_eps: float = _SETTINGS.bn_eps,
        bn_mean_weight: float = _SETTINGS.bn_mean_weight,
        bn_use_std: bool = _SETTINGS.bn_use_std,
        hidden_size: int = _MODEL.hidden_size,
        num_hidden_layers: int = _MODEL.num_hidden_layers,
        num_attention_heads: int = _MODEL.num_attention_heads,
        intermediate_size: int = _MODEL.intermediate_size,
        dropout: float = _MODEL.dropout,
        pooling: str = _MODEL.pooling,
        norm_type: str = _MODEL.norm_type,
        num_train_epochs: float = _TRAINING.num_train_epochs,
        learning_rate: float = _TRAINING.learning_rate,
        batch_size: int = _TRAINING.per_device_train_batch_size,
        weight_decay: float = _TRAINING.weight_decay,
        random_state: int = _TRAINING.seed,
        max_sequence_length: int | None = None,
        array_layout: str = "NTC",
        verbose: bool = False,
    ) -> None:
        self.attention_type = attention_type
        self.head_scales = head_scales
        self.sh_pooling = sh_pooling
        self.attention_window = attention_window
        self.bn_eps = bn_eps
        self.bn_mean_weight = bn_mean_weight
        self.bn_use_std = bn_use_std
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.pooling = pooling
        self.norm_type = norm_type
        self.num_train_epochs = num_train_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.max_sequence_length = max_sequence_length
        self.array_layout = array_layout
        self.verbose = verbose

    def fit(self, X: np.ndarray | Sequence[np.ndarray], y: Sequence[Any] | np.ndarray) -> PrimalDualClassifier:
        """Train a new model on the series `X` and their classes `y`.

        Args:
            X: an array (N, T, C) (or (N, C, T) with `array_layout="NCT"`), (N, T) for univariate series, or a list
                of N arrays (T_i, C) or (T_i,) of any lengths T_i.
            y: N labels of any kind scikit-learn classifies (strings, integers...).

        Returns:
            `self`, fitted.
        """
        series = self._series(X, fitting=True)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if len(y) != len(series):
            raise ValueError(f"X holds {len(series)} series but y {len(y)} labels: give one label per series.")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y has 1 class ({self.classes_[0]!r}): a classifier needs samples of at least 2 classes."
            )
        self.n_channels_ = series[0].shape[1]
        class_names = [str(name) for name in self.classes_]
        features = series_features(self.n_channels_, class_names)
        info = datasets.DatasetInfo(
            dataset_name="arrays",
            description=f"{len(series)} series given to PrimalDualClassifier.fit, {self.n_channels_} channel(s), "
                        f"{len(class_names)} classes.",
        )
        train = series_dataset(series, encoded.tolist(), features, info, "train")
        max_length = self.max_sequence_length or max(len(values) for values in series)
        set_seed(self.random_state)  # before the weights are drawn
        config, feature_extractor = timeseries_setup(train, max_length, self._attention_settings(), self._model_arguments())
        model = PrimalDualTimeSeriesForClassification(config)
        with tempfile.TemporaryDirectory(prefix="primaldual-fit-") as folder:
            trainer = timeseries_trainer(model, self._training_arguments(folder), train, None, feature_extractor)
            if not self.verbose:
                trainer.remove_callback(PrinterCallback)  # it prints the final metrics even without logging
            result = trainer.train()
        self.model_ = model.eval()
        self.feature_extractor_ = feature_extractor
        self.training_metrics_ = {
            "dataset": info.dataset_name,
            "attention_type": config.attention_type,
            "seed": self.random_state,
            "epochs": self.num_train_epochs,
            "train_runtime_s": result.metrics["train_runtime"],
            "global_step": result.global_step,
            "train_loss": result.training_loss,
            "eval_history": [],
        }
        return self

    def predict_proba(self, X: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The probability of each class (columns in the order of `classes_`) for each series: (N, n_classes)."""
        check_is_fitted(self)
        series = self._series(X)
        batch_size = TimeSeriesTrainingArguments.per_device_eval_batch_size
        probabilities = []
        with torch.inference_mode():
            for start in range(0, len(series), batch_size):
                batch = self.feature_extractor_(series[start : start + batch_size]).to(self.model_.device)
                probabilities.append(self.model_(**batch).logits.float().softmax(-1).cpu().numpy())
        return np.concatenate(probabilities).astype(np.float64)

    def predict(self, X: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The most probable class of each series: (N,), values of `classes_`."""
        probabilities = self.predict_proba(X)  # first: it says when the classifier is not fitted
        return self.classes_[probabilities.argmax(axis=1)]

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the trained model as the training command does: weights, config (with the classes as labels), the
        fitted feature extractor, the pipeline and model code, `training_metrics.json` and a model card, ready for
        `hf-primaldual-push` and `from_pretrained`. The folder."""
        check_is_fitted(self)
        hyperparameters = {
            **{k: v for k, v in {**self._attention_settings(), **asdict(self._model_arguments())}.items()
               if v is not None},
            "optimizer": "RAdam",
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "epochs": self.num_train_epochs,
            "seed": self.random_state,
        }
        card = render_model_card(
            "primaldual-timeseries",
            model_name=Path(folder).name,
            config=self.model_.config,
            dataset_name="arrays",
            dataset_description=(
                "Series given as arrays to `hf_primaldual.PrimalDualClassifier.fit`: "
                f"{self.n_channels_} channel(s), classes {', '.join(map(str, self.classes_))}. Channels standardised "
                "with training statistics."
            ),
            hyperparameters=hyperparameters,
            results=[],
            task_type="time-series-classification",
            protocol_note="Trained with `PrimalDualClassifier.fit` (final epoch); no test split was evaluated.",
        )
        return save_hub_ready_folder(
            self.model_, folder, self.training_metrics_, str(card), self.feature_extractor_
        )

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs: Any) -> PrimalDualClassifier:
        """A fitted classifier from a saved folder or Hub id of a `PrimalDualTimeSeriesForClassification` (from
        `save_pretrained` or the training command). `kwargs` go to both `from_pretrained` calls (`revision`...).

        Its parameters are the checkpoint's; its `classes_` are the model's labels as text (`fit` again to train
        anew, with the same parameters)."""
        model = AutoModelForSequenceClassification.from_pretrained(name_or_path, **kwargs).eval()
        feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, **kwargs)
        config = model.config
        attention = {item.name: getattr(config, item.name) for item in fields(AttentionSettings)}
        classifier = cls(
            **attention,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            dropout=config.hidden_dropout_prob,
            pooling=config.pooling,
            norm_type=config.norm_type,
            max_sequence_length=config.max_sequence_length,
        )
        classifier.model_ = model
        classifier.feature_extractor_ = feature_extractor
        classifier.classes_ = np.array([config.id2label[i] for i in range(config.num_labels)], dtype=object)
        classifier.n_channels_ = config.num_input_channels
        classifier.training_metrics_ = {"dataset": str(name_or_path), "eval_history": []}
        return classifier

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------------------------------------ helpers

    def _series(self, X: Any, fitting: bool = False) -> list[np.ndarray]:
        """`X` as (T_i, C) float32 series, checked against the fitted channels: a list of series of different
        lengths series by series, anything else as one array through scikit-learn's `check_array` (its messages for
        sparse, empty, 1-D or non-finite input)."""
        if not fitting:
            check_is_fitted(self)
        if isinstance(X, (list, tuple)) and len({np.shape(item) for item in X}) > 1:
            series = arrays_to_series(X, self.array_layout, "X")
            bad = next((index for index, values in enumerate(series) if not np.isfinite(values).all()), None)
            if bad is not None:
                raise ValueError(f"X: series {bad} contains NaN or infinity; fill or drop it.")
        else:
            X = check_array(X, allow_nd=True, dtype=np.float64, input_name="X")
            series = arrays_to_series(X, self.array_layout, "X")
        channels = series[0].shape[1] if fitting else self.n_channels_
        odd = next((index for index, values in enumerate(series) if values.shape[1] != channels), None)
        if odd is not None:
            reference = "series 0 has" if fitting else "the classifier was fitted on"
            raise ValueError(f"X: series {odd} has {series[odd].shape[1]} channel(s), but {reference} {channels}.")
        return [values.astype(np.float32) for values in series]

    def _attention_settings(self) -> dict[str, Any]:
        return self._fields_of(AttentionSettings)

    def _model_arguments(self) -> TimeSeriesModelArguments:
        return TimeSeriesModelArguments(**self._fields_of(TimeSeriesModelArguments))

    def _fields_of(self, arguments: type) -> dict[str, Any]:
        """The parameters of this estimator that are the fields of the dataclass `arguments` (same names)."""
        values = {item.name: getattr(self, item.name) for item in fields(arguments)}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}

    def _training_arguments(self, folder: str) -> TimeSeriesTrainingArguments:
        return TimeSeriesTrainingArguments(
            output_dir=folder,
            num_train_epochs=self.num_train_epochs,
            learning_rate=self.learning_rate,
            per_device_train_batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.random_state,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="epoch" if self.verbose else "no",
            disable_tqdm=not self.verbose,
            report_to="none",
        )


__all__ = ["PrimalDualClassifier"]
