"""Cards a Hub visitor can act on (issue 21), read back with huggingface_hub's ModelCard: the Hub task of each family
(pipeline_tag, model-index task type and name, tags), the full dataset id in ``datasets:`` and model-index, the
shape of the model actually saved, plain values (``cosine``, not ``SchedulerType.COSINE``), ``base_model`` only for
a Hub id (with its revision in the text), and an install line that works (``trust_remote_code=True`` first)."""

from __future__ import annotations

from huggingface_hub import ModelCard
from transformers import SchedulerType

from hf_primaldual import PrimalDualTimeSeriesConfig, PrimalDualViTConfig
from hf_primaldual.hub import EvaluationRow, render_model_card

VIT = PrimalDualViTConfig(image_size=224, patch_size=16, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=128, attention_type="bn")
SERIES = PrimalDualTimeSeriesConfig(num_input_channels=3, max_sequence_length=20, hidden_size=16, num_hidden_layers=1,
                                    num_attention_heads=2, intermediate_size=32, attention_type="bn_sh",
                                    head_scales=[1, 2])


def card(family: str, config, **kwargs) -> ModelCard:
    arguments = dict(
        model_name="m", config=config, dataset_name="cifar10", dataset_description="d", hyperparameters={},
        results=[EvaluationRow("test", "accuracy", 0.5)],
    )
    return ModelCard(str(render_model_card(family, **{**arguments, **kwargs})))  # parsed back from the text


def test_image_card_files_the_model_under_image_classification_with_the_full_dataset_id():
    parsed = card("primaldual-vit", VIT, dataset_name="cifar10", dataset_id="uoft-cs/cifar10",
                  task_type="image-classification")
    data = parsed.data
    assert data.pipeline_tag == "image-classification" and data.library_name == "transformers"
    assert data.datasets == ["uoft-cs/cifar10"]
    result = data.eval_results[0]
    assert (result.task_type, result.task_name) == ("image-classification", "Image Classification")
    assert (result.dataset_type, result.dataset_name, result.metric_value) == ("uoft-cs/cifar10", "cifar10", 0.5)


def test_a_hub_dataset_id_given_as_the_name_is_kept_whole():
    data = card("primaldual-vit", VIT, dataset_name="org/fashion-mnist-2").data
    assert data.datasets == ["org/fashion-mnist-2"] and data.eval_results[0].dataset_type == "org/fashion-mnist-2"


def test_time_series_card_has_a_hub_pipeline_tag_and_time_series_tags():
    data = card("primaldual-timeseries", SERIES, dataset_name="JapaneseVowels",
                task_type="time-series-classification").data
    # the Hub has no time-series classification task: tabular-classification (the time-series modality's
    # classification task), with the task said by the tags and the model-index
    assert data.pipeline_tag == "tabular-classification"
    assert {"time-series", "time-series-classification", "attention-bn_sh"} <= set(data.tags)
    result = data.eval_results[0]  # a Hub task id, and the task's name
    assert (result.task_type, result.task_name) == ("tabular-classification", "Time Series Classification")
    assert data.datasets is None  # a UEA name is no Hub dataset id: not claimed as one


def test_the_card_reports_the_saved_models_shape_and_plain_values():
    parsed = card(
        "primaldual-vit", VIT,
        hyperparameters={"image_size": 160, "patch_size": 4, "hidden_size": 192, "num_hidden_layers": 6,
                         "lr_scheduler": SchedulerType.COSINE, "learning_rate": 1e-3},
    )
    text = parsed.text
    for row in ("| image_size | 224 |", "| patch_size | 16 |", "| hidden_size | 64 |", "| num_hidden_layers | 2 |",
                "| lr_scheduler | cosine |", "| learning_rate | 0.001 |", "| bn_eps | 1e-05 |"):
        assert row in text, row
    assert "SchedulerType" not in text and "| head_scales |" not in text  # SH's settings do not apply to bn


def test_base_model_only_for_a_hub_id_with_its_revision(tmp_path):
    hub = card("primaldual-vit", VIT, base_model="facebook/deit-tiny-distilled-patch16-224",
               base_model_revision="0123abc")
    assert hub.data.base_model == "facebook/deit-tiny-distilled-patch16-224"
    assert "at revision `0123abc`" in hub.text
    local = card("primaldual-vit", VIT, base_model=str(tmp_path))
    assert local.data.base_model is None and f"a local checkpoint (`{tmp_path}`" in local.text


def test_the_install_line_needs_no_install_first():
    text = card("primaldual-timeseries", SERIES).text
    usage = text[text.index("## How to use"):]
    assert usage.index("trust_remote_code=True") < usage.index("hf_primaldual")
    assert "pip install hf-primaldual" not in text  # no index serves it
