"""A saved model folder, whoever saved it: the package's training commands, ``save_pretrained``, the Trainer's
checkpoints and ``save_model``, or ``hf-primaldual-convert``. What it holds (:func:`read_model_folder`), whether it
can be published (:func:`check_model_weights`), and the project's model card rendered from what it holds
(:func:`folder_card`): its config, the Trainer's ``trainer_state.json`` evaluation history when there is one, its
image processor or feature extractor, and a card it held before; what the folder does not say is said unknown.

Used by `hub.plan_push` (``hf-primaldual-push``) and by the package models' ``push_to_hub``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import PreTrainedModel

from .attention_interface import PREFIX, settings_of
from .hub import (
    MODEL_CARD_TEMPLATES,
    REPO_ID_PLACEHOLDER,
    EvaluationRow,
    FolderNotReadyError,
    attention_formula,
    framework_versions,
    hub_id,
    install_instructions,
    plain_value,
    render_model_card,
)

#: The model types of the package's own models; their cards are the family templates.
PACKAGE_FAMILIES = ("primaldual-vit", "primaldual-timeseries")
#: A stock transformers model running a primal-dual attention (converted, or saved while running one).
STOCK_FAMILY = "transformers"
#: Written last by the training commands: a folder with their card but without it was interrupted.
FINISHED_MARKER = "training_metrics.json"
PROJECT_TAG = "hf-primaldual"
#: The Hub task of a stock model's card, from the Auto class its architecture belongs to.
AUTO_CLASS_TASKS = {
    "AutoModelForImageClassification": "image-classification",
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForAudioClassification": "audio-classification",
    "AutoModelForCausalLM": "text-generation",
    "AutoModelForMaskedLM": "fill-mask",
    "AutoModelForSpeechSeq2Seq": "automatic-speech-recognition",
    "AutoModelForCTC": "automatic-speech-recognition",
    "AutoModelForSeq2SeqLM": "text2text-generation",
}
#: Keys of a Trainer evaluation log that are bookkeeping, not metrics.
_EVAL_BOOKKEEPING = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step"}


@dataclass
class ModelFolder:
    """What a saved model folder holds (read by :func:`read_model_folder`)."""

    path: Path
    config: dict[str, Any]
    family: str  # one of PACKAGE_FAMILIES, or STOCK_FAMILY
    card: ModelCard | None  # its README.md
    trainer_state: dict[str, Any] | None
    trainer_state_file: Path | None
    processor: dict[str, Any] | None  # its preprocessor_config.json

    @property
    def attention(self) -> str:
        """``attention_type`` of a package model, ``primaldual_<type>`` of a stock one."""
        key = "attn_implementation" if self.family == STOCK_FAMILY else "attention_type"
        return str(self.config.get(key) or "softmax")

    @property
    def has_project_card(self) -> bool:
        """Whether its README.md is a card of this project (the training commands', a conversion's)."""
        return self.card is not None and PROJECT_TAG in (self.card.data.tags or [])


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise FolderNotReadyError(f"{path} is not valid JSON ({err}): {what} cannot be read.") from err
    if not isinstance(value, dict):
        raise FolderNotReadyError(f"{path} is not a JSON object: {what} cannot be read.")
    return value


def read_model_folder(folder: str | Path) -> ModelFolder:
    """The saved model in ``folder``: a model of this package (``model_type`` primaldual-vit / -timeseries) or a
    stock transformers model whose config.json runs a primal-dual attention (``attn_implementation:
    primaldual_<type>``), with its safetensors weights.

    Raises `FolderNotReadyError` for what cannot be published as such a model: no config.json or no weights, a
    model of neither kind, and a folder of the training commands whose final save did not finish (their card, no
    ``training_metrics.json``).
    """
    root = Path(folder)
    config = _read_json(root / "config.json", "the model's config")
    if config is None:
        checkpoints = sorted(root.glob("checkpoint-*"))
        hint = (
            f" It holds Trainer checkpoints: publish one of them (e.g. {checkpoints[-1].name}), or save the final "
            "model with trainer.save_model(folder)." if checkpoints else
            " Save a model into it with save_pretrained (or Trainer.save_model) first."
        )
        raise FolderNotReadyError(f"{root} holds no config.json: it is not a saved model.{hint}")
    model_type = config.get("model_type")
    attention = str(config.get("attn_implementation") or "")
    if model_type in PACKAGE_FAMILIES:
        family = model_type
    elif attention.startswith(PREFIX):
        family = STOCK_FAMILY
    else:
        raise FolderNotReadyError(
            f"{root} holds a {model_type!r} model that runs no primal-dual attention (config.json has no "
            f"attn_implementation: {PREFIX}<type>): it is neither a model of this package nor a converted one. "
            f"Convert it first (hf-primaldual-convert {root} bn OUTPUT), or publish it with huggingface_hub's "
            "upload_folder."
        )
    if not any(root.glob("*.safetensors")):
        raise FolderNotReadyError(
            f"{root} holds a config.json but no safetensors weights (model.safetensors): save the model again with "
            "save_pretrained, which writes them."
        )
    check_weight_files(root)
    card = None
    if (root / "README.md").is_file():
        try:
            card = ModelCard.load(root / "README.md")
        except Exception as err:  # huggingface_hub raises ValueError and YAML errors alike
            raise FolderNotReadyError(f"{root / 'README.md'} has invalid metadata: {err}") from err
    found = ModelFolder(root, config, family, card, None, None, _read_json(root / "preprocessor_config.json",
                                                                            "the processor"))
    if family in PACKAGE_FAMILIES and found.has_project_card and not (root / FINISHED_MARKER).is_file():
        raise FolderNotReadyError(
            f"{root} is not a finished output folder: {FINISHED_MARKER} missing. It holds a card of the training "
            "commands, so its run has not finished (or was interrupted during its final save): finish or resume it "
            "(--resume_from_checkpoint last) first, or publish one of its checkpoint-N folders."
        )
    state_file = root / "trainer_state.json"
    if not state_file.is_file():
        checkpoints = sorted(root.glob("checkpoint-*/trainer_state.json"), key=_checkpoint_step)
        state_file = checkpoints[-1] if checkpoints else None
    if state_file is not None:
        found.trainer_state, found.trainer_state_file = _read_json(state_file, "the Trainer's state"), state_file
    return found


def _checkpoint_step(state_file: Path) -> int:
    match = re.search(r"checkpoint-(\d+)$", state_file.parent.name)
    return int(match.group(1)) if match else -1


def model_class(found: ModelFolder) -> type[PreTrainedModel]:
    """The class the folder's ``architectures`` name (the package's or transformers'); a package model without
    them is taken as its family's classifier."""
    import transformers

    import hf_primaldual

    for name in found.config.get("architectures") or []:
        for module in (hf_primaldual, transformers):
            candidate = getattr(module, name, None)
            if isinstance(candidate, type) and issubclass(candidate, PreTrainedModel):
                return candidate
    if found.family == "primaldual-vit":
        return hf_primaldual.PrimalDualViTForImageClassification
    if found.family == "primaldual-timeseries":
        return hf_primaldual.PrimalDualTimeSeriesForClassification
    return transformers.AutoModel


