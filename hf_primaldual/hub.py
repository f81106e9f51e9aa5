"""The Hub side of the package.

* Model cards: the templates of `model_cards/` (installed as the package data `hf_primaldual.model_cards`)
  rendered with huggingface_hub's ModelCard, the evaluation results as `model-index` entries (`render_model_card`).
* Publishing a saved model folder to a Hub repo, whoever saved it (`push_output_folder`, behind
  ``hf-primaldual-push``; `push_from_trainer` for the Trainer's own `--push_to_hub` flags; `push_model` for the
  package models' own ``push_to_hub``), with the project's card (rendered from the folder when it has none, see
  `model_folders`). Only the real
  `HfApi` calls are used (create_repo, create_branch, create_commit, create_tag); the endpoint and the token come
  from the standard environment (``HF_ENDPOINT``, ``HF_TOKEN`` or the token of ``hf auth login``), so the same code
  serves the public Hub and any Hub-compatible server. Every Hub failure is re-raised as `HubPushError`, whose
  message names the problem and the fix; the local folder is only read, never changed.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import (
    CommitInfo,
    CommitOperationAdd,
    CommitOperationDelete,
    EvalResult,
    HfApi,
    ModelCard,
    ModelCardData,
    constants,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalTokenNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import get_token, validate_repo_id

from .attention import parse_attention_type
from .attention_interface import PREFIX

try:  # the HTTP client of huggingface_hub 2.x; httpx for older versions
    import httpx2 as _httpx
except ImportError:  # pragma: no cover
    import httpx as _httpx


def _model_card_templates():  # a Traversable: a Path in a wheel, an editable install and a checkout alike
    """The folder of the model-card templates.

    The repository's top-level ``model_cards/`` is installed as the package ``hf_primaldual.model_cards``
    (``package-dir`` in pyproject.toml), which importlib.resources finds in a wheel and in an editable install. A
    checkout that is only on ``sys.path``, not installed, has no such package: there the source folder is read.
    """
    try:
        return resources.files("hf_primaldual.model_cards")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "model_cards"


MODEL_CARD_TEMPLATES = _model_card_templates()
#: What the cards say where the repo id goes; replaced by the real repo id when the folder is pushed.
REPO_ID_PLACEHOLDER = "your-name/your-model"

_KERNEL_FORMULAS = {
    "softmax": "A_ij = softmax_j(q_i . k_j / sqrt(D))",
    "linear": "A_ij = Phi(q_i) . Phi(k_j) / sum_l Phi(q_i) . Phi(k_l), Phi = elu + 1 (O(N))",
    "local_window": "A_ij = softmax_j(q_i . k_j / sqrt(D))",
}


def attention_formula(attention_type: str, config: Any | None = None) -> str:
    """One line saying what ``attention_type`` computes (with its settings, when ``config`` is given)."""
    spec = parse_attention_type(attention_type)
    parts = [_KERNEL_FORMULAS[spec.kernel]]
    if spec.kernel == "local_window":
        window = getattr(config, "attention_window", "w")
        parts.append(f"over the keys with |i - j| <= {window} only (sparse)")
    if spec.batch_norm:
        beta = getattr(config, "bn_mean_weight", 1.0)
        scale = " and divided by the keys' standard deviation" if getattr(config, "bn_use_std", True) else ""
        parts.append(f"with q and k shifted by {beta} x the keys' mean{scale} (Attention-BN)")
    if spec.scaled_heads:
        scales = getattr(config, "head_scales", None) or "the default"
        parts.append(f"with head h seeing keys and values {getattr(config, 'sh_pooling', 'mean')}-pooled by "
                     f"head_scales = {scales} (Attention-SH)")
    return ", ".join(parts) + "."


@dataclass
class EvaluationRow:
    split: str
    metric: str
    value: float


@dataclass(frozen=True)
class HubTask:
    """How the Hub files a family's models: its ``pipeline_tag`` (one of the Hub's tasks), the model-index task
    (``type``, ``name``) and tags that say what the model is."""

    pipeline_tag: str
    task_type: str
    task_name: str
    tags: tuple[str, ...]


#: The Hub's tasks (huggingface.js `PIPELINE_DATA`) have image-classification, but no time-series classification:
#: its one time-series task is time-series-forecasting, in the "tabular" modality. The time-series classifier is
#: filed under that modality's classification task, tabular-classification, which also keeps the Hub from taking
#: it for a text classifier (it guesses text-classification from `AutoModelForSequenceClassification` in
#: `auto_map` when a card names no pipeline_tag). Its model-index task has that id too (the Hub asks for one of its
#: task ids there) and the name "Time Series Classification"; its tags say time-series-classification.
FAMILY_TASKS: dict[str, HubTask] = {
    "primaldual-vit": HubTask("image-classification", "image-classification", "Image Classification", ("vision",)),
    "primaldual-timeseries": HubTask(
        "tabular-classification", "tabular-classification", "Time Series Classification",
        ("time-series", "time-series-classification"),
    ),
}
#: The config fields that give a family's shape, as the card reports them (read from the saved model's config).
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "primaldual-vit": (
        "image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "distillation_token", "distillation_head",
    ),
    "primaldual-timeseries": (
        "num_input_channels", "max_sequence_length", "hidden_size", "num_hidden_layers", "num_attention_heads",
        "intermediate_size", "pooling", "norm_type",
    ),
}


def plain_value(value: Any) -> Any:
    """A value as a card shows it: an enum by its value (``cosine``, not ``SchedulerType.COSINE``), containers
    element by element."""
    if isinstance(value, Enum):
        return plain_value(value.value)
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain_value(item) for key, item in value.items()}
    return value


def model_hyperparameters(family: str, config: Any) -> dict[str, Any]:
    """What the saved model is, read from its config: the family's shape (`SHAPE_FIELDS`), its dropout and its
    attention settings (those that apply to its attention type)."""
    from .attention import AttentionSettings

    values = {name: getattr(config, name) for name in SHAPE_FIELDS.get(family, ()) if hasattr(config, name)}
    values = {name: value for name, value in values.items() if value is not False}  # DeiT's fields only when set
    hidden, attention = getattr(config, "hidden_dropout_prob", None), getattr(config, "attention_probs_dropout_prob", None)
    if hidden is not None and hidden == attention:
        values["dropout"] = hidden
    else:
        values.update({k: v for k, v in (("hidden_dropout_prob", hidden), ("attention_probs_dropout_prob", attention))
                       if v is not None})
    spec = parse_attention_type(config.attention_type)
    applies = {
        "attention_window": spec.kernel == "local_window",
        "head_scales": spec.scaled_heads, "sh_pooling": spec.scaled_heads,
        "bn_eps": spec.batch_norm, "bn_mean_weight": spec.batch_norm, "bn_use_std": spec.batch_norm,
    }
    for name in AttentionSettings.names():
        if applies.get(name, True) and getattr(config, name, None) is not None:
            values[name] = getattr(config, name)
    return plain_value(values)


def hub_id(name_or_path: str | os.PathLike | None) -> str | None:
    """``name_or_path`` if it names a Hub repo (a valid id that is no local path), else None."""
    if name_or_path is None or isinstance(name_or_path, os.PathLike):
        return None
    text = str(name_or_path)
    if text.startswith((".", "~", "/")) or "\\" in text or Path(text).exists():
        return None
    try:
        validate_repo_id(text)
    except HFValidationError:
        return None
    return text


def base_model_reference(name_or_path: str | os.PathLike | None, revision: str | None = None) -> tuple[str, str | None] | None:
    """``(repo_id, commit)`` of a Hub checkpoint a model was fine-tuned from (the commit of the cached download,
    else ``revision`` as given), or None for a local folder: a card's ``base_model`` names Hub repos only."""
    repo_id = hub_id(name_or_path)
    if repo_id is None:
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    commit = Path(cached).parent.name if isinstance(cached, str) else None  # .../snapshots/<commit>/config.json
    return repo_id, commit or revision


