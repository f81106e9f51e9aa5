"""Conversion that persists: a stock transformers checkpoint written again so that it always runs a primal-dual
attention, without loading it.

(A model loaded with ``attn_implementation="primaldual_bn"`` and saved with ``save_pretrained`` keeps its attention
too, where the package is imported: see ``configuration_primaldual_registration``.) :func:`convert_checkpoint`
writes a copy of a checkpoint (a local folder or a Hub model id) whose config.json holds
``"attn_implementation": "primaldual_<type>"`` and the settings (``primaldual_attention``), so that

* with the package installed, ``import hf_primaldual`` then ``AutoModelFor...from_pretrained(folder)`` runs the
  attention (transformers honours the key in config.json once the name is registered);
* without it, ``from_pretrained(folder, trust_remote_code=True)`` runs it from the code saved beside the weights:
  ``configuration_primaldual_registration.py`` registers the attention functions on import (from copies of the
  package's attention files) and serves transformers' own classes, which ``auto_map`` names for AutoConfig,
  AutoModel and every task Auto class of the original architecture.

The weight files are copied byte for byte (never loaded and saved again), and the model card says what changed.
Before anything is written, a one-layer copy of the model runs one forward with the attention, so that a family
whose attention does not go through ``AttentionInterface``, Attention-SH on a causal model or a token layout
Attention-SH cannot infer fail at once with the attention's own message. A failed conversion leaves nothing
behind: the folder is written under a temporary name beside ``output_dir`` and renamed at the end.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import transformers
from filelock import FileLock, Timeout
from huggingface_hub import HfApi, ModelCard, ModelCardData, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import validate_repo_id
from huggingface_hub.utils.sha import sha_fileobj
from safetensors.torch import save_file
from transformers import AttentionInterface, AutoConfig
from transformers.dynamic_module_utils import custom_object_save
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from . import configuration_primaldual_registration as registration
from .attention import ATTENTION_TYPES
from .attention_interface import DEFAULT_SETTINGS, PREFIX, SETTINGS_ATTRIBUTE, attention_settings, settings_of
from .hub import (
    MODEL_CARD_TEMPLATES,
    REPO_ID_PLACEHOLDER,
    attention_formula,
    framework_versions,
    install_instructions,
)

logger = logging.getLogger(__name__)

CARD_TEMPLATE = MODEL_CARD_TEMPLATES / "primaldual-conversion.md"
REGISTRATION_MODULE = registration.__name__.rsplit(".", 1)[-1]
#: Weights transformers 5 cannot load (TensorFlow, Flax, Rust, ONNX, Core ML): not downloaded, not copied.
OTHER_FRAMEWORK_FILES = (
    "tf_model*.h5", "flax_model*.msgpack", "rust_model.ot", "*.onnx", "onnx/*", "coreml/*", "*.tflite",
)
#: Files the conversion writes itself (the card, the config) or that belong to a clone or a download, not the model.
NOT_COPIED = ("README.md", "config.json", ".git/*", ".cache/*", "*/__pycache__/*", "__pycache__/*")
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
#: Read with weights_only=True and written as model.safetensors; never copied.
PICKLE_WEIGHT_FILES = ("pytorch_model*.bin", "pytorch_model*.bin.index.json")
FAMILIES_HINT = "ViT, DeiT, BEiT, DINOv2, BERT, RoBERTa, DistilBERT, Wav2Vec2, HuBERT, PatchTST, Llama, GPT-2, ..."


class ConversionError(ValueError):
    """The arguments or the source checkpoint do not allow the conversion; the message says why and what to do."""


class SourceDownloadError(RuntimeError):
    """The source could not be downloaded from the Hub (network, server, credentials); the cause is chained."""


@dataclass(frozen=True)
class Source:
    folder: Path
    label: str  # what the card calls the source: the Hub id, or the local folder's name
    repo_id: str | None
    revision: str | None  # the commit downloaded, for a Hub source


def attention_name(attention_type: str) -> str:
    """``"bn"`` or ``"primaldual_bn"`` -> ``"primaldual_bn"``; an unknown type is refused with the valid ones."""
    bare = attention_type.removeprefix(PREFIX) if isinstance(attention_type, str) else attention_type
    if bare not in ATTENTION_TYPES:
        raise ConversionError(
            f"Unknown attention_type {attention_type!r}. Choose one of: {', '.join(ATTENTION_TYPES)} "
            f"(or the same with the {PREFIX!r} prefix)."
        )
    return PREFIX + bare


def parse_settings(text: str | None) -> dict[str, Any] | None:
    """The ``--settings`` of the script: a JSON object (None stays None); anything else is refused."""
    if text is None:
        return None
    try:
        settings = json.loads(text)
    except ValueError as error:
        example = '{"bn_eps": 1e-6}'
        raise ConversionError(f"--settings is not valid JSON ({error}): give an object, e.g. '{example}'.") from None
    if not isinstance(settings, dict):
        raise ConversionError(f"--settings must be a JSON object of {sorted(DEFAULT_SETTINGS)}, not {text!r}.")
    return settings


def convert_checkpoint(
    model_name_or_path: str | os.PathLike[str],
    attention_type: str,
    output_dir: str | os.PathLike[str],
    settings: Mapping[str, Any] | None = None,
    *,
    revision: str | None = None,
    overwrite: bool = False,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``model_name_or_path`` to ``output_dir`` so that it reloads with ``primaldual_<attention_type>``.

    Args:
        model_name_or_path: a local checkpoint folder, or a Hub model id (downloaded with ``snapshot_download``
            from ``HF_ENDPOINT``; TensorFlow/Flax/ONNX weights are left out).
        attention_type: ``bn``, ``bn_sh``, ... (or ``primaldual_bn``, ...).
        settings: the ``primaldual_attention`` settings (see ``attention_interface.DEFAULT_SETTINGS``); by default
            the source's own, if it was converted before, else the defaults. They are written in full.
        revision: the branch, tag or commit of a Hub source (the card records the commit).
        overwrite: replace an existing non-empty ``output_dir`` (only once the new folder is complete).

    Returns:
        The output folder. Raises :class:`ConversionError` for arguments or checkpoints the conversion refuses,
        :class:`SourceDownloadError` when the Hub cannot be reached. The source is never written to.
    """
    name = attention_name(attention_type)
    output = Path(output_dir).expanduser().absolute()
    _check_output_dir(output, overwrite)
    source = _resolve_source(model_name_or_path, revision, token, cache_dir)
    _check_apart(source.folder, output)
    config_dict = _read_config(source)
    settings = _resolve_settings(settings, config_dict, name.removeprefix(PREFIX))

    output.parent.mkdir(parents=True, exist_ok=True)
    with _output_lock(output):
        _check_output_dir(output, overwrite)  # again, now that no other conversion can write it
        _remove_abandoned_staging(output)
        # A hidden sibling (same file system: the final rename is atomic), made with the user's umask, not mkdtemp's
        # 0700.
        staging = output.parent / f"{_staging_prefix(output)}{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            previous_attention = config_dict.get("attn_implementation")
            classes = _write_config_and_code(staging, config_dict, name, settings)
            _check_attention_runs(staging, name, classes)
            copied = _copy_checkpoint_files(source, staging)
            card = _model_card(source, name, settings, classes, copied, previous_attention)
            card.save(staging / "README.md")
            _move_into_place(staging, output)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return output


