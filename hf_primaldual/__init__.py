"""hf_primaldual: the primal-dual attention family (Nguyen et al., ICLR 2023) for Hugging Face Transformers.

Importing the package registers its models with transformers' Auto classes, and the attention family in
transformers' ``AttentionInterface`` as ``primaldual_<attention_type>`` for any model that dispatches through it.
"""

from .attention_interface import REGISTERED_ATTENTIONS, register_primal_dual_attentions
from .attention import ATTENTION_TYPES, AttentionOptions, AttentionSpec, TokenLayout, parse_attention_type
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
from .modeling_attention import ATTENTION_IMPLEMENTATIONS, PrimalDualSelfAttention, primal_dual_attention
from .pipeline_timeseries import PrimalDualTimeSeriesClassificationPipeline
from .registration import AUTO_CLASSES, register_auto_classes

register_auto_classes()
register_primal_dual_attentions()

__version__ = "0.1.0"