def install_instructions() -> str:
    """How a card tells a visitor to install the package for training or evaluating: from the repository URL the
    package's metadata names (``[project.urls]`` of pyproject.toml), else from the repository's source."""
    try:
        urls = metadata.metadata("hf-primaldual").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    named = dict(url.split(", ", 1) for url in urls if ", " in url)
    url = next((named[key] for key in ("Repository", "Source", "Homepage") if key in named), None)
    if url:
        return f"`pip install git+{url}` (it is not on PyPI; its repository: <{url}>)"
    return "install from the repository this card links (`pip install <a checkout of it>`; it is not on PyPI)"


def render_model_card(
    family: str,
    *,
    model_name: str,
    config: Any,
    dataset_name: str | None,
    dataset_description: str,
    hyperparameters: Mapping[str, Any],
    results: list[EvaluationRow],
    task_type: str | None = None,
    repo_id: str = REPO_ID_PLACEHOLDER,
    protocol_note: str = "",
    limitations: str = "",
    tags: list[str] | None = None,
    base_model: str | None = None,
    base_model_revision: str | None = None,
    dataset_id: str | None = None,
    source_repository: str | None = None,
    original_card: str | None = None,
) -> ModelCard:
    """Render the template ``model_cards/<family>.md`` for a trained model.

    The card reports the model as its ``config`` says (its shape and attention override the same names in
    ``hyperparameters``, whose values are shown plain: enums by value), files it under the family's Hub task
    (`FAMILY_TASKS`: ``pipeline_tag``, model-index task type and name, tags), and names ``base_model`` only when it
    is a Hub repo (a local checkpoint folder is said in the text).

    Args:
        family: ``"primaldual-vit"`` or ``"primaldual-timeseries"`` (the template's name).
        dataset_name: the dataset's name for people; None when unknown (then no model-index).
        dataset_id: the Hub dataset id (``owner/name``), for ``datasets:`` and model-index; by default
            ``dataset_name`` when it is one.
        results: the evaluation results; each becomes a `model-index` entry (when the dataset is known).
        task_type: the model-index task id of a family `FAMILY_TASKS` does not know; the package's families
            always use theirs (a Hub task id).
        base_model_revision: the commit (or tag) of ``base_model`` fine-tuned from.
        source_repository: where the checkpoint came from when it is not a Hub repo (shown in the text only).
        original_card: the text of a card the model's folder held before (kept at the end of the card).
    """
    task = FAMILY_TASKS.get(family)
    dataset_id = dataset_id or (hub_id(dataset_name) if dataset_name and "/" in dataset_name else None)
    index_dataset = dataset_id or dataset_name
    eval_results = [
        EvalResult(
            task_type=task.task_type if task else (task_type or "other"),
            task_name=task.task_name if task else None,
            dataset_type=index_dataset,
            dataset_name=dataset_name or index_dataset,
            dataset_split=row.split,
            metric_type=row.metric,
            metric_name=row.metric,
            metric_value=row.value,
        )
        for row in results
    ] if index_dataset else []
    hub_base = hub_id(base_model)
    card_data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        license="apache-2.0",
        tags=list(dict.fromkeys([
            "hf-primaldual", "primal-dual-attention", f"attention-{config.attention_type}",
            *(task.tags if task else ()), *(tags or []),
        ])),
        pipeline_tag=task.pipeline_tag if task else None,
        base_model=hub_base,
        datasets=[dataset_id] if dataset_id else None,
        eval_results=eval_results or None,
    )
    template = MODEL_CARD_TEMPLATES / f"{family}.md"
    if not template.is_file():
        found = MODEL_CARD_TEMPLATES.iterdir() if MODEL_CARD_TEMPLATES.is_dir() else []
        families = sorted(p.name.removesuffix(".md") for p in found if p.name.endswith(".md"))
        raise FileNotFoundError(
            f"No model-card template {family}.md in {MODEL_CARD_TEMPLATES}. "
            + (f"Give one of: {', '.join(families)}." if families else
               "The package was installed without its templates: reinstall it (pip install . or its wheel).")
        )
    shown = {**plain_value(dict(hyperparameters)), **model_hyperparameters(family, config)}
    return ModelCard.from_template(
        card_data,
        template_str=template.read_text(encoding="utf-8"),
        model_name=model_name,
        attention_type=config.attention_type,
        attention_formula=attention_formula(config.attention_type, config),
        dataset_description=dataset_description,
        hyperparameters=shown,
        results=results,
        repo_id=repo_id,
        num_channels=getattr(config, "num_input_channels", None),
        protocol_note=protocol_note,
        limitations=limitations or "Trained on one small dataset; check accuracy on your own data before use.",
        framework_versions=framework_versions(),
        base_model=hub_base,
        base_model_revision=base_model_revision if hub_base else None,
        local_base_model=None if hub_base else (source_repository or base_model),
        install=install_instructions(),
        original_card=original_card,
    )


