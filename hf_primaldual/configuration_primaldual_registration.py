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

The attention survives saving. transformers honours ``"attn_implementation": name`` in a config.json it reads but
never writes one, so a stock model run with ``primaldual_<type>`` would come back as ``sdpa``. Importing this module
(the package imports it; so does a checkpoint's remote code) wraps ``PreTrainedConfig.save_pretrained``, which
``save_pretrained``, the Trainer's checkpoints and ``save_model``, and ``push_to_hub`` all call: a config whose
model runs a primal-dual attention is saved with ``attn_implementation``, its full ``primaldual_attention`` settings
and, for transformers' own classes, an ``auto_map`` naming this module's classes, whose files are copied beside it
(:func:`persisted_fields`). Other configs are saved as transformers saves them. The saved folder then reloads with
the attention and settings it was saved with, with the package (``import hf_primaldual``) or without it
(``trust_remote_code=True``). Without either, transformers refuses the unknown attention with a ``ValueError``
naming it: a stock config read by transformers alone is the one case the attention cannot survive, and it fails
loudly rather than running another attention.
"""

import functools
import os
from typing import Any

import transformers
from transformers import PreTrainedConfig
from transformers.dynamic_module_utils import custom_object_save
from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

from .attention_interface import PREFIX, SETTINGS_ATTRIBUTE, register_primal_dual_attentions, settings_of

MODULE_NAME = __name__.rsplit(".", 1)[-1]


def auto_classes(model_type: str, architectures: list[str]) -> dict[str, str]:
    """``auto_map`` keys -> transformers class names for a checkpoint of ``model_type``: AutoConfig, AutoModel and
    every Auto class that maps the model type to one of ``architectures`` (as transformers' own lazy mappings say)."""
    config_class = CONFIG_MAPPING[model_type]
    classes = {"AutoConfig": config_class.__name__}
    for auto_name in sorted(name for name in dir(transformers) if name.startswith("AutoModel")):
        mapping = getattr(getattr(transformers, auto_name), "_model_mapping", None)
        if mapping is None or config_class not in mapping:
            continue
        mapped = mapping[config_class]
        names = [model.__name__ for model in (mapped if isinstance(mapped, tuple) else (mapped,))]
        if auto_name == "AutoModel":
            classes[auto_name] = names[0]
        elif matches := [name for name in names if name in architectures]:
            classes[auto_name] = matches[0]
    return {key: name for key, name in classes.items() if hasattr(transformers, name)}


def persisted_fields(config: PreTrainedConfig) -> dict[str, Any] | None:
    """What a config.json must hold for its model to reload with the primal-dual attention it runs, or None when
    it runs none: ``attn_implementation``, the full ``primaldual_attention`` settings and, for a transformers model
    family, ``auto_map`` entries naming this module's classes (AutoConfig, AutoModel and the Auto classes of
    ``config.architectures``) over the config's own."""
    name = getattr(config, "_attn_implementation", None)
    if not (isinstance(name, str) and name.startswith(PREFIX)):
        return None
    fields: dict[str, Any] = {"attn_implementation": name, SETTINGS_ATTRIBUTE: settings_of(config)}
    model_type = getattr(config, "model_type", None)
    if model_type in CONFIG_MAPPING_NAMES and hasattr(transformers, type(config).__name__):
        classes = auto_classes(model_type, list(getattr(config, "architectures", None) or []))
        ours = {auto: f"{MODULE_NAME}.{class_name}" for auto, class_name in classes.items()}
        fields["auto_map"] = {**(getattr(config, "auto_map", None) or {}), **ours}
    return fields


def _persisting(save_pretrained):
    """``PreTrainedConfig.save_pretrained``, saving a primal-dual attention with the config (see the module's
    docstring); the config object is left as it was."""

    @functools.wraps(save_pretrained)
    def wrapper(self: PreTrainedConfig, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs):
        fields = persisted_fields(self)
        if fields is None:
            return save_pretrained(self, save_directory, push_to_hub, **kwargs)
        if "auto_map" in fields:
            os.makedirs(save_directory, exist_ok=True)
            # transformers' own saving of custom code: this module's file and the files it imports.
            custom_object_save(__getattr__(type(self).__name__), save_directory)
        missing = object()
        previous = {key: self.__dict__.get(key, missing) for key in fields}
        for key, value in fields.items():
            setattr(self, key, value)
        try:
            return save_pretrained(self, save_directory, push_to_hub, **kwargs)
        finally:
            for key, value in previous.items():
                if value is missing:
                    self.__dict__.pop(key, None)
                else:
                    setattr(self, key, value)

    wrapper._primaldual_persists = True
    return wrapper


def persist_primal_dual_attention() -> None:
    """Make ``save_pretrained`` keep a primal-dual attention in config.json (idempotent; see the module's
    docstring)."""
    if not getattr(PreTrainedConfig.save_pretrained, "_primaldual_persists", False):
        PreTrainedConfig.save_pretrained = _persisting(PreTrainedConfig.save_pretrained)


register_primal_dual_attentions()
persist_primal_dual_attention()


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