class UnusableModelError(FolderNotReadyError):
    """Saved weights that cannot give a working model: a weights file that cannot be read (truncated, corrupt),
    weights that leave part of the model out (a classifier head then random) or of another shape, or NaN or
    infinite values. The message names the file or the tensors and the fix. Refused by the push (a
    `FolderNotReadyError`: nothing is sent) and by the evaluate command (exit 2), through :func:`load_checked_model`."""


def check_weight_files(folder: str | os.PathLike) -> None:
    """Refuse (`UnusableModelError`) a ``*.safetensors`` file of ``folder`` whose header cannot be read or does not
    cover the file: a download, copy or save cut short, or a file that is not safetensors. Only the headers are read.

    Without this, transformers fails deep inside ``from_pretrained`` with safetensors' "incomplete metadata, file not
    fully covered", which names no file."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except (SafetensorError, OSError, ValueError) as err:
            raise UnusableModelError(
                f"{path} is not a safetensors file that can be read ({err}): it is truncated or corrupt (a download, "
                "copy or save cut short), or not safetensors at all (a pickle under that name). Re-download it, or "
                "re-save the model with save_pretrained."
            ) from err


def load_checked_model(model_class: type, source: str | os.PathLike, **kwargs: Any) -> PreTrainedModel:
    """``model_class.from_pretrained(source, **kwargs)`` (a model class or a transformers Auto class; ``source`` a
    folder or a Hub id), refusing (`UnusableModelError`) what would load as a model that does not work:

    - a weights file that cannot be read (`check_weight_files`, for a local folder), or any other load failure;
    - weights that leave part of the model out or are of another shape: transformers would only warn and start
      them at random (a folder without its classifier head would score as a random classifier);
    - NaN or infinite weights or buffers (a diverged training run): every prediction would be the argmax of NaN.

    The one check of the push (`check_model_weights`) and of the evaluate command; the model, in eval mode.
    """
    from safetensors import SafetensorError

    if Path(source).is_dir():
        check_weight_files(source)
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise UnusableModelError(f"{source}: the model cannot be loaded ({err}).") from err
    name = type(model).__name__
    missing = sorted(info["missing_keys"]) + sorted(entry[0] for entry in info["mismatched_keys"])
    if missing:
        head = [key for key in missing if re.search(r"(^|\.)(classifier|head|score|lm_head)\b", key)]
        what = "its classifier head" if head else "part of the model"
        raise UnusableModelError(
            f"{source}: the weights leave {what} of {name} out ({_listed(missing, 6)}): loaded, those weights would "
            "be random, and so would its predictions. Save the whole model again with save_pretrained (or "
            "Trainer.save_model)."
        )
    bad = [key for key, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        raise UnusableModelError(
            f"{source}: the weights hold NaN or infinite values ({_listed(bad, 3)}): the model diverged, and every "
            "prediction would be meaningless. Train again (e.g. a lower learning rate) or use an earlier checkpoint."
        )
    return model.eval()


def _listed(names: list[str], shown: int) -> str:
    return ", ".join(names[:shown]) + (f", ... ({len(names)} in all)" if len(names) > shown else "")


def check_model_weights(found: ModelFolder) -> PreTrainedModel:
    """Load the folder's model as its config names it (`load_checked_model`): refuse weights that cannot be read,
    that leave part of it out (a classifier head missing, weights of another shape) or hold NaN or infinite values.
    The model."""
    return load_checked_model(model_class(found), found.path)


# ------------------------------------------------------------------------------------------------ the card


def _evaluations(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    history = (state or {}).get("log_history") or []
    return [entry for entry in history if any(k.startswith("eval_") and k not in _EVAL_BOOKKEEPING for k in entry)]


def _metrics(entry: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_") and k not in _EVAL_BOOKKEEPING}


def _training_facts(found: ModelFolder) -> tuple[dict[str, Any], list[str]]:
    """What the Trainer's state says about training (rows for the card), and what stays unknown."""
    unknown = ["the training data"]
    state = found.trainer_state
    if state is None:
        unknown.append("how it was trained (no trainer_state.json in the folder or its checkpoints)")
        return {}, unknown
    facts: dict[str, Any] = {}
    source = found.trainer_state_file.relative_to(found.path).as_posix()
    facts["training state"] = f"`{source}` (transformers' Trainer)"
    for key, label in (("epoch", "epochs trained"), ("num_train_epochs", "epochs planned"),
                       ("global_step", "optimizer steps"), ("train_batch_size", "batch size per device")):
        if state.get(key) is not None:
            facts[label] = round(state[key], 4) if isinstance(state[key], float) else state[key]
    rates = [entry["learning_rate"] for entry in state.get("log_history") or [] if "learning_rate" in entry]
    if rates:
        facts["learning rate (first and last logged)"] = f"{rates[0]:.3g} → {rates[-1]:.3g}"
    if state.get("best_model_checkpoint"):
        facts["best checkpoint (kept by the Trainer)"] = (
            f"{Path(state['best_model_checkpoint']).name}, {state.get('best_metric')}"
        )
    unknown.append(
        "the optimizer, weight decay, learning-rate schedule and seed (the Trainer pickles its arguments into "
        "training_args.bin, which is neither read nor published)"
    )
    return facts, unknown


