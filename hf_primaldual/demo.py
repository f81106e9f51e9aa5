"""A Gradio demo for any checkpoint of either family: ranked labels, the input, and the attention maps per head.

``hf-primaldual-demo PATH_OR_HUB_ID`` (`hf_primaldual.cli.demo`) serves it; ``--space REPO_ID`` publishes it as a
Hugging Face Space. The pieces, usable without Gradio:

* `load_demo_model`: a checkpoint (a local folder or a Hub id; the package's time-series classifier or ViT, or a
  stock image classifier running a ``primaldual_<type>`` attention), with its processor, set up so that the
  attention matrices are materialised (``output_attentions``: the package's models switch to ``eager``, their
  reference formulas; a stock model under ``primaldual_<type>`` returns them as it is).
* `read_series_file`: the series of a ``.ts``, ``.npz``/``.npy`` or table file (CSV, TSV, Parquet, JSON), read by the
  training data's own readers (`hf_primaldual.data.timeseries`), labels optional.
* `classify_series` / `classify_image`: the ranked labels (softmax of the logits) and each layer's attention.
* `series_figure` / `attention_figure`: the pictures, as RGB arrays; an Attention-SH head says the scale it pools.
* `build_demo`: the Gradio app; `write_space` / `push_space`: the Space folder (``app.py``, ``requirements.txt``, a
  README with the Space metadata, a copy of this package) and its push through `hub.upload_files`, the model push's
  own client code.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from .attention import default_head_scales, parse_attention_type
from .attention_interface import PREFIX, SETTINGS_ATTRIBUTE

if TYPE_CHECKING:
    import gradio
    from huggingface_hub import CommitInfo

    from .hub import PushFile

INSTALL_HINT = "pip install hf-primaldual[demo]"
#: What the series upload takes: the suffixes the training data's readers know.
SERIES_SUFFIXES = (".ts", ".ts.gz", ".csv", ".tsv", ".parquet", ".json", ".jsonl", ".npz", ".npy")
_PLACEHOLDER_LABEL = ""  # the label of a series whose file has none
_ONE_SERIES_COLUMN = "__hf_primaldual_series__"


class DemoError(ValueError):
    """A checkpoint or an input the demo cannot use; the message names the problem and the fix."""


def require_gradio() -> ModuleType:
    """``gradio``, or an `ImportError` that says how to install it."""
    try:
        import gradio
    except ImportError as err:
        raise ImportError(
            f"The demo needs Gradio, an optional dependency: {INSTALL_HINT} (from a checkout: "
            "pip install -c constraints.txt -e '.[demo]')."
        ) from err
    return gradio


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class DemoModel:
    """A checkpoint ready for the demo.

    Attributes:
        family: ``"timeseries"`` (the package's time-series classifier) or ``"image"`` (any image classifier).
        attention_type: the primal-dual type it runs (``"softmax"`` for a stock model under plain attention).
        head_scales: per head, the factor Attention-SH pools its keys and values by; None without SH.
        patch_grid: for an image model, (prefix tokens, grid side) when its tokens are prefix tokens and a square
            patch grid, so that a head's attention from the first token can be drawn over the image.
    """

    checkpoint: str
    family: Literal["timeseries", "image"]
    model: Any
    processor: Any
    attention_type: str
    head_scales: list[int] | None
    patch_grid: tuple[int, int] | None = None

    @property
    def labels(self) -> list[str]:
        return [self.model.config.id2label[index] for index in range(len(self.model.config.id2label))]

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def describe(self) -> str:
        """One line on the model for people: checkpoint, attention, heads and their SH scales."""
        heads = self.model.config.num_attention_heads
        text = (f"{self.checkpoint}: {self.family} classifier, attention `{self.attention_type}`, "
                f"{self.num_layers} layers x {heads} heads")
        if self.head_scales is not None:
            text += ", Attention-SH scales per head " + ", ".join(
                f"h{head}: {scale}" for head, scale in enumerate(self.head_scales)
            )
        return text + "."


def load_demo_model(
    checkpoint: str | os.PathLike, *, revision: str | None = None, trust_remote_code: bool = False
) -> DemoModel:
    """Load ``checkpoint`` (a local folder or a Hub id) for the demo, in eval mode on the CPU.

    A ``primaldual-timeseries`` checkpoint loads as the time-series classifier with its feature extractor; any
    other as an image classifier with its image processor. ``trust_remote_code`` runs the model code saved in the
    checkpoint (as on a machine without this package) instead of the installed package's.

    Raises:
        DemoError: the folder is missing or holds no model, or the checkpoint is neither family.
    """
    from transformers import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoImageProcessor,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
    )

    from .evaluation import check_checkpoint
    from .training import UsageError

    try:
        check_checkpoint(checkpoint)
    except UsageError as err:
        raise DemoError(str(err)) from err
    loading = {"revision": revision, "trust_remote_code": trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(checkpoint, **loading)
    except OSError as err:  # no such Hub repo or revision, offline, no config.json
        raise DemoError(f"Cannot load {checkpoint}: {err}") from err
    if config.model_type == "primaldual-timeseries":
        family = "timeseries"
        model = _model_class(AutoModelForSequenceClassification, config, checkpoint, loading).from_pretrained(
            checkpoint, **loading)
        processor = AutoFeatureExtractor.from_pretrained(checkpoint, **loading)
    else:
        family = "image"
        try:
            model = _model_class(AutoModelForImageClassification, config, checkpoint, loading).from_pretrained(
                checkpoint, **loading)
        except ValueError as err:  # transformers' "Unrecognized configuration class ..."
            raise DemoError(
                f"{checkpoint} is a {config.model_type!r} model, neither the package's time-series classifier nor an "
                f"image classifier: the demo classifies series and images only ({err})."
            ) from err
        processor = AutoImageProcessor.from_pretrained(checkpoint, revision=revision)
    model.eval()
    implementation = str(model.config._attn_implementation or "")
    if implementation.startswith(PREFIX):  # a stock model under the family: its function returns the weights
        attention_type = implementation[len(PREFIX):]
        settings = getattr(model.config, SETTINGS_ATTRIBUTE, None) or {}
    else:  # the package's models (their eager path is the reference formula) and plain stock models
        model.set_attn_implementation("eager")
        attention_type = getattr(model.config, "attention_type", "softmax")
        settings = {"head_scales": getattr(model.config, "head_scales", None)}
    heads = int(model.config.num_attention_heads)
    scales = None
    if parse_attention_type(attention_type).scaled_heads:
        scales = [int(scale) for scale in (settings.get("head_scales") or default_head_scales(heads))]
    return DemoModel(str(checkpoint), family, model, processor, attention_type, scales, _patch_grid(model.config))


def _model_class(auto_class: Any, config: Any, checkpoint: str | os.PathLike, loading: dict[str, Any]) -> Any:
    """``auto_class``, or with ``trust_remote_code`` the class the checkpoint's ``auto_map`` names from its own code
    files: the Auto classes would pick the installed package's registered class over the checkpoint's code."""
    reference = (getattr(config, "auto_map", None) or {}).get(auto_class.__name__)
    if not loading["trust_remote_code"] or reference is None:
        return auto_class
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    return get_class_from_dynamic_module(reference, str(checkpoint), revision=loading["revision"])


def _patch_grid(config: Any) -> tuple[int, int] | None:
    image_size, patch_size = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    if not isinstance(image_size, int) or not isinstance(patch_size, int) or patch_size < 1:
        return None
    prefix = 2 if getattr(config, "distillation_token", False) else 1
    return prefix, image_size // patch_size


@dataclass
class Prediction:
    """What the model said about one input.

    Attributes:
        ranking: label -> probability (softmax of the logits), most likely first.
        attentions: per layer, the attention matrices of the heads, (heads, tokens, tokens), float32.
    """

    ranking: dict[str, float]
    attentions: list[np.ndarray] = field(repr=False)


def _predict(demo: DemoModel, inputs: dict[str, torch.Tensor]) -> Prediction:
    with torch.no_grad():
        output = demo.model(**inputs, output_attentions=True)
    if output.attentions is None or any(layer is None for layer in output.attentions):
        raise DemoError(f"{demo.checkpoint} returned no attention matrices: its attention cannot materialise them.")
    probabilities = torch.softmax(output.logits[0].double(), dim=-1).tolist()
    order = sorted(range(len(probabilities)), key=lambda index: -probabilities[index])
    ranking = {demo.model.config.id2label[index]: probabilities[index] for index in order}
    return Prediction(ranking, [layer[0].float().numpy() for layer in output.attentions])


def classify_series(demo: DemoModel, series: np.ndarray) -> Prediction:
    """Classify one series of shape (time, channels) (or (time,) for a univariate model) with the checkpoint's
    feature extractor (its standardisation; the model refuses a series longer than it takes)."""
    if demo.family != "timeseries":
        raise DemoError(f"{demo.checkpoint} is an image classifier: give it an image, not a series.")
    try:
        features = demo.processor(np.asarray(series, dtype=np.float32), return_tensors="pt")
    except ValueError as err:
        raise DemoError(f"The series does not fit {demo.checkpoint}: {err}") from err
    limit = demo.model.config.max_sequence_length
    if features["past_values"].shape[1] > limit:
        raise DemoError(
            f"The series has {features['past_values'].shape[1]} time steps but {demo.checkpoint} takes at most "
            f"{limit} (max_sequence_length): give a shorter series."
        )
    return _predict(demo, dict(features))


def classify_image(demo: DemoModel, image: Any) -> Prediction:
    """Classify one PIL image, prepared as the evaluation prepares images (the processor's channel mode, size and
    normalisation)."""
    from .data import build_transforms

    if demo.family != "image":
        raise DemoError(f"{demo.checkpoint} is a time-series classifier: give it a series, not an image.")
    transform = build_transforms(demo.processor, False, horizontal_flip=False)
    return _predict(demo, {"pixel_values": transform({"image": [image]})["pixel_values"]})


# ------------------------------------------------------------------------------------------------ series files


@dataclass
class SeriesFile:
    """The series of one file: ``series[i]`` float32 (time, channels); ``labels[i]`` its class as the file says,
    None where the file gives none; ``names[i]`` how the file's reader names it (``case 3``, ``row 12``...)."""

    series: list[np.ndarray]
    labels: list[str | None]
    names: list[str]


def read_series_file(
    path: str | os.PathLike,
    *,
    label_column: str = "label",
    series_id_column: str | None = None,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    layout: str | None = None,
    array_layout: str | None = None,
) -> SeriesFile:
    """Read every series of a file with the training data's readers (`hf_primaldual.data.timeseries`; the options
    are `load_timeseries`'s), in file order, without a train/test split and with labels optional:

    * ``.ts``: as `read_ts`; ``.npz`` with ``X`` (and ``y`` when labelled), ``.npy`` (labelled by the ``y*.npy``
      beside it, if any);
    * a table (CSV, TSV, Parquet, JSON): long, nested or wide as in training; a table without ``label_column`` is
      unlabelled, and a table of single numbers given neither ``series_id_column`` nor ``layout`` is one series,
      one row per time step, every column a channel.

    Raises:
        DemoError: the file cannot be read as series; the message is the reader's (it names the place and the fix).
    """
    import datasets

    from .data.timeseries import (
        TABLE_FORMATS,
        TimeSeriesDataError,
        _is_sequence_feature,
        _labels_beside,
        _Options,
        _read_source,
    )

    path = Path(path)
    name = path.name.lower()
    if not name.endswith(SERIES_SUFFIXES):
        raise DemoError(f"{path.name}: give a series file, one of {', '.join(SERIES_SUFFIXES)}.")
    options = _Options(label_column, series_id_column, time_column,
                       list(value_columns) if value_columns else None, layout, array_layout)
    source: Any = path
    labels = None
    try:
        suffix = next((suffix for suffix in TABLE_FORMATS if name.endswith(suffix)), None)
        if suffix is not None:
            builder, kwargs = TABLE_FORMATS[suffix]
            source = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
            if label_column not in source.column_names:
                source = source.add_column(label_column, [_PLACEHOLDER_LABEL] * len(source))
            single_numbers = not any(_is_sequence_feature(feature) for feature in source.features.values())
            if single_numbers and series_id_column is None and layout is None:
                source = source.add_column(_ONE_SERIES_COLUMN, [0] * len(source))
                options.series_id_column = _ONE_SERIES_COLUMN
        elif name.endswith(".npz"):
            with np.load(path, allow_pickle=False) as arrays:
                if "X" in arrays and "y" not in arrays:  # unlabelled: the reader's array path, no labels
                    source = arrays["X"]
                    labels = [_PLACEHOLDER_LABEL] * len(source)
        elif name.endswith(".npy") and not _labels_beside(path).is_file():  # an upload comes without its y*.npy
            source = np.load(path, allow_pickle=False)
            labels = [_PLACEHOLDER_LABEL] * len(source)
        splits, _ = _read_source(source, labels, options, None, None, None, role="test")
    except (TimeSeriesDataError, ValueError, OSError) as err:
        raise DemoError(f"{path.name}: {err}") from err
    split = splits["test"]
    if not split.series:
        raise DemoError(f"{path.name} holds no series.")
    file_labels = [None if label == _PLACEHOLDER_LABEL or label is None else str(label) for label in split.labels]
    return SeriesFile([np.asarray(series, dtype=np.float32) for series in split.series], file_labels, split.names)


# ------------------------------------------------------------------------------------------------ pictures


def _new_figure(width: float, height: float, dpi: int):
    """A matplotlib figure drawn by the Agg canvas, outside pyplot: no global backend switched, nothing to close
    (the app draws from several threads)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def _figure_pixels(figure) -> np.ndarray:
    """The RGB pixels of a figure of `_new_figure`."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def series_figure(series: np.ndarray, title: str = "") -> np.ndarray:
    """A line plot of a (time, channels) series, one line per channel, as an RGB array."""
    values = np.asarray(series, dtype=np.float32)
    values = values[:, None] if values.ndim == 1 else values
    figure = _new_figure(7, 3, 90)
    axis = figure.subplots()
    for channel in range(values.shape[1]):
        axis.plot(values[:, channel], linewidth=1, label=f"channel {channel}")
    axis.set_xlabel("time step")
    axis.set_title(title or f"{values.shape[0]} time steps x {values.shape[1]} channels")
    if values.shape[1] <= 12:
        axis.legend(fontsize=6, ncol=min(values.shape[1], 6), loc="upper right")
    figure.tight_layout()
    return _figure_pixels(figure)


def head_titles(num_heads: int, head_scales: Sequence[int] | None) -> list[str]:
    """``head h`` and, for an Attention-SH head, the scale its keys and values are pooled by."""
    if head_scales is None:
        return [f"head {head}" for head in range(num_heads)]
    return [f"head {head}: keys pooled by {scale}" if scale > 1 else f"head {head}: scale 1 (no pooling)"
            for head, scale in zip(range(num_heads), head_scales)]


def attention_figure(
    attention: np.ndarray, head_scales: Sequence[int] | None = None, *, title: str = "",
    patch_grid: tuple[int, int] | None = None,
) -> np.ndarray:
    """The attention maps of one layer, one panel per head, as an RGB array.

    Args:
        attention: (heads, tokens, tokens), rows are queries.
        head_scales: the Attention-SH scale of each head, named in its panel's title.
        patch_grid: (prefix tokens, grid side) of an image model: each head's attention from the first token is
            drawn over the patch grid instead of the full matrix.
    """
    heads = attention.shape[0]
    columns = min(heads, 4)
    rows = -(-heads // columns)
    figure = _new_figure(3 * columns, 3 * rows, 80)
    axes = figure.subplots(rows, columns, squeeze=False)
    prefix, side = patch_grid if patch_grid is not None else (0, 0)
    over_grid = patch_grid is not None and attention.shape[-1] == prefix + side * side
    for head, (axis, name) in enumerate(zip(axes.flat, head_titles(heads, head_scales))):
        panel = attention[head, 0, prefix:].reshape(side, side) if over_grid else attention[head]
        axis.imshow(panel, cmap="viridis", interpolation="nearest")
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("patch column" if over_grid else "key", fontsize=7)
        axis.set_ylabel("patch row" if over_grid else "query", fontsize=7)
        axis.tick_params(labelsize=6)
    for axis in list(axes.flat)[heads:]:
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    return _figure_pixels(figure)


# ------------------------------------------------------------------------------------------------ the app


def _layer_index(demo: DemoModel, layer: Any) -> int:
    """A 1-based layer number from the app (a slider may hand a float) as an index."""
    number = int(round(float(layer)))
    if not 1 <= number <= demo.num_layers:
        raise DemoError(f"Layer {number}: give a layer from 1 to {demo.num_layers}.")
    return number - 1


def series_outputs(
    demo: DemoModel, path: str | os.PathLike, series_number: Any, layer: Any, **reader: Any
) -> tuple[dict[str, float], np.ndarray, np.ndarray, str]:
    """What the series tab shows for series ``series_number`` (1-based) of the file at ``path``: the ranking, the
    series plot, the layer's attention maps and a line of text."""
    read = read_series_file(path, **reader)
    number = int(round(float(series_number)))
    if not 1 <= number <= len(read.series):
        count = len(read.series)
        raise DemoError(f"Series {number}: {Path(path).name} holds {count} series; give 1 to {count}.")
    index, layer_index = number - 1, _layer_index(demo, layer)
    series = read.series[index]
    prediction = classify_series(demo, series)
    top = next(iter(prediction.ranking))
    truth = read.labels[index]
    text = (f"Series {number} of {len(read.series)} ({read.names[index]}, {len(series)} time steps): **{top}**"
            + (f"; the file says {truth}." if truth is not None else ".") + f"\n\n{demo.describe()}")
    maps = attention_figure(prediction.attentions[layer_index], demo.head_scales, title=f"layer {layer_index + 1}")
    return prediction.ranking, series_figure(series, f"series {number}: {read.names[index]}"), maps, text


def image_outputs(demo: DemoModel, image: Any, layer: Any) -> tuple[dict[str, float], np.ndarray, str]:
    """What the image tab shows: the ranking, the layer's attention maps and a line of text."""
    if image is None:
        raise DemoError("No image: upload one.")
    prediction = classify_image(demo, image)
    layer_index = _layer_index(demo, layer)
    top = next(iter(prediction.ranking))
    maps = attention_figure(prediction.attentions[layer_index], demo.head_scales,
                            title=f"layer {layer_index + 1}", patch_grid=demo.patch_grid)
    return prediction.ranking, maps, f"**{top}**\n\n{demo.describe()}"


def build_demo(
    checkpoint: str | os.PathLike | DemoModel,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    reader_options: dict[str, Any] | None = None,
    examples: Sequence[str | os.PathLike] = (),
) -> gradio.Blocks:
    """The Gradio app (a ``gradio.Blocks``) for ``checkpoint``; ``launch()`` serves it.

    A time-series checkpoint gets a file upload (`SERIES_SUFFIXES`, read by `read_series_file` with
    ``reader_options``), the number of the series in the file and a layer; an image checkpoint an image upload and a
    layer. Its API (for ``gradio_client``): ``/classify_series(file, series_number, layer)`` or
    ``/classify_image(image, layer)``, answering the ranking (a Label), the series plot (series only), the attention
    maps (images) and a Markdown line.
    """
    gr = require_gradio()
    demo_model = checkpoint if isinstance(checkpoint, DemoModel) else load_demo_model(
        checkpoint, revision=revision, trust_remote_code=trust_remote_code
    )
    reader = dict(reader_options or {})

    def classify_series_file(file: Any, series_number: Any, layer: Any):
        if file is None:
            raise gr.Error("No file: upload a series file.")
        try:
            return series_outputs(demo_model, file, 1 if series_number is None else series_number, layer, **reader)
        except DemoError as err:
            raise gr.Error(str(err)) from err

    def classify_uploaded_image(image: Any, layer: Any):
        try:
            return image_outputs(demo_model, image, layer)
        except DemoError as err:
            raise gr.Error(str(err)) from err

    local = Path(demo_model.checkpoint)
    title = f"hf-primaldual demo: {local.name if local.exists() else demo_model.checkpoint}"
    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\n\n{demo_model.describe()}")
        layer = gr.Slider(1, demo_model.num_layers, value=demo_model.num_layers, step=1,
                          label="Layer of the attention maps")
        if demo_model.family == "timeseries":
            with gr.Row():
                upload = gr.File(label="Series file (.ts, .csv, .npz, ...)", file_types=list(SERIES_SUFFIXES))
                number = gr.Number(value=1, precision=0, minimum=1, label="Series number in the file")
            inputs = [upload, number, layer]
        else:
            upload = gr.Image(type="pil", label="Image")
            inputs = [upload, layer]
        button = gr.Button("Classify", variant="primary")
        ranking = gr.Label(num_top_classes=min(5, len(demo_model.labels)), label="Ranked labels")
        text = gr.Markdown()
        maps = gr.Image(type="numpy", label="Attention maps per head", format="png")
        if demo_model.family == "timeseries":
            plot = gr.Image(type="numpy", label="The series", format="png")
            button.click(classify_series_file, inputs, [ranking, plot, maps, text], api_name="classify_series")
        else:
            button.click(classify_uploaded_image, inputs, [ranking, maps, text], api_name="classify_image")
        if examples and demo_model.family == "timeseries":
            gr.Examples([[str(path), 1, demo_model.num_layers] for path in examples], inputs)
    return app


# ------------------------------------------------------------------------------------------------ the Space

SPACE_APP = '''"""Gradio Space of {model}: hf-primaldual's demo (https://huggingface.co/spaces/{space}).

The package (hf_primaldual/ beside this file) is a copy of hf-primaldual {version}, which is not on PyPI.
"""

from hf_primaldual.demo import build_demo

demo = build_demo({model!r}, revision={revision!r}, reader_options={reader!r})

if __name__ == "__main__":
    demo.launch()
'''
#: The package's files a Space needs: its code, not its sample data (the app takes uploads) or built extensions.
_SPACE_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "resources", "build")


def space_requirements() -> str:
    """The Space's requirements.txt: the package's own dependencies at the versions installed here (the ones the
    demo was run with). Gradio is not listed: the Space's ``sdk_version`` installs it."""
    import re

    from packaging.requirements import Requirement

    lines = []
    for text in metadata.requires("hf-primaldual") or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        version = metadata.version(requirement.name).split("+")[0]  # torch's "+cpu": PyPI has no local versions
        lines.append(f"{requirement.name}=={version}")
    return "\n".join(sorted(set(lines), key=lambda line: re.split("[=<>]", line)[0].lower())) + "\n"


def space_card(model: str, space: str) -> str:
    """The Space's README.md: its metadata (``sdk: gradio``, ``sdk_version`` = the Gradio installed here,
    ``python_version`` = this interpreter's, as the pinned requirements may need it, ``app_file: app.py``, the model
    in ``models``) and a line on what it does."""
    from huggingface_hub import SpaceCard, SpaceCardData

    gr = require_gradio()
    data = SpaceCardData(
        title=f"{model.split('/')[-1]} demo"[:60], sdk="gradio", sdk_version=gr.__version__, app_file="app.py",
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",  # the requirements' pins need it
        license="apache-2.0", models=[model], tags=["hf-primaldual", "primal-dual-attention"],
        emoji="📈", colorFrom="blue", colorTo="green", pinned=False,
        short_description="Classify with primal-dual attention; see each head's attention",
    )
    body = (
        f"# {model}\n\nUpload an input and the model [{model}](https://huggingface.co/{model}) ranks the labels and "
        "shows the attention maps of every head (an Attention-SH head names the scale it pools). Made with "
        f"`hf-primaldual-demo {model} --space {space}`.\n"
    )
    return str(SpaceCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + body))


