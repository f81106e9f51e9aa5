"""The demo's pieces and the running app, driven with gradio_client: real JapaneseVowels series through a small
trained Attention-BN+SH classifier, a real CIFAR-10 image through a tiny ViT. Rankings are checked against a
standardisation and softmax written out here over a model loaded separately (the default ``sdpa`` path, not the
demo's eager one), and SH heads against what pooling by their scale means for the attention matrix."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import FIXTURES
from hf_primaldual import PrimalDualTimeSeriesForClassification, PrimalDualViTForImageClassification
from hf_primaldual.cli.demo import main as demo_main
from hf_primaldual.demo import (
    DemoError,
    build_demo,
    classify_image,
    classify_series,
    head_titles,
    load_demo_model,
    read_series_file,
    require_gradio,
)

from hf_primaldual.data import SHIPPED_UEA_DIR

VOWELS_TEST = SHIPPED_UEA_DIR / "JapaneseVowels" / "JapaneseVowels_TEST.ts"
HEAD_SCALES = [1, 1, 2, 4]  # the heads of conftest's vowels_checkpoint
#: The tests of the trained checkpoint: training it takes 10 to 20 s, on the first of them.
needs_training = pytest.mark.slow
CAT = FIXTURES / "cifar10-sample" / "test" / "cat" / "0000.jpg"


@pytest.fixture(scope="module")
def vowels_demo(vowels_checkpoint):
    return load_demo_model(vowels_checkpoint)


@pytest.fixture(scope="module")
def test_file():
    return read_series_file(VOWELS_TEST)


def expected_ranking(checkpoint, train_split, series: np.ndarray) -> dict[str, float]:
    """Label -> probability written out: numpy's population statistics of the training series, one unpadded series
    through the model as saved (its default attention path), softmax in float64."""
    stacked = np.concatenate([np.asarray(values, dtype=np.float64) for values in train_split["past_values"]])
    standardised = (series - stacked.mean(axis=0)) / stacked.std(axis=0)
    model = PrimalDualTimeSeriesForClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        logits = model(past_values=torch.tensor(standardised, dtype=torch.float32)[None]).logits[0]
    probabilities = torch.softmax(logits.double(), dim=-1)
    return {model.config.id2label[index]: float(p) for index, p in enumerate(probabilities)}


def test_a_ts_file_gives_every_series_in_file_order_with_its_label(test_file):
    lines = [line for line in VOWELS_TEST.read_text().splitlines() if line and not line.startswith(("@", "#"))]
    assert len(test_file.series) == len(lines) == 370
    # the case's first channel as written in the file; its label after the last ':'
    first = [float(value) for value in lines[5].split(":")[0].split(",")]
    assert test_file.series[5][:, 0] == pytest.approx(first, abs=1e-6)
    assert test_file.labels[5] == lines[5].rsplit(":", 1)[1]
    assert test_file.series[5].shape[1] == 12


def test_tables_and_arrays_read_with_or_without_labels(tmp_path, test_file):
    one = test_file.series[1]
    # one series, one row per time step, no label: the plain CSV a user exports
    pd.DataFrame(one, columns=[f"c{i}" for i in range(12)]).to_csv(tmp_path / "one.csv", index=False)
    read = read_series_file(tmp_path / "one.csv")
    assert len(read.series) == 1 and read.labels == [None]
    np.testing.assert_allclose(read.series[0], one, atol=1e-6)
    # long layout with ids and labels, as the training command reads it
    rows = [{"id": f"s{n}", "label": test_file.labels[n], **{f"c{i}": v for i, v in enumerate(step)}}
            for n in (0, 3) for step in test_file.series[n]]
    pd.DataFrame(rows).to_csv(tmp_path / "long.csv", index=False)
    read = read_series_file(tmp_path / "long.csv", series_id_column="id")
    assert read.labels == [test_file.labels[0], test_file.labels[3]]
    np.testing.assert_allclose(read.series[1], test_file.series[3], atol=1e-6)
    # .npz: X alone (unlabelled) and X with y
    equal = np.stack([series[:7] for series in test_file.series[:4]])  # (4, 7, 12)
    np.savez(tmp_path / "x.npz", X=equal)
    np.savez(tmp_path / "xy.npz", X=equal, y=np.array(["a", "b", "a", "b"]))
    unlabelled, labelled = read_series_file(tmp_path / "x.npz", array_layout="NTC"), read_series_file(
        tmp_path / "xy.npz", array_layout="NTC")
    assert unlabelled.labels == [None] * 4 and labelled.labels == ["a", "b", "a", "b"]
    np.testing.assert_allclose(unlabelled.series[2], equal[2])
    np.save(tmp_path / "X_upload.npy", equal)  # an uploaded .npy comes without its y_upload.npy
    np.testing.assert_allclose(read_series_file(tmp_path / "X_upload.npy", array_layout="NTC").series[3], equal[3])


def test_unreadable_files_are_refused_with_the_readers_message(tmp_path):
    (tmp_path / "notes.txt").write_text("1,2,3")
    with pytest.raises(DemoError, match=r"notes.txt: give a series file, one of \.ts"):
        read_series_file(tmp_path / "notes.txt")
    np.savez(tmp_path / "bad.npz", values=np.zeros((2, 3)))
    with pytest.raises(DemoError, match="name the series X"):
        read_series_file(tmp_path / "bad.npz")


@needs_training
def test_ranking_is_the_softmax_of_the_standardised_series(vowels_checkpoint, vowels, vowels_demo, test_file):
    for index in (0, 57, 300):
        series = test_file.series[index]
        prediction = classify_series(vowels_demo, series)
        assert list(prediction.ranking.values()) == sorted(prediction.ranking.values(), reverse=True)
        expected = expected_ranking(vowels_checkpoint, vowels["train"], series.astype(np.float64))
        assert prediction.ranking == pytest.approx(expected, abs=1e-5)
    # the model is trained: it names most speakers of the test file right
    right = sum(next(iter(classify_series(vowels_demo, s).ranking)) == label
                for s, label in zip(test_file.series[::10], test_file.labels[::10]))
    assert right / len(test_file.series[::10]) > 0.8


@needs_training
def test_each_head_pools_by_its_scale(vowels_demo, test_file):
    assert vowels_demo.head_scales == HEAD_SCALES
    series = next(s for s in test_file.series if len(s) % 4 == 0)  # every pooled slot full
    prediction = classify_series(vowels_demo, series)
    assert len(prediction.attentions) == 2
    for layer in prediction.attentions:
        assert layer.shape == (4, len(series), len(series))
        np.testing.assert_allclose(layer.sum(-1), 1.0, atol=1e-5)
        for head, scale in enumerate(HEAD_SCALES):
            # keys pooled by `scale`: every key of a slot gets the same weight from each query
            slots = layer[head].reshape(len(series), -1, scale)
            np.testing.assert_allclose(slots, np.repeat(slots[..., :1], scale, axis=-1), atol=1e-7)
            if scale == 1:
                assert np.abs(np.diff(layer[head], axis=-1)).max() > 1e-4  # an unpooled head is not flat
    titles = head_titles(4, HEAD_SCALES)
    assert titles[2] == "head 2: keys pooled by 2" and titles[3] == "head 3: keys pooled by 4"
    assert "h3: 4" in vowels_demo.describe()


@needs_training
def test_a_series_too_long_or_with_other_channels_is_refused(vowels_demo):
    with pytest.raises(DemoError, match="40 time steps.*max_sequence_length=29"):
        classify_series(vowels_demo, np.zeros((40, 12), dtype=np.float32))
    with pytest.raises(DemoError, match="does not fit"):
        classify_series(vowels_demo, np.zeros((10, 3), dtype=np.float32))


@needs_training
def test_the_checkpoints_own_code_runs_with_trust_remote_code(vowels_checkpoint, vowels_demo, test_file):
    remote = load_demo_model(vowels_checkpoint, trust_remote_code=True)
    assert type(remote.model).__module__.startswith("transformers_modules")  # not the installed package's class
    series = test_file.series[10]
    assert classify_series(remote, series).ranking == pytest.approx(classify_series(vowels_demo, series).ranking, abs=1e-6)


def test_an_image_checkpoint_ranks_labels_and_maps_attention_over_the_patches(vit_checkpoint):
    from transformers import AutoImageProcessor

    demo = load_demo_model(vit_checkpoint)
    image = Image.open(CAT)
    prediction = classify_image(demo, image)
    processor = AutoImageProcessor.from_pretrained(vit_checkpoint)
    model = PrimalDualViTForImageClassification.from_pretrained(vit_checkpoint).eval()
    with torch.no_grad():
        logits = model(**processor(image.convert("RGB"), return_tensors="pt")).logits[0]
    expected = torch.softmax(logits.double(), -1)
    assert prediction.ranking == pytest.approx({model.config.id2label[i]: float(p) for i, p in enumerate(expected)}, abs=1e-5)
    assert demo.patch_grid == (1, 4) and prediction.attentions[0].shape == (4, 17, 17)
    with pytest.raises(DemoError, match="time-series classifier: give it a series"):
        classify_image(_series_demo_stub(), image)


def _series_demo_stub():
    from hf_primaldual.demo import DemoModel

    return DemoModel("stub", "timeseries", None, None, "softmax", None)


def test_a_missing_folder_or_gradio_is_refused_by_the_command(tmp_path, capsys, monkeypatch):
    with pytest.raises(DemoError, match="is not a folder"):
        load_demo_model(tmp_path / "nowhere")
    with pytest.raises(DemoError, match="holds no config.json"):
        load_demo_model(tmp_path)
    monkeypatch.setitem(sys.modules, "gradio", None)  # as where the demo extra is not installed
    with pytest.raises(ImportError, match=r"pip install hf-primaldual\[demo\]"):
        require_gradio()
    assert demo_main([str(tmp_path)]) == 2
    assert "pip install hf-primaldual[demo]" in capsys.readouterr().err


@pytest.mark.slow
def test_the_running_app_classifies_uploads_over_gradio_client(vowels_demo, vit_checkpoint, test_file, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    pd.DataFrame(test_file.series[1]).to_csv(tmp_path / "case1.csv", index=False)
    apps = [build_demo(vowels_demo), build_demo(vit_checkpoint)]
    try:
        for app in apps:
            app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        series_client, image_client = (Client(app.local_url, verbose=False) for app in apps)
        ranking, series_png, maps_png, text = series_client.predict(
            handle_file(str(VOWELS_TEST)), 2, 2, api_name="/classify_series")
        expected = classify_series(vowels_demo, test_file.series[1]).ranking
        assert ranking["label"] == next(iter(expected))
        shown = {item["label"]: item["confidence"] for item in ranking["confidences"]}
        assert shown == pytest.approx({label: expected[label] for label in shown}, abs=1e-6)
        assert f"the file says {test_file.labels[1]}" in text and "Series 2 of 370" in text
        assert Image.open(series_png).size[0] > 300 and Image.open(maps_png).size[0] > 300
        # the same series as a plain CSV (one row per time step, no label) gets the same answer
        csv_ranking = series_client.predict(handle_file(str(tmp_path / "case1.csv")), 1, 2, api_name="/classify_series")[0]
        assert csv_ranking["label"] == ranking["label"]
        with pytest.raises(AppError, match="holds 370 series; give 1 to 370"):
            series_client.predict(handle_file(str(VOWELS_TEST)), 999, 2, api_name="/classify_series")
        image_ranking, image_maps, image_text = image_client.predict(handle_file(str(CAT)), 1, api_name="/classify_image")
        assert image_ranking["label"] in {"cat", "dog", "ship"} and "h3: 4" in image_text
        assert Image.open(image_maps).size[0] > 300
    finally:
        for app in apps:
            app.close()


def test_a_stock_vit_under_a_primal_dual_attention_shows_its_own_settings(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessorPil

    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, num_labels=3, id2label={0: "cat", 1: "dog", 2: "ship"},
                       label2id={"cat": 0, "dog": 1, "ship": 2})
    torch.manual_seed(0)
    stock = ViTForImageClassification(config)
    stock.set_attn_implementation("primaldual_bn_sh")
    stock.config.primaldual_attention = {"head_scales": [1, 2, 2, 4]}
    stock.save_pretrained(tmp_path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    demo = load_demo_model(tmp_path)
    assert (demo.attention_type, demo.head_scales, demo.patch_grid) == ("bn_sh", [1, 2, 2, 4], (1, 4))
    image = Image.open(CAT).convert("RGB")
    prediction = classify_image(demo, image)
    reloaded = ViTForImageClassification.from_pretrained(tmp_path).eval()  # its saved attention, not the demo's
    assert reloaded.config._attn_implementation == "primaldual_bn_sh"
    with torch.no_grad():
        logits = reloaded(**ViTImageProcessorPil(size={"height": 32, "width": 32})(image, return_tensors="pt")).logits[0]
    expected = {config.id2label[i]: float(p) for i, p in enumerate(torch.softmax(logits.double(), -1))}
    assert prediction.ranking == pytest.approx(expected, abs=1e-5)
    assert [layer.shape for layer in prediction.attentions] == [(4, 17, 17)] * 2