def _staging_prefix(output: Path) -> str:
    return f".{output.name}.converting-"


@contextmanager
def _output_lock(output: Path) -> Iterator[None]:
    """One conversion at a time into ``output``: a second one is refused at once (not queued: it would write over
    the first's result)."""
    lock = FileLock(output.parent / f".{output.name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConversionError(
            f"Another conversion is writing {output} (it holds {lock.lock_file}): wait for it to finish, or choose "
            "another output folder."
        ) from None
    try:
        yield
    finally:
        # Removed while still held: a contender never waits (timeout 0), so none can hold the unlinked file.
        Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def _remove_abandoned_staging(output: Path) -> None:
    """Staging folders of this output left by a conversion that was killed (none can be live: the lock is held)."""
    for folder in output.parent.glob(f"{_staging_prefix(output)}*"):
        logger.warning("Removing %s, left by an interrupted conversion into %s.", folder, output)
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ arguments


def _check_output_dir(output: Path, overwrite: bool) -> None:
    if output.is_file():
        raise ConversionError(f"output_dir {output} is a file: give a folder.")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ConversionError(
            f"output_dir {output} exists and is not empty: choose another folder, or pass overwrite=True "
            "(--overwrite) to replace it."
        )


def _check_apart(source: Path, output: Path) -> None:
    source, output = source.resolve(), output.resolve()
    if source == output or source in output.parents or output in source.parents:
        raise ConversionError(
            f"output_dir {output} and the source {source} overlap: the conversion never writes into the source "
            "(nor replaces a folder that holds it); choose an output folder outside it."
        )