def framework_versions() -> dict[str, str]:
    """Versions of the libraries a checkpoint was written with (for the card's training procedure)."""
    versions = {}
    for name in ("hf-primaldual", "transformers", "torch", "huggingface_hub"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


# ------------------------------------------------------------------------------------------------ publishing

#: A converted checkpoint's tokenizer, as transformers saves one (exact names: they are published even where a
#: word in them, such as ``tokens``, would otherwise mark a credential).
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json",
)
#: The files a model repo of this project needs, besides the code files that ``auto_map`` names (an allow-list:
#: nothing else in the folder is ever published).
PUBLISHED_FILES = (
    "README.md", "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "training_metrics.json", "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json",
    *TOKENIZER_FILES,
)
#: Configs whose ``auto_map`` names the code files published with the model.
CODE_CONFIGS = ("config.json", "preprocessor_config.json", "processor_config.json")
#: What the training scripts and the Trainer leave in an output folder besides the model; left out without a word.
TRAINING_STATE = (
    "checkpoint-*", "last-checkpoint", "runs", "training_args.bin", "trainer_state.json", ".staging-*",
    ".hf-primaldual.lock",
    "__pycache__", ".gitattributes",
)
#: Pickles (training state, torch weights): loading one runs code, so they are never published.
PICKLE_FILES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt", "*.joblib")
#: Names of files that hold credentials; never published, and pointed out when found in an output folder.
SECRET_NAMES = (
    ".env", ".env.*", "*.env", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx",
    ".netrc", ".pypirc", ".npmrc", ".git-credentials", "*.kdbx",
)
#: ... and words that name credentials inside a file name (``token``, ``hf_token.txt``, ``aws-credentials``; not
#: ``tokenizer.json``).
_SECRET_WORDS = re.compile(r"(?:^|[._-])(?:tokens?|secrets?|credentials?|passwords?|passwd)(?:$|[._-])", re.I)
DEFAULT_COMMIT_MESSAGE = "Upload model trained with hf-primaldual"

logger = logging.getLogger(__name__)


class HubPushError(RuntimeError):
    """Publishing failed; the message says what went wrong and how to fix it (the cause is chained)."""


class PushArgumentError(ValueError):
    """The folder or the arguments of a push are wrong; found before anything is sent."""


