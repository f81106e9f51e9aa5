"""Registration of the package's models with transformers' Auto classes, in this process and in checkpoints.

The time-series classifier is registered with `AutoModelForSequenceClassification`: transformers has no public
Auto class for time-series classification, and a series in, one label out is what that class stands for.
"""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoFeatureExtractor,
    AutoModelForSequenceClassification,
)

from .configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from .configuration_primaldual_vit import PrimalDualViTConfig
from .feature_extraction_primaldual_timeseries import PrimalDualTimeSeriesFeatureExtractor
from .modeling_primaldual_timeseries import PrimalDualTimeSeriesForClassification, PrimalDualTimeSeriesModel
from .modeling_primaldual_vit import PrimalDualViTForImageClassification, PrimalDualViTModel

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
    """Make AutoConfig / AutoModel / AutoModelFor... resolve this package's model types (idempotent)."""
    for config_class, models in AUTO_CLASSES.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_class, model_class in models.items():
            auto_class.register(config_class, model_class, exist_ok=True)
    AutoFeatureExtractor.register(PrimalDualTimeSeriesConfig, PrimalDualTimeSeriesFeatureExtractor, exist_ok=True)
    # Saving a fitted extractor then copies its code and writes an auto_map, like the models.
    PrimalDualTimeSeriesFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