def _resolve_source(
    model_name_or_path: str | os.PathLike[str], revision: str | None, token: str | bool | None, cache_dir: Any
) -> Source:
    path = Path(model_name_or_path).expanduser()
    if path.is_dir():
        if revision is not None:
            raise ConversionError(
                f"revision={revision!r} applies to Hub ids only; {path} is a local folder: leave revision out."
            )
        return Source(path.absolute(), path.absolute().name, None, None)
    repo_id = str(model_name_or_path)
    if path.exists():
        raise ConversionError(f"{path} is a file: give a checkpoint folder or a Hub model id.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ConversionError(
            f"{repo_id!r} is neither a local folder nor a valid Hub model id (namespace/name): check the path."
        ) from None
    try:
        # The commit first, then exactly that commit: a branch that moves meanwhile cannot mix two versions.
        commit = HfApi(token=token).model_info(repo_id, revision=revision).sha
        folder = snapshot_download(
            repo_id, revision=commit, token=token, cache_dir=cache_dir, ignore_patterns=list(OTHER_FRAMEWORK_FILES)
        )
    except RevisionNotFoundError:
        raise ConversionError(
            f"{repo_id} has no revision {revision!r}: give an existing branch, tag or commit id."
        ) from None
    except RepositoryNotFoundError:
        raise ConversionError(
            f"No model repo {repo_id!r} on {HfApi().endpoint}, or it is private: check the id, or log in "
            "(HF_TOKEN or `hf auth login`) with a token that can read it."
        ) from None
    except OfflineModeIsEnabled as error:
        raise ConversionError(
            f"Offline mode (HF_HUB_OFFLINE) is on: give the local folder of {repo_id} instead of its Hub id."
        ) from error
    except (HfHubHTTPError, OSError) as error:
        raise SourceDownloadError(
            f"Could not download {repo_id} from {HfApi().endpoint}: {error}. Check the network and HF_ENDPOINT, "
            "then run the conversion again (nothing was written)."
        ) from error
    return Source(Path(folder), repo_id, repo_id, commit)