class FolderNotReadyError(PushArgumentError):
    """The folder is not a finished output folder of the training scripts, or holds something unsafe to publish."""


@dataclass(frozen=True)
class PushFile:
    """A file of the output folder that is published: its path in the repo and its size in bytes; ``content`` for a
    file made for the push (the model card rendered from the folder), which ``local_path`` then is not."""

    path_in_repo: str
    size: int
    local_path: Path | None
    content: bytes | None = None

    def read_bytes(self) -> bytes:
        return self.content if self.content is not None else self.local_path.read_bytes()


@dataclass(frozen=True)
class LeftOut:
    """An entry of the output folder that is not published, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class PushPlan:
    files: list[PushFile]
    left_out: list[LeftOut]


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.lower(), pattern.lower()) for pattern in patterns)


def _code_files(root: Path) -> set[str]:
    """The module files that the ``auto_map`` entries (and the ``custom_pipelines`` implementations) of the folder's
    configs name, with their relative imports (found by transformers' own `get_relative_import_files`, as
    `save_pretrained` copies them)."""
    from transformers.dynamic_module_utils import get_relative_import_files

    modules: set[str] = set()
    for name in CODE_CONFIGS:
        path = root / name
        if not path.is_file():
            continue
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
            auto_map = config.get("auto_map") or {}
            pipelines = config.get("custom_pipelines") or {}
        except (ValueError, AttributeError) as err:
            raise FolderNotReadyError(f"{path} is not a JSON object: {err}") from err
        # a pipeline's "impl" is "module.Class", like an auto_map entry
        references = [*auto_map.values(), *(task.get("impl") for task in pipelines.values() if isinstance(task, dict))]
        for reference in references:
            for item in reference if isinstance(reference, list) else [reference]:
                if item:  # "module.Class", or "repo--module.Class" for code kept in another repo
                    modules.add(item.split("--")[-1].rsplit(".", 1)[0] + ".py")
    files = set(modules)
    for module in modules:
        try:
            files.update(Path(path).name for path in get_relative_import_files(str(root / module)))
        except OSError as err:
            raise FolderNotReadyError(
                f"{root} is not a complete output folder: the auto_map of its configs needs {module} and the files "
                f"it imports ({err}). Save the model again with save_pretrained."
            ) from err
    return files


def _looks_secret(name: str) -> bool:
    return _matches(name, SECRET_NAMES) or (name not in TOKENIZER_FILES and _SECRET_WORDS.search(name) is not None)


def _leaves_folder(entry: Path, root: Path) -> bool:
    return entry.is_symlink() and not entry.resolve().is_relative_to(root)


def plan_push(folder: str | os.PathLike, *, include_logs: bool = False) -> PushPlan:
    """What a push of the model folder ``folder`` publishes, and what it leaves out.

    ``folder`` holds a model of this package or a stock model running a primal-dual attention, whoever saved it:
    the training commands' output folder, a folder of ``save_pretrained``, the Trainer's ``save_model`` or one of
    its ``checkpoint-N`` folders, a conversion. Only the top-level files a model repo needs are published
    (`PUBLISHED_FILES`, the code files that ``auto_map`` and ``custom_pipelines`` name) and, with ``include_logs``,
    the TensorBoard event files under it (the Hub shows them as training metrics); everything else (training
    state, other pickles such as ``*.bin``, sub-folders, files named like credentials, ...) is left out. A folder
    without the project's card gets one rendered from what it holds (`model_folders.folder_card`), never written
    into the folder.

    Raises `FolderNotReadyError` for what cannot be published as a model (see `model_folders.read_model_folder`:
    no config.json or weights, a model of neither kind, an unfinished run of the training commands), for weights
    that leave the classifier head out or hold NaN or infinite values, when a file link in it points outside it
    (its target would be uploaded), or when a ``*.safetensors`` file is not one.
    """
    from .model_folders import check_model_weights, folder_card, read_model_folder

    root = Path(folder)
    if not root.is_dir():
        raise FolderNotReadyError(f"{root} is not a folder: give the folder a model was saved in.")
    found = read_model_folder(root)
    root = root.resolve()
    logs = _log_files(root) if include_logs else []
    top_level = [entry for entry in sorted(root.iterdir()) if not entry.is_dir()]
    links_out = [entry for entry in [*top_level, *logs] if _leaves_folder(entry, root)]
    if links_out:
        listed = ", ".join(f"{entry.relative_to(root)} -> {os.readlink(entry)}" for entry in links_out)
        raise FolderNotReadyError(
            f"{root} holds links to files outside it ({listed}): their targets would be uploaded. Nothing was "
            "pushed. Remove the links, or replace them with copies of the files you mean to publish."
        )
    code = _code_files(root)
    files: list[PushFile] = []
    left_out: list[LeftOut] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if entry.is_file() and (name in code or _matches(name, PUBLISHED_FILES)) and not _looks_secret(name):
            files.append(PushFile(name, entry.stat().st_size, entry))
        elif name == "runs" and include_logs:
            continue  # its event files are listed below
        elif _matches(name, TRAINING_STATE):
            continue
        elif _looks_secret(name):
            left_out.append(LeftOut(name, "named like a credential"))
        elif entry.is_dir():
            left_out.append(LeftOut(name + "/", "a folder (only the model's top-level files are published)"))
        elif "tfevents" in name:
            left_out.append(LeftOut(name, "a TensorBoard event file (published with --include_logs)"))
        elif _matches(name, PICKLE_FILES):
            left_out.append(LeftOut(name, "pickled state or weights (only safetensors weights are published)"))
        else:
            left_out.append(LeftOut(name, "not a file a model repo needs"))
    for entry in logs:
        relative = entry.relative_to(root).as_posix()
        if any(_looks_secret(part) for part in relative.split("/")):
            left_out.append(LeftOut(relative, "named like a credential"))
        else:
            files.append(PushFile(relative, entry.stat().st_size, entry))
    model = check_model_weights(found)  # read_model_folder checked that each weights file reads
    if not found.has_project_card:
        card = folder_card(found, model).encode("utf-8")
        files = [file for file in files if file.path_in_repo != "README.md"]
        files.append(PushFile("README.md", len(card), None, card))
        files.sort(key=lambda file: file.path_in_repo)
    return PushPlan(files, left_out)


def _log_files(root: Path) -> list[Path]:
    """The TensorBoard event files under ``root`` (the Trainer writes them to ``runs/``), outside checkpoints."""
    return sorted(
        path for path in root.rglob("*tfevents*")
        if path.is_file() and not any(part.startswith("checkpoint-") for part in path.relative_to(root).parts)
    )


def list_push_files(folder: str | os.PathLike) -> list[PushFile]:
    """The files of a model folder that make the published model, sorted by path (see `plan_push`)."""
    return plan_push(folder).files


def card_for_repo(card_text: str, repo_id: str, tags: Iterable[str] = ()) -> str:
    """The model card as published to ``repo_id``: the repo id placeholder of the templates replaced by
    ``repo_id``, and ``tags`` added to the metadata (``tags:`` of the YAML front matter)."""
    card = ModelCard(card_text.replace(REPO_ID_PLACEHOLDER, repo_id), ignore_metadata_errors=False)
    extra = [tag for tag in tags if tag]
    if extra:
        current = list(card.data.tags or [])
        card.data.tags = current + [tag for tag in extra if tag not in current]
    return str(card) if extra else card.content


def _endpoint() -> str:
    return constants.ENDPOINT.rstrip("/")


def _server_message(err: HfHubHTTPError) -> str:
    message = getattr(err, "server_message", None) or str(err).splitlines()[0]
    return message.strip().rstrip(".")


def explain_hub_error(
    err: BaseException, *, repo_id: str, revision: str | None = None, tag: str | None = None, stage: str = ""
) -> str:
    """A message for a failed Hub call that names the problem and the fix (and never the token)."""
    endpoint = _endpoint()
    where = f" ({stage})" if stage else ""
    token_note = (
        "no token was found: set HF_TOKEN or run `hf auth login`"
        if get_token() is None
        else "set HF_TOKEN (or `hf auth login`) to a valid token with write access"
    )
    if isinstance(err, OfflineModeIsEnabled):
        return f"HF_HUB_OFFLINE is set, so nothing can be pushed{where}: unset HF_HUB_OFFLINE and run again."
    if isinstance(err, _httpx.TransportError | ConnectionError | TimeoutError):
        lost = isinstance(err, _httpx.RemoteProtocolError | _httpx.ReadError | _httpx.ReadTimeout)
        state = (
            "The connection broke before the answer came: the commit may or may not have landed. "
            if lost
            else "Nothing was committed. "
        )
        return (
            f"Cannot reach the Hub at {endpoint}{where}: {type(err).__name__}: {err}. {state}Check the network (and "
            "HF_ENDPOINT if you meant another server), then run the same command again: unchanged files are not "
            "uploaded twice and make no new commit."
        )
    if isinstance(err, RevisionNotFoundError):
        return (
            f"Revision {revision!r} not found in {repo_id}{where} ({_server_message(err)}). Give an existing branch, "
            "or a new branch name to create it; tags and commit ids cannot be pushed to."
        )
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"Repository {repo_id} not found on {endpoint}{where}, or it is private to another account "
            f"({_server_message(err)}). Check the repo id and the namespace; {token_note}."
        )
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        message = _server_message(err)
        if status == 401:
            return (
                f"The Hub at {endpoint} rejected the credentials (401 Unauthorized: {message}){where}: {token_note}."
            )
        if status == 403:
            return (
                f"No write access to {repo_id}{where} (403 Forbidden: {message}). Push to your own namespace or to "
                "an organisation you belong to (e.g. your-name/model-name), or use a token with write access "
                "to this one."
            )
        if status == 409 and stage == "creating the tag":
            return (
                f"Tag {tag!r} already exists in {repo_id} ({message}). A tag names one version and is not moved: "
                "choose a new tag (the commit itself was made)."
            )
        if status == 409 and stage == "creating the repo":
            return (
                f"Repository {repo_id} already exists ({message}). Push to it without --fail_if_exists "
                "(exist_ok) to add a new commit, or choose another repo id."
            )
        if status == 409:
            return f"Conflict on {repo_id}{where} (409: {message}). Run again, or choose another name."
        if status == 412:
            return (
                f"{revision or 'main'} of {repo_id} moved while pushing (412: {message}): someone else committed. "
                "Run the same command again."
            )
        if status == 429:
            return f"Too many requests to {endpoint}{where} (429: {message}). Wait a minute and run again."
        if status >= 500:
            return (
                f"The Hub at {endpoint} failed{where} ({status}: {message}). This is a server-side error: run the "
                "same command again later (unchanged files are not uploaded twice)."
            )
        return f"The Hub at {endpoint} refused the request{where} ({status}: {message})."
    if isinstance(err, HFValidationError):
        return f"Invalid repo id or revision {repo_id!r}{where}: {err}"
    if isinstance(err, ValueError) and "README.md" in str(err):
        return f"The Hub rejected the model card{where}: {err}. Fix the YAML metadata of README.md and push again."
    return f"Pushing to {repo_id} on {endpoint} failed{where}: {type(err).__name__}: {err}"


def _hub_errors() -> tuple[type[BaseException], ...]:
    return (HfHubHTTPError, OfflineModeIsEnabled, HFValidationError, _httpx.HTTPError, ConnectionError, TimeoutError)


def check_hub_access(repo_id: str, token: str | None = None, *, private: bool | None = None) -> str:
    """Check, before a long job that pushes to ``repo_id`` at its end, that the repo id is valid, that the Hub
    answers and takes the token (``token``, else HF_TOKEN or the token of ``hf auth login``), and that the token can
    write the repo: it is created now (``exist_ok``; the Trainer's ``--push_to_hub`` creates it when it starts
    anyway). Returns the full repo id (``name`` becomes ``user/name``).

    Raises `HubPushError` naming the problem and the fix (invalid id, server unreachable, no token, token rejected,
    a namespace the token cannot write to).
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise HubPushError(
            f"--hub_model_id {repo_id!r} is not a valid Hub repo id ({err}). Give `name` or `owner/name` (letters, "
            "digits, '-', '_' and '.'); nothing was trained."
        ) from None
    stage = "checking the token before training"
    try:
        api = HfApi(token=token)
        api.whoami()
        stage = "creating the repo before training"
        return api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id or repo_id
    except LocalTokenNotFoundError as err:
        raise HubPushError(
            f"--push_to_hub: no Hub token was found, so nothing could be pushed to {repo_id}. Set HF_TOKEN (or run "
            "`hf auth login`) and run again; nothing was trained."
        ) from err
    except _hub_errors() as err:
        message = explain_hub_error(err, repo_id=repo_id, stage=stage)
        raise HubPushError(f"{message} Nothing was trained.") from err


