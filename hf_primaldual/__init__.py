"""hf_primaldual: the primal-dual attention family (Nguyen et al., ICLR 2023) for Hugging Face Transformers.

Importing the package registers its models with transformers' Auto classes, and the attention family in
transformers' ``AttentionInterface`` as ``primaldual_<attention_type>`` for any model that dispatches through it.
"""

from .attention_interface import REGISTERED_ATTENTIONS, register_primal_dual_attentions
from .attention import (
    ATTENTION_IMPLEMENTATIONS,
    ATTENTION_TYPES,
    AttentionKernel,
    AttentionOptions,
    AttentionSettings,
    AttentionSpec,
    TokenLayout,
    parse_attention_type,
    primal_dual_attention,
    register_kernel,
)
from .configuration_attention import PrimalDualAttentionConfig
from .configuration_primaldual_timeseries import PrimalDualTimeSeriesConfig
from .configuration_primaldual_vit import PrimalDualViTConfig
from .feature_extraction_primaldual_timeseries import (
    DataCollatorForTimeSeriesClassification,
    PrimalDualTimeSeriesFeatureExtractor,
)
from .modeling_primaldual_timeseries import (
    PrimalDualTimeSeriesForClassification,
    PrimalDualTimeSeriesModel,
    PrimalDualTimeSeriesPreTrainedModel,
)
from .modeling_primaldual_vit import (
    PrimalDualViTForImageClassification,
    PrimalDualViTModel,
    PrimalDualViTPreTrainedModel,
)
from .modeling_attention import PrimalDualSelfAttention
from .pipeline_timeseries import PrimalDualTimeSeriesClassificationPipeline
from .registration import AUTO_CLASSES, register_auto_classes

register_auto_classes()
register_primal_dual_attentions()


def __getattr__(name: str):
    # The scikit-learn estimator imports the Trainer, datasets and scikit-learn: only when it is asked for.
    if name == "PrimalDualClassifier":
        from .estimator import PrimalDualClassifier

        return PrimalDualClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