def _read_config(source: Source) -> dict[str, Any]:
    path = source.folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{source.label} has no config.json: it is not a transformers checkpoint.") from None
    except ValueError as error:
        raise ConversionError(f"{path} is not valid JSON: {error}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type in ("primaldual-vit", "primaldual-timeseries"):
        raise ConversionError(
            f"{source.label} is already a model of this package ({model_type}): its attention is its config's "
            "attention_type; load it with from_pretrained(..., attention_type='bn') and save it instead."
        )
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ConversionError(
            f"{source.label} has model_type {model_type!r}, which is not a transformers model family: the conversion "
            "serves transformers' own classes. Load a custom model with from_pretrained(..., "
            "attn_implementation='primaldual_bn') after `import hf_primaldual` instead."
        )
    own_code = {
        ref for ref in (config.get("auto_map") or {}).values()
        if not str(ref).startswith(REGISTRATION_MODULE + ".")
    }
    if own_code:
        raise ConversionError(
            f"{source.label} runs its own code (auto_map {sorted(own_code)}), which the conversion cannot carry: load "
            "it with trust_remote_code=True and attn_implementation='primaldual_...' after `import hf_primaldual`."
        )
    return config


def _resolve_settings(
    settings: Mapping[str, Any] | None, config: Mapping[str, Any], attention_type: str
) -> dict[str, Any]:
    """The settings over the defaults, checked (types, finite values, ranges; head_scales against the heads)."""
    given = config.get(SETTINGS_ATTRIBUTE) if settings is None else settings
    if given is not None and not isinstance(given, Mapping):
        raise ConversionError(f"settings must be a dict of {sorted(DEFAULT_SETTINGS)}, not {given!r}.")
    holder = SimpleNamespace(**{SETTINGS_ATTRIBUTE: dict(given or {})})
    heads = config.get("num_attention_heads")
    try:
        attention_settings(holder, attention_type, heads if isinstance(heads, int) else None)
        return settings_of(holder)
    except ValueError as error:
        raise ConversionError(str(error)) from None


# ------------------------------------------------------------------------------------------------ the folder


def _write_config_and_code(
    folder: Path, config: dict[str, Any], name: str, settings: dict[str, Any]
) -> dict[str, str]:
    """config.json with the attention, its settings and ``auto_map``; the registration module and the attention
    files it imports beside it. Returns the ``auto_map`` class names."""
    classes = registration.auto_classes(config["model_type"], list(config.get("architectures") or []))
    config = {**config, "attn_implementation": name, SETTINGS_ATTRIBUTE: settings}
    config.pop("auto_map", None)
    # transformers' own saving of custom code: the module, its relative imports, and the AutoConfig entry.
    config_class = getattr(registration, classes["AutoConfig"])
    config_class.register_for_auto_class("AutoConfig")
    custom_object_save(config_class(), folder, config=config)
    for auto_name, class_name in classes.items():
        config["auto_map"][auto_name] = f"{REGISTRATION_MODULE}.{class_name}"
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return classes


def _copy_checkpoint_files(source: Source, folder: Path) -> dict[str, str]:
    """Every file of the checkpoint but the card and the config, byte for byte, with pickle weights
    (``pytorch_model*.bin``) rewritten as safetensors; the sha256 of the weight files written.

    A link whose target lies outside the source (a local folder's link to a token file elsewhere, say) is skipped,
    with a warning: what the output holds, the push publishes. A Hub snapshot's links to its cache's blobs stay in.
    """
    written = {path.name for path in folder.iterdir()}
    # A Hub snapshot (cache/models--org--name/snapshots/<commit>) links to ../../blobs: the repo's cache folder.
    root = (source.folder.parents[1] if source.repo_id else source.folder).resolve()
    pickles = []
    for path in sorted(source.folder.rglob("*")):
        relative = path.relative_to(source.folder).as_posix()
        if path.is_dir() or relative in written or _matches(relative, NOT_COPIED + OTHER_FRAMEWORK_FILES):
            continue
        if path.is_symlink() and not path.resolve().is_relative_to(root):
            logger.warning("Skipping %s: it links to %s, outside the source checkpoint (not copied, not published).",
                           relative, path.resolve())
            continue
        if _matches(relative, PICKLE_WEIGHT_FILES):
            pickles.append(path)
            continue
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)  # follows the links of a Hub cache snapshot to the blobs
    if pickles and not any(folder.glob("*.safetensors")):
        _pickle_weights_to_safetensors(pickles, folder)
    weights = {}
    for target in sorted(folder.rglob("*.safetensors")):
        with target.open("rb") as file:
            weights[target.relative_to(folder).as_posix()] = sha_fileobj(file).hex()
    if not weights:
        raise ConversionError(f"{source.folder} holds no weights ({', '.join(WEIGHT_FILES)}): nothing to convert.")
    return weights


def _pickle_weights_to_safetensors(files: list[Path], folder: Path) -> None:
    """``pytorch_model*.bin`` (one file or shards) -> one ``model.safetensors``, read with ``weights_only=True``
    (no code in a pickle runs). Tensors that share memory (tied weights) are stored once each, as transformers
    reads them."""
    state: dict[str, torch.Tensor] = {}
    for path in files:
        if path.name.endswith(".index.json"):
            continue
        try:
            part = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ConversionError(
                f"{path.name} could not be read as plain weights ({type(error).__name__}: {error}); convert it to "
                "safetensors yourself (from_pretrained, then save_pretrained) and convert that folder."
            ) from None
        state.update(part)
    seen: set[int] = set()
    for key, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr()
        state[key] = tensor.clone().contiguous() if pointer in seen else tensor.contiguous()
        seen.add(pointer)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    logger.warning("Converted %s to model.safetensors (the output holds no pickle).",
                   ", ".join(path.name for path in files))


def _matches(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)