def _branch_name(revision: str | None) -> str:
    if not revision:
        return "main"
    return revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision


def _format_size(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover


def push_output_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    tags: Iterable[str] = (),
    tag: str | None = None,
    create_pr: bool = False,
    dry_run: bool = False,
    token: str | None = None,
    exist_ok: bool = True,
    delete_remote_extras: bool = True,
    keep_remote: Iterable[str] = (),
    include_logs: bool = False,
    upload_card: bool = True,
) -> CommitInfo | list[str]:
    """Publish the model folder ``folder`` (see `plan_push`) to the Hub model repo ``repo_id`` in one commit.

    The repo is created if needed (``exist_ok``; ``private`` applies to a new repo, and pushing a ``private`` model
    into an existing public repo is refused). ``revision`` is a branch, created from ``main`` when missing. The
    card's repo id placeholder becomes ``repo_id`` and ``tags`` are added to its metadata (in the commit only: the
    folder is never written to). With ``delete_remote_extras`` (default) the branch ends up holding exactly the
    published files: remote files not in the folder (a Trainer's ``training_args.bin``, files of an older version)
    are deleted in the same commit, except ``.gitattributes`` and paths matching ``keep_remote`` (fnmatch patterns).
    ``tag`` tags the new commit. ``create_pr`` opens a pull request against ``revision`` instead of committing to it.
    ``include_logs`` also publishes the TensorBoard event files under the folder (``runs/``), which the Hub shows as
    training metrics. ``upload_card=False`` leaves the repo's own README.md as it is (`push_model`).

    ``dry_run`` contacts nothing and returns the lines ``path<TAB>size`` of what would be sent; otherwise the
    `CommitInfo` of the commit (the current head when nothing changed: no empty commit is made). The endpoint and
    the token are huggingface_hub's (``HF_ENDPOINT``, ``HF_TOKEN``; ``token`` overrides the latter).

    Only the files a model repo needs are published (see `plan_push`); what is left out is logged as a warning.

    Raises:
        FolderNotReadyError: ``folder`` holds no model that can be published, or is unsafe to publish (nothing is
            contacted).
        PushArgumentError: the repo id, revision or tag is not valid (nothing is contacted).
        HubPushError: a Hub call failed; the message names the problem and the fix.
    """
    plan = plan_push(folder, include_logs=include_logs)
    files = [file for file in plan.files if upload_card or file.path_in_repo != "README.md"]
    if plan.left_out:
        logger.warning(
            "Not published from %s (only the files a model repo needs are):\n%s", folder,
            "\n".join(f"  {entry.path}: {entry.reason}" for entry in plan.left_out),
        )
    _check_push_target(repo_id, revision, tag, create_pr)
    readme = next((file for file in files if file.path_in_repo == "README.md"), None)
    if readme is not None:  # a card whose metadata the Hub would reject fails here, before any network call
        try:
            card_for_repo(readme.read_bytes().decode("utf-8"), repo_id, tags)
        except (ValueError, yaml.YAMLError) as err:
            raise FolderNotReadyError(f"{readme.local_path or 'The rendered card'} has invalid metadata: {err}") from err
    if dry_run:
        return [f"{file.path_in_repo}\t{file.size}" for file in files]
    return upload_files(
        files, repo_id, private=private, revision=revision, commit_message=commit_message,
        commit_description=commit_description, tags=tags, tag=tag, create_pr=create_pr, token=token,
        exist_ok=exist_ok, delete_remote_extras=delete_remote_extras,
        keep_remote=[*keep_remote, *([] if upload_card else ["README.md"])],
    )