def write_space(
    model: str, folder: str | os.PathLike, *, space: str, revision: str | None = None,
    reader_options: dict[str, Any] | None = None,
) -> Path:
    """Write the Space of the Hub model ``model`` into ``folder`` (made if needed, written over): ``app.py``,
    ``requirements.txt``, ``README.md`` and ``hf_primaldual/``, a copy of this package that ``app.py`` imports.

    Raises:
        DemoError: ``model`` is not a Hub repo id (a Space loads its model from the Hub).
    """
    from .hub import hub_id

    if hub_id(model) is None:
        raise DemoError(
            f"{model} is a local folder, but a Space loads its model from the Hub: push the model first "
            f"(hf-primaldual-push {model} your-name/model-name), then give its repo id with --space."
        )
    import hf_primaldual

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    package = root / "hf_primaldual"
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(Path(hf_primaldual.__file__).parent, package, ignore=_SPACE_IGNORED)
    (root / "app.py").write_text(SPACE_APP.format(
        model=model, space=space, revision=revision, reader=dict(reader_options or {}),
        version=hf_primaldual.__version__,
    ), encoding="utf-8")
    (root / "requirements.txt").write_text(space_requirements(), encoding="utf-8")
    (root / "README.md").write_text(space_card(model, space), encoding="utf-8")
    return root