def _evaluation_note(found: ModelFolder) -> tuple[list[EvaluationRow], str]:
    """The last evaluation as result rows, and the whole evaluation history as a table."""
    evaluations = _evaluations(found.trainer_state)
    if not evaluations:
        return [], "No evaluation is recorded in the folder."
    last = evaluations[-1]
    rows = [EvaluationRow(f"evaluation at epoch {last.get('epoch', '?')}", metric, round(value, 4))
            for metric, value in _metrics(last).items() if isinstance(value, (int, float))]
    names = sorted({name for entry in evaluations for name in _metrics(entry)})
    lines = ["| epoch | step | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for entry in evaluations:
        values = _metrics(entry)
        cells = [f"{values[n]:.4g}" if isinstance(values.get(n), float) else str(values.get(n, "")) for n in names]
        lines.append(f"| {entry.get('epoch', '')} | {entry.get('step', '')} | " + " | ".join(cells) + " |")
    note = (
        "Evaluation history from the Trainer's `trainer_state.json`, on the evaluation set the run was given "
        "(which one is not recorded):\n\n" + "\n".join(lines)
    )
    return rows, note


def _processor_description(found: ModelFolder, config: Any) -> str:
    processor = found.processor
    if found.family == "primaldual-timeseries":
        if processor is None:
            return ("No feature extractor is saved beside the weights, so the pipeline cannot run: save the fitted "
                    "PrimalDualTimeSeriesFeatureExtractor into the folder (the Trainer does, as its processing_class).")
        if processor.get("channel_mean") is None:
            return "The saved feature extractor is not fitted: series reach the model unstandardised."
        return (f"Each of the {len(processor['channel_mean'])} channels is standardised with the statistics saved in "
                "preprocessor_config.json (fitted on the training series).")
    if found.family == "primaldual-vit":
        if processor is None:
            return "No image processor is saved beside the weights: pass images normalised as in training."
        size = processor.get("size") or {}
        size = f"{size.get('height')}x{size.get('width')}" if "height" in size else size
        return (f"Images are resized to {size} and normalised with mean {processor.get('image_mean')} and std "
                f"{processor.get('image_std')} (preprocessor_config.json).")
    return ""


def _labels(config: dict[str, Any]) -> str:
    labels = list((config.get("id2label") or {}).values())
    if not labels:
        return ""
    shown = ", ".join(map(str, labels[:10])) + (", ..." if len(labels) > 10 else "")
    return f"{len(labels)} classes ({shown})."


def _original_card(found: ModelFolder) -> str | None:
    return found.card.text.strip() or None if found.card is not None and not found.has_project_card else None


def folder_card(found: ModelFolder, model: PreTrainedModel, repo_id: str = REPO_ID_PLACEHOLDER) -> str:
    """The project's card for the folder's model, from what the folder holds (see the module's docstring)."""
    facts, unknown = _training_facts(found)
    results, note = _evaluation_note(found)
    name = repo_id  # the placeholder becomes the repo id when the card is pushed
    base_model = hub_id(found.card.data.base_model) if found.card is not None and isinstance(
        found.card.data.base_model, str) else None
    if found.family in PACKAGE_FAMILIES:
        description = " ".join(part for part in (
            "The training data is not recorded in this folder (saved by `save_pretrained` or the Trainer, not by the "
            "package's training commands).", _labels(found.config), _processor_description(found, model.config),
        ) if part)
        card = render_model_card(
            found.family, model_name=name, config=model.config, dataset_name=None, dataset_description=description,
            hyperparameters=facts, results=results, repo_id=repo_id,
            protocol_note=f"{note}\n\nNot recorded in the folder, so unknown here: {'; '.join(unknown)}.",
            limitations="Check the accuracy on your own data before use: the folder does not say what the model "
            "was trained or evaluated on.", base_model=base_model, original_card=_original_card(found),
        )
        return str(card)
    return str(_stock_card(found, model, name, facts, results, note, unknown, base_model, repo_id))


def _stock_card(found, model, name, facts, results, note, unknown, base_model, repo_id) -> ModelCard:
    from .configuration_primaldual_registration import auto_classes

    attention_name = found.attention
    attention_type = attention_name.removeprefix(PREFIX)
    architecture = type(model).__name__
    classes = auto_classes(model.config.model_type, [architecture])
    load_class = next((auto for auto in classes if auto not in ("AutoConfig", "AutoModel")), "AutoModel")
    settings = settings_of(model.config)
    data = ModelCardData(
        model_name=name, library_name="transformers",
        tags=[PROJECT_TAG, "primal-dual-attention", f"attention-{attention_type}", model.config.model_type],
        pipeline_tag=AUTO_CLASS_TASKS.get(load_class, "feature-extraction" if load_class == "AutoModel" else None),
        base_model=base_model,
    )
    return ModelCard.from_template(
        data,
        template_str=(MODEL_CARD_TEMPLATES / "primaldual-transformers.md").read_text(encoding="utf-8"),
        model_name=name, architecture=architecture, model_type=model.config.model_type,
        attention_name=attention_name, attention_formula=attention_formula(attention_type, _Settings(settings)),
        settings=settings, base_model=base_model,
        training_description=" ".join(p for p in ("The training data is not recorded in this folder.",
                                                   _labels(found.config)) if p),
        hyperparameters=plain_value(facts), results=results, protocol_note=note, unknown="; ".join(unknown),
        load_class=load_class, repo_id=repo_id, install=install_instructions(),
        framework_versions=framework_versions(), original_card=_original_card(found),
    )


class _Settings:
    """The settings dict read as attributes (what `attention_formula` takes)."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in settings.items() if v is not None})


__all__ = [
    "ModelFolder",
    "UnusableModelError",
    "check_model_weights",
    "check_weight_files",
    "folder_card",
    "load_checked_model",
    "model_class",
    "read_model_folder",
]