def _check_push_target(repo_id: str, revision: str | None, tag: str | None, create_pr: bool) -> str:
    """The branch to push to; raises `PushArgumentError` for an invalid repo id or revision, or a tag on a PR."""
    branch = _branch_name(revision)
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise PushArgumentError(explain_hub_error(err, repo_id=repo_id)) from err
    if re.fullmatch(r"[0-9a-f]{40}", branch):
        raise PushArgumentError(f"Cannot push to the commit id {branch}: give a branch name as revision.")
    if tag is not None and create_pr:
        raise PushArgumentError("A tag cannot be put on a pull request commit: merge it first, then tag the merge.")
    return branch


def upload_files(
    files: Sequence[PushFile],
    repo_id: str,
    *,
    repo_type: str = "model",
    space_sdk: str | None = None,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    tags: Iterable[str] = (),
    tag: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    exist_ok: bool = True,
    delete_remote_extras: bool = True,
    keep_remote: Iterable[str] = (),
) -> CommitInfo:
    """Publish ``files`` to the Hub repo ``repo_id`` (of ``repo_type``: a model, or a Space made with
    ``space_sdk``) in one commit: the client code of every push of the package (`push_output_folder` for models,
    `demo.push_space` for Spaces). The arguments are `push_output_folder`'s; a model repo's README.md is published
    through `card_for_repo` (its repo id placeholder replaced, ``tags`` added). With ``delete_remote_extras`` remote
    files not in ``files`` are deleted, except ``.gitattributes`` and ``keep_remote`` (fnmatch patterns). Returns the
    `CommitInfo` (the current head when nothing changed). Raises `PushArgumentError` or `HubPushError`.
    """
    branch = _check_push_target(repo_id, revision, tag, create_pr)
    keep_patterns = [".gitattributes", *keep_remote]
    api = HfApi(token=token)
    stage = "creating the repo"
    try:
        repo_url = api.create_repo(repo_id, private=private, exist_ok=exist_ok, repo_type=repo_type, space_sdk=space_sdk)
        repo_id = repo_url.repo_id or repo_id  # "name" -> "user/name"
        if branch != "main":
            stage = f"creating the branch {branch}"
            refs = api.list_repo_refs(repo_id, repo_type=repo_type)
            if branch in {ref.name for ref in refs.tags}:
                raise HubPushError(
                    f"{branch!r} is a tag of {repo_id}, not a branch: a tag names a fixed version. Push to a branch "
                    f"(--revision) and tag the new commit with --tag."
                )
            if branch not in {ref.name for ref in refs.branches}:
                api.create_branch(repo_id, branch=branch, exist_ok=True, repo_type=repo_type)
        stage = "reading the repo"
        info = api.repo_info(repo_id, revision=branch, repo_type=repo_type, files_metadata=False)
        if private and not info.private:
            raise HubPushError(
                f"{repo_id} already exists and is public, but a private push was asked: nothing was pushed. Make "
                "the repo private first (HfApi().update_repo_settings(repo_id, private=True)), or push without "
                "--private."
            )
        operations: list[CommitOperationAdd | CommitOperationDelete] = []
        for file in files:
            if file.path_in_repo == "README.md" and repo_type == "model":
                card = card_for_repo(file.read_bytes().decode("utf-8"), repo_id, tags)
                operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
            else:
                content = file.content if file.content is not None else str(file.local_path)
                operations.append(CommitOperationAdd(file.path_in_repo, content))
        if delete_remote_extras:
            published = {file.path_in_repo for file in files}
            for sibling in info.siblings or []:
                path = sibling.rfilename
                if path not in published and not any(fnmatch.fnmatchcase(path, p) for p in keep_patterns):
                    operations.append(CommitOperationDelete(path))
        stage = f"committing to {branch}"
        commit = api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message,
            commit_description=commit_description,
            revision=branch,
            create_pr=create_pr,
            parent_commit=info.sha,
            repo_type=repo_type,
        )
        if tag is not None:
            stage = "creating the tag"
            api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=commit_message, repo_type=repo_type)
    except HubPushError:
        raise
    except _hub_errors() as err:
        raise HubPushError(explain_hub_error(err, repo_id=repo_id, revision=branch, tag=tag, stage=stage)) from err
    except ValueError as err:  # invalid card metadata (validate-yaml), rejected operations
        raise HubPushError(explain_hub_error(err, repo_id=repo_id, revision=branch, stage=stage)) from err
    return commit