def _move_into_place(staging: Path, output: Path) -> None:
    if output.is_dir() and not any(output.iterdir()):
        output.rmdir()
    if not output.exists():
        staging.rename(output)
        return
    # overwrite=True: the old folder goes only once the new one is complete, under its name.
    replaced = Path(tempfile.mkdtemp(prefix=f".{output.name}.replaced-", dir=output.parent))
    output.rename(replaced / output.name)
    staging.rename(output)
    shutil.rmtree(replaced, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ the check


class _AttentionProbe:
    """The registered attention function, counting its calls and remembering the error it raised."""

    def __init__(self, function: Any) -> None:
        self.function, self.calls, self.error = function, 0, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return self.function(*args, **kwargs)
        except Exception as error:
            self.error = error
            raise


def _check_attention_runs(folder: Path, name: str, classes: Mapping[str, str]) -> None:
    """One forward of a one-layer, randomly initialised copy of the model with the attention, built from the
    converted config.json as the Auto classes will read it. transformers accepts any registered name for any
    model, also one that computes its own attention, so the calls are counted."""
    config = AutoConfig.from_pretrained(folder)  # transformers' own config class: the package is imported here
    model_type = config.model_type
    if hasattr(config, "num_hidden_layers"):
        config.num_hidden_layers = 1  # the checks depend on the attention's inputs, not on depth
    architectures = [arch for arch in (config.architectures or []) if arch in classes.values()]
    model_class = getattr(transformers, architectures[0] if architectures else classes.get("AutoModel", ""), None)
    if model_class is None:
        logger.warning("%s: transformers maps no model class to %s; %s was not run once.", folder.name, model_type,
                       name)
        return
    try:
        model = model_class(config).eval()
    except (ValueError, ImportError) as error:
        raise ConversionError(
            f"transformers refuses attn_implementation={name!r} for {model_type}: {error}\nFix: convert a family "
            f"that dispatches its attention through AttentionInterface ({FAMILIES_HINT})."
        ) from error
    inputs = _example_inputs(model, config)
    if inputs is None:
        logger.warning(
            "%s: no example input for a %s model (main input %r), so the conversion could not run %s once; check "
            "the converted model on real inputs.", folder.name, model_type, model.main_input_name, name
        )
        return
    probe = _AttentionProbe(AttentionInterface()[name])
    AttentionInterface.register(name, probe)
    try:
        with torch.no_grad():
            model(**inputs)
    except Exception as error:
        if probe.error is None:
            logger.warning(
                "%s: the example forward of %s failed outside the attention (%s: %s); check the converted model "
                "on real inputs.", folder.name, model_type, type(error).__name__, error
            )
            return
        hint = " (here: settings={...}, or --settings '{...}')" if SETTINGS_ATTRIBUTE in str(probe.error) else ""
        raise ConversionError(f"{name} cannot run this {model_type} model: {probe.error}{hint}") from probe.error
    finally:
        AttentionInterface.register(name, probe.function)
    if probe.calls == 0:
        raise ConversionError(
            f"{model_type} does not run its attention through transformers' AttentionInterface: transformers accepts "
            f"attn_implementation={name!r} for it, but its layers never call the function, so a converted checkpoint "
            f"would compute its original attention. Fix: convert a family that dispatches through AttentionInterface "
            f"({FAMILIES_HINT}); for images and time series the package's own PrimalDualViT and PrimalDualTimeSeries "
            "models have the whole family."
        )


def _example_inputs(model: Any, config: Any) -> dict[str, torch.Tensor] | None:
    """A small input for the model's main input (text, images, audio, series, spectrograms); None when unknown."""
    generator = torch.Generator().manual_seed(0)
    main = model.main_input_name
    if main == "input_ids":
        vocab_size = getattr(config.get_text_config(), "vocab_size", None) or 2
        inputs = {main: torch.arange(1, 9)[None] % vocab_size}
    elif main == "pixel_values":
        size = getattr(config, "image_size", 224)
        height, width = (size, size) if isinstance(size, int) else tuple(size)[-2:]
        inputs = {main: torch.randn(1, getattr(config, "num_channels", 3), height, width, generator=generator)}
    elif main == "input_values":
        inputs = {main: torch.randn(1, 4000, generator=generator)}  # a quarter second at 16 kHz
    elif main == "past_values":
        shape = (1, config.context_length, getattr(config, "num_input_channels", 1))
        inputs = {main: torch.randn(*shape, generator=generator)}
    elif main == "input_features":
        shape = (1, config.num_mel_bins, 2 * config.max_source_positions)
        inputs = {main: torch.randn(*shape, generator=generator)}
    else:
        return None
    if getattr(config, "is_encoder_decoder", False):
        start = getattr(config, "decoder_start_token_id", None) or 0
        inputs["decoder_input_ids"] = torch.full((1, 2), start)
    return inputs


# ------------------------------------------------------------------------------------------------ the card


def _model_card(
    source: Source,
    name: str,
    settings: dict[str, Any],
    classes: Mapping[str, str],
    weights: Mapping[str, str],
    previous_attention: str | None,
) -> ModelCard:
    attention_type = name.removeprefix(PREFIX)
    original = source.folder / "README.md"
    original_card = ModelCard.load(original) if original.is_file() else None
    data = original_card.data if original_card is not None else ModelCardData()
    data.library_name = data.library_name or "transformers"
    tags = [tag for tag in ["hf-primaldual", "primal-dual-attention", f"attention-{attention_type}"]
            if tag not in (data.tags or [])]
    data.tags = [*(data.tags or []), *tags]
    if source.repo_id is not None:
        data.base_model = source.repo_id
    task_classes = {auto: cls for auto, cls in classes.items() if auto not in ("AutoConfig", "AutoModel")}
    return ModelCard.from_template(
        data,
        template_str=CARD_TEMPLATE.read_text(encoding="utf-8"),  # a Path or, installed, an importlib Traversable
        source=source.label,
        source_is_hub=source.repo_id is not None,
        revision=source.revision,
        architecture=next(iter(task_classes.values()), classes["AutoModel"]),
        load_class=next(iter(task_classes), "AutoModel"),
        attention_name=name,
        attention_type=attention_type,
        attention_formula=attention_formula(attention_type, SimpleNamespace(**settings)),
        previous_attention=previous_attention or "transformers' default (sdpa, else eager)",
        settings=settings,
        weights=weights,
        auto_map=dict(classes),
        registration_module=f"{REGISTRATION_MODULE}.py",
        repo_id=REPO_ID_PLACEHOLDER,
        original_card=original_card.text.strip() if original_card is not None else None,
        framework_versions=framework_versions(),
        install=install_instructions(),
    )


# ------------------------------------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    """``hf-primaldual-convert`` (``scripts/convert_attention.py`` in a checkout): exit 0 converted, 1 the Hub could
    not be reached, 2 the arguments or the source are refused (the message says what to change); nothing is written
    unless it succeeds."""
    parser = argparse.ArgumentParser(
        description="Write a transformers checkpoint again so that it reloads with a primal-dual attention "
        "(attn_implementation, settings and remote code in the folder; weights copied unchanged).",
        epilog="What switching costs (docs/RESULTS.md, the conversion study): the time-series models kept their "
        "accuracy under sh with no training, a ViT lost 36 points; under bn the package's time-series classifier "
        "kept it, transformers' PatchTST lost 19 points on average and the ViT 11: evaluate the converted model, and "
        "where it dropped, fine-tune it for about a third of the original epochs at a tenth of the learning rate, "
        "which brought it to within 1.5 points of the type trained from scratch in the study (bn_sh on the ViT "
        "stayed 9 points behind on Fashion-MNIST).",
    )
    parser.add_argument("source", help="a local checkpoint folder or a Hub model id (HF_ENDPOINT / HF_TOKEN)")
    parser.add_argument("attention_type", help=f"one of {', '.join(ATTENTION_TYPES)} (or primaldual_<type>)")
    parser.add_argument("output_dir", help="the folder to write (missing or empty, unless --overwrite)")
    parser.add_argument("--settings", default=None, help="primaldual_attention settings as a JSON object, e.g. "
                        f"'{{\"bn_eps\": 1e-6}}'; the keys: {', '.join(DEFAULT_SETTINGS)}")
    parser.add_argument("--revision", default=None, help="branch, tag or commit of a Hub source")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir once done")
    args = parser.parse_args(argv)
    try:
        output = convert_checkpoint(
            args.source,
            args.attention_type,
            args.output_dir,
            parse_settings(args.settings),
            revision=args.revision,
            overwrite=args.overwrite,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SourceDownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {output}: it loads with the Auto classes after `import hf_primaldual`, or with "
          "trust_remote_code=True without the package.")
    return 0


__all__ = ["ConversionError", "SourceDownloadError", "attention_name", "convert_checkpoint", "main", "parse_settings"]
