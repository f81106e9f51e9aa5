"""Registration of the package's models with transformers' Auto classes and of its time-series pipeline, in this
process and in checkpoints; and the saving of a stock model's primal-dual attention with its config
(`configuration_primaldual_registration.persist_primal_dual_attention`).

The time-series classifier is registered with `AutoModelForSequenceClassification`: transformers has no public
Auto class for time-series classification, and a series in, one label out is what that class stands for. The
same class is the `pt_model` of the `time-series-classification` pipeline (it must be a transformers class).
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoFeatureExtractor,
    AutoModelForSequenceClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_primaldual_registration import persist_primal_dual_attention
from .configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from .configuration_primaldual_vit import PrimalDualViTConfig
from .feature_extraction_primaldual_timeseries import PrimalDualTimeSeriesFeatureExtractor
from .modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification, PrimalDualTimeSeriesModel
from .modeling_primaldual_vit import PrimalDualViTForImageClassification, PrimalDualViTModel
from .pipeline_timeseries import TASK as TIME_SERIES_TASK
from .pipeline_timeseries import PrimalDualTimeSeriesClassificationPipeline

# config class -> {Auto class: model class}
AUTO_CLASSES = {
    PrimalDualViTConfig: {
        AutoModel: PrimalDualViTModel,
        AutoModelForImageClassification: PrimalDualViTForImageClassification,
    },
    PrimalDualTimeSeriesConfig: {
        AutoModel: PrimalDualTimeSeriesModel,
        AutoModelForSequenceClassification: PrimalDualTimeSeriesForClassification,
    },
}


def register_auto_classes() -> None:
    """Make AutoConfig / AutoModel / AutoModelFor... resolve this package's model types,
    `pipeline("time-series-classification", ...)` resolve to the package's pipeline, and `save_pretrained` keep a
    stock model's primal-dual attention (idempotent)."""
    persist_primal_dual_attention()
    for config_class, models in AUTO_CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
    AutoFeatureExtractor.register(PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesFeatureExtractor, exist_ok=True)
    # Saving a fitted extractor then copies its code and writes an auto_map, like the models.
    PrimalDualTimeSeriesFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
    # Registering also makes the pipeline's save_pretrained write custom_pipelines and copy its code.
    # The check keeps a second call from logging transformers' "already registered" warning.
    registered = PIPELINE_REGISTRY.supported_tasks.get(TIME_SERIES_TASK, {}).get("impl")
    if registered is not PrimalDualTimeSeriesClassificationPipeline:
        PIPELINE_REGISTRY.register_pipeline(
            TIME_SERIES_TASK,
            pipeline_class=PrimalDualTimeSeriesClassificationPipeline,
            pt_model=AutoModelForSequenceClassification,
        )