def describe_dry_run(lines: Sequence[str], folder: str | os.PathLike, repo_id: str, revision: str | None) -> str:
    """What ``push_output_folder(..., dry_run=True)`` would send, as a table for people."""
    rows = [line.split("\t") for line in lines]
    total = sum(int(size) for _, size in rows)
    width = max((len(path) for path, _ in rows), default=0)
    table = "\n".join(f"  {path.ljust(width)}  {_format_size(int(size)):>9}" for path, size in rows)
    return (
        f"Dry run: would push {len(rows)} files ({_format_size(total)}) from {folder} to {_endpoint()}/{repo_id} "
        f"(branch {_branch_name(revision)}); nothing was sent.\n{table}"
    )


def push_from_trainer(
    trainer: Any, output_dir: str | os.PathLike | None = None, *, commit_message: str = "End of training", **kwargs: Any
) -> CommitInfo | None:
    """For the training scripts' ``--push_to_hub``: publish the hub-ready ``output_dir`` (written by
    `training.save_hub_ready_folder`) with the Trainer's Hub settings, instead of `Trainer.push_to_hub`, which
    would write its own model card over ours.

    Waits for the Trainer's checkpoint pushes (``--hub_strategy every_save``...), then pushes to the repo the
    Trainer created (``--hub_model_id``, default the output folder's name, in the token's namespace), on
    ``--hub_revision`` (created if missing), private per ``--hub_private_repo``, with ``--hub_token`` if given.
    The repo then holds exactly the hub-ready folder: the ``training_args.bin`` of the checkpoint pushes is
    deleted; ``last-checkpoint/`` (``--hub_strategy checkpoint``) or ``checkpoint-*/`` (``all_checkpoints``) are
    kept, since that strategy asked for them. Returns ``None`` when ``--push_to_hub`` is off or on other processes
    than the main one. Raises `HubPushError`, whose message also says how to publish the saved folder later.
    """
    args = trainer.args
    if not args.push_to_hub or not trainer.is_world_process_zero():
        return None
    folder = Path(output_dir if output_dir is not None else args.output_dir)
    trainer._finish_current_push()  # the checkpoint pushes run in the background; the final commit goes after them
    repo_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id or folder.absolute().name
    strategy = str(getattr(args.hub_strategy, "value", args.hub_strategy))
    keep = {"checkpoint": ("last-checkpoint/*",), "all_checkpoints": ("checkpoint-*/*",)}.get(strategy, ())
    try:
        return push_output_folder(
            folder,
            repo_id,
            private=bool(args.hub_private_repo),
            revision=args.hub_revision,
            commit_message=commit_message,
            token=args.hub_token,
            keep_remote=keep,
            **kwargs,
        )
    except HubPushError as err:
        raise HubPushError(
            f"{err}\nThe trained model is saved in {folder}; publish it once this is fixed with:\n"
            f"  hf-primaldual-push {folder} {repo_id}"
            + (f" --revision {args.hub_revision}" if args.hub_revision else "")
        ) from err.__cause__


