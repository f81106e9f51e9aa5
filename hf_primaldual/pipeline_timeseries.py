"""`time-series-classification` pipeline for the PrimalDualTimeSeries classifier: raw series in, ranked labels out.

transformers has no time-series pipeline. This module imports only transformers, torch, numpy and the feature
extractor's module beside it, so `Pipeline.save_pretrained` can copy it into a checkpoint (`custom_pipelines` in
config.json) and `pipeline(model=folder_or_hub_id, trust_remote_code=True)` runs it without hf_primaldual.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from transformers import Pipeline
from transformers.pipelines.base import build_pipeline_init_args
from transformers.pipelines.text_classification import ClassificationFunction, sigmoid, softmax
from transformers.utils import add_end_docstrings, logging

from .feature_extraction_primaldual_timeseries import SeriesInput, _as_batch

logger = logging.get_logger(__name__)

TASK = "time-series-classification"


class _Numbered(NamedTuple):
    """A series of a list input with its position, so that an error can say which series is wrong."""

    position: int
    series: SeriesInput


@add_end_docstrings(
    build_pipeline_init_args(has_feature_extractor=True),
    r"""
        top_k (`int`, *optional*):
            Keep the `top_k` most likely labels of each series; all labels when not given.
        function_to_apply (`str`, *optional*):
            `"softmax"`, `"sigmoid"` or `"none"` (the logits). By default as transformers' text-classification
            pipeline: softmax for single-label classification, sigmoid for multi-label or a single label, none for
            regression.""",
)
class PrimalDualTimeSeriesClassificationPipeline(Pipeline):
    """
    Classifies multivariate time series with a [`PrimalDualTimeSeriesForClassification`] checkpoint: the checkpoint's
    feature extractor standardises each channel and pads the batch with an attention mask, the model gives the
    logits, and each series gets its labels ranked by score.

    Example:

    ```python
    >>> import numpy as np
    >>> from transformers import pipeline

    >>> classifier = pipeline(model="outputs/timeseries-JapaneseVowels-bn", trust_remote_code=True)
    >>> classifier(np.random.randn(20, 12), top_k=2)
    [{'label': '3', 'score': 0.61}, {'label': '7', 'score': 0.2}]
    ```
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.check_model_type(["PrimalDualTimeSeriesForClassification"])
        if self.feature_extractor is None:
            raise ValueError(
                "The time-series-classification pipeline needs the checkpoint's feature extractor (its "
                "preprocessor_config.json holds the channel statistics the model was trained with). Save the fitted "
                "PrimalDualTimeSeriesFeatureExtractor with the model, or pass feature_extractor=... to pipeline()."
            )
        if not getattr(self.feature_extractor, "is_fitted", True):
            logger.warning(
                "The feature extractor is not fitted: series reach the model unstandardised, unlike in training. "
                "Fit it on the training series (feature_extractor.fit(...)) and save it with the model."
            )

    def _sanitize_parameters(
        self, top_k: int | None = None, function_to_apply: str | ClassificationFunction | None = None, **unknown: Any
    ) -> tuple[dict, dict, dict]:
        if unknown:
            raise TypeError(
                f"The time-series-classification pipeline got unknown argument(s) {sorted(unknown)}; it takes top_k, "
                "function_to_apply, batch_size, num_workers and device."
            )
        postprocess_params: dict[str, Any] = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer or None (all labels), got {top_k!r}.")
            postprocess_params["top_k"] = top_k
        if function_to_apply is not None:
            try:
                postprocess_params["function_to_apply"] = ClassificationFunction(str(function_to_apply).lower())
            except ValueError:
                raise ValueError(
                    f"function_to_apply must be 'softmax', 'sigmoid' or 'none', got {function_to_apply!r}."
                ) from None
        return {}, {}, postprocess_params

    def __call__(
        self, inputs: SeriesInput | Sequence[SeriesInput], **kwargs: Any
    ) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """
        Classify one series or several.

        Args:
            inputs: one series of shape (time, channels), a list of them (any lengths), or an array of shape
                (batch, time, channels); numpy, torch or nested lists. A `datasets.Dataset` or a generator of series
                is streamed, as in every transformers pipeline.
            top_k, function_to_apply: as in the constructor, for this call.
            batch_size: series per model call; batches are padded with an attention mask, and the results do not
                depend on it.

        Returns:
            For one series, a list of `{"label": name, "score": float}` sorted by decreasing score; for several, one
            such list per series, in input order.
        """
        if not isinstance(inputs, (list, tuple, np.ndarray)) and not hasattr(inputs, "ndim"):
            return super().__call__(inputs, **kwargs)  # Dataset, KeyDataset, generator: streamed as they come
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            return []
        batch = _as_batch(inputs, self.model.config.num_input_channels)
        if len(batch) == 1 and batch[0] is inputs:
            return super().__call__([inputs], **kwargs)[0]
        return super().__call__([_Numbered(position, series) for position, series in enumerate(batch)], **kwargs)

    def preprocess(self, inputs: SeriesInput | _Numbered) -> dict[str, Any]:
        position = None
        if isinstance(inputs, _Numbered):
            position, inputs = inputs
        try:
            features = self.feature_extractor(inputs, return_tensors="pt")
            length, limit = features["past_values"].shape[1], self.model.config.max_sequence_length
            if length > limit:
                raise ValueError(
                    f"The series has {length} time steps but the model takes at most max_sequence_length={limit}: "
                    f"truncate or downsample it (e.g. series[:{limit}]), or use a model trained on longer series."
                )
        except ValueError as error:
            if position is None:
                raise
            # Keep the extractor's message whole; only say which series of the list it is about.
            raise ValueError(f"Input series {position}: {error}") from error
        return dict(features)

    def _forward(self, model_inputs: dict[str, Any]) -> Any:
        return self.model(**model_inputs)

    def postprocess(
        self,
        model_outputs: Any,
        function_to_apply: ClassificationFunction | None = None,
        top_k: int | None = None,
    ) -> list[dict[str, Any]]:
        function = function_to_apply or self._default_function()
        logits = model_outputs["logits"][0].float().numpy()
        if function == ClassificationFunction.SOFTMAX:
            scores = softmax(logits)
        elif function == ClassificationFunction.SIGMOID:
            scores = sigmoid(logits)
        else:
            scores = logits
        id2label = self.model.config.id2label
        ranked = sorted(
            ({"label": id2label[index], "score": float(score)} for index, score in enumerate(scores)),
            key=lambda item: item["score"],
            reverse=True,
        )
        return ranked if top_k is None else ranked[:top_k]

    def _default_function(self) -> ClassificationFunction:
        # The choice of transformers' text-classification pipeline, so both read a config the same way.
        config = self.model.config
        if config.problem_type == "regression":
            return ClassificationFunction.NONE
        if config.problem_type == "multi_label_classification" or config.num_labels == 1:
            return ClassificationFunction.SIGMOID
        return ClassificationFunction.SOFTMAX


def custom_pipelines_entry() -> dict[str, dict[str, Any]]:
    """The ``custom_pipelines`` entry of config.json that makes ``pipeline(model=folder, trust_remote_code=True)``
    run this pipeline from the folder's copy of this module: what transformers' `Pipeline.save_pretrained` writes for
    a registered pipeline, without needing the registration (the package's models write it on every save)."""
    module = PrimalDualTimeSeriesClassificationPipeline.__module__.rsplit(".", 1)[-1]
    return {
        TASK: {
            "impl": f"{module}.{PrimalDualTimeSeriesClassificationPipeline.__name__}",
            "pt": ["AutoModelForSequenceClassification"],
        }
    }


__all__ = ["TASK", "PrimalDualTimeSeriesClassificationPipeline", "custom_pipelines_entry"]
