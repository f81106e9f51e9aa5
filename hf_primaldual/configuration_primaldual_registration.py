"""Remote code of a checkpoint converted by ``hf_primaldual.conversion``: transformers' own classes, run with a
primal-dual attention where the package is not installed.

Importing this module registers the ``primaldual_<type>`` attention functions in transformers'
``AttentionInterface`` (from the copies of the package's attention files saved beside it), so that the
``attn_implementation`` written in config.json is valid by the time the model is built. ``AutoConfig`` imports it
first when ``trust_remote_code=True``.

``auto_map`` names the checkpoint's classes in this module under transformers' own names
(``configuration_primaldual_registration.ViTConfig``, ``...ViTForImageClassification``): each resolves to a
subclass of the transformers class of that name, made on first use. One generic module thus serves every model
family; the subclass (rather than transformers' class itself) keeps ``register_for_auto_class``, which transformers
calls on remote classes, from marking its stock classes as custom code in the loading process. The subclasses
add nothing else.
"""

import transformers

from .attention_interface import register_primal_dual_attentions

register_primal_dual_attentions()


def __getattr__(name: str) -> type:
    stock = getattr(transformers, name, None) if not name.startswith("_") else None
    served = (transformers.PreTrainedConfig, transformers.PreTrainedModel)
    if not isinstance(stock, type) or not issubclass(stock, served):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    namespace = {"__module__": __name__, "__doc__": stock.__doc__}
    if issubclass(stock, transformers.PreTrainedModel):
        if getattr(stock, "config_class", None) is not None:
            # transformers checks that a remote model's config_class has the name of the config it is given.
            namespace["config_class"] = __getattr__(stock.config_class.__name__)
        # The subclass runs transformers' own modelling, so it loads as transformers' class does: with the weight-name
        # conversions transformers applies to its own classes only (legacy checkpoint names), and its own init.
        namespace["is_custom_code"] = classmethod(lambda cls: False)
    subclass = type(name, (stock,), namespace)
    globals()[name] = subclass
    return subclass