def push_model(
    model: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: bool | str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
) -> CommitInfo:
    """``model.push_to_hub(repo_id, ...)`` of the package's models (same arguments as transformers'): the model
    saved by its ``save_pretrained`` and published with the project's card, rendered from what was saved
    (`plan_push`), instead of transformers' "Model Card for Model ID" stub. A repo whose README.md is already a
    card of this project (e.g. published by the training commands) keeps it, as transformers keeps a repo's card;
    remote files are never deleted. Raises `HubPushError` or `FolderNotReadyError` (non-finite weights...)."""
    import tempfile

    existing = _remote_card(repo_id, token)
    keep_card = existing is not None and "hf-primaldual" in (existing.data.tags or [])
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        return push_output_folder(
            folder, repo_id, private=bool(private), revision=revision,
            commit_message=commit_message or "Upload model", commit_description=commit_description,
            tags=tags or (), create_pr=create_pr, token=token if isinstance(token, str) else None,
            delete_remote_extras=False, upload_card=not keep_card,
        )


def _remote_card(repo_id: str, token: bool | str | None) -> ModelCard | None:
    """The repo's README.md as a card, or None where the repo or the card does not exist (or cannot be read)."""
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return ModelCard.load(repo_id, token=token if isinstance(token, str) else None)
    except (EntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, HFValidationError, ValueError):
        return None