def space_files(folder: str | os.PathLike) -> list[PushFile]:
    """Every file of a Space folder as the `hub.PushFile` list `hub.upload_files` sends, sorted by path."""
    from .hub import PushFile

    root = Path(folder)
    return [
        PushFile(path.relative_to(root).as_posix(), path.stat().st_size, path)
        for path in sorted(root.rglob("*")) if path.is_file() and "__pycache__" not in path.parts
    ]


def push_space(
    model: str, space: str, *, folder: str | os.PathLike | None = None, revision: str | None = None,
    reader_options: dict[str, Any] | None = None, private: bool = False, token: str | None = None,
) -> CommitInfo:
    """Write the Space of ``model`` (`write_space`, into ``folder`` or a temporary one) and push it to the Space
    repo ``space`` in one commit through `hub.upload_files`, the model push's client (endpoint and token from
    ``HF_ENDPOINT`` / ``HF_TOKEN``; the Space is created with the Gradio SDK when missing; files of an older
    version are deleted). Returns the `CommitInfo`. Raises `hub.HubPushError` naming the problem and the fix."""
    import tempfile

    from .hub import upload_files

    with tempfile.TemporaryDirectory() as scratch:
        root = write_space(model, folder if folder is not None else scratch, space=space, revision=revision,
                           reader_options=reader_options)
        return upload_files(
            space_files(root), space, repo_type="space", space_sdk="gradio", private=private, token=token,
            commit_message=f"Demo of {model} (hf-primaldual-demo)",
        )


__all__ = [
    "DemoError",
    "DemoModel",
    "Prediction",
    "SeriesFile",
    "attention_figure",
    "build_demo",
    "classify_image",
    "classify_series",
    "head_titles",
    "load_demo_model",
    "push_space",
    "read_series_file",
    "require_gradio",
    "series_figure",
    "space_card",
    "space_files",
    "space_requirements",
    "write_space",
]
