"""Tests of the image loaders and transforms, on excerpts of Fashion-MNIST and the CIFAR-10 JPEG zip in
tests/fixtures and, when present, the full files in the shared data folder beside the repository."""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ViTImageProcessorPil

from helpers import FIXTURES, SHARED_DATA
from hf_primaldual.data import (
    FASHION_MNIST_CLASSES,
    build_transforms,
    load_fashion_mnist,
    load_image_dataset,
    load_image_folder,
    standardise_image_columns,
)
from hf_primaldual.data.images import measure_normalisation

FASHION_SAMPLE = FIXTURES / "fashion-mnist-sample"
CIFAR_SAMPLE = FIXTURES / "cifar10-sample"
SHARED_FASHION = SHARED_DATA / "images" / "fashion-mnist"


def idx_pixels(path: Path, index: int) -> np.ndarray:
    """Image `index` of an IDX image file, read directly (16-byte header, then 28x28 bytes per image)."""
    raw = gzip.decompress(path.read_bytes())
    return np.frombuffer(raw, np.uint8, count=28 * 28, offset=16 + 28 * 28 * index).reshape(28, 28)


def zip_tree(folder: Path, archive: Path) -> Path:
    """Zip `folder`'s files as `split/class/file` members, like the full CIFAR-10 zip, with a top-level README."""
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("README.md", "not an image")
        for file in sorted(folder.rglob("*.jpg")):
            opened.write(file, file.relative_to(folder).as_posix())
    return archive


@pytest.fixture(scope="module")
def cifar_zip(tmp_path_factory) -> Path:
    """The CIFAR sample as a zip laid out like the full CIFAR-10 zip, with a top-level README to skip."""
    return zip_tree(CIFAR_SAMPLE, tmp_path_factory.mktemp("zip") / "cifar-sample.zip")


def test_fashion_mnist_sample_images_and_labels():
    dataset = load_fashion_mnist(FASHION_SAMPLE)
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (16, 16)
    assert dataset["train"].features["label"].names == list(FASHION_MNIST_CLASSES)
    first = dataset["train"][0]
    assert first["image"].mode == "L" and first["image"].size == (28, 28)
    assert FASHION_MNIST_CLASSES[first["label"]] == "Ankle boot"  # the first training image of Fashion-MNIST
    first_pixels = idx_pixels(FASHION_SAMPLE / "train-images-idx3-ubyte.gz", 0)
    np.testing.assert_array_equal(np.asarray(first["image"]), first_pixels)
    last_pixels = idx_pixels(FASHION_SAMPLE / "t10k-images-idx3-ubyte.gz", 15)
    np.testing.assert_array_equal(np.asarray(dataset["test"][15]["image"]), last_pixels)


@pytest.mark.skipif(not SHARED_FASHION.is_dir(), reason="shared data folder beside the repository not present")
def test_full_fashion_mnist_through_the_dispatcher():
    dataset = load_image_dataset(SHARED_FASHION)
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (60000, 10000)
    assert dataset["test"][9999]["image"].size == (28, 28)
    assert np.bincount(dataset["train"]["label"][:]).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    np.testing.assert_array_equal(
        np.asarray(dataset["train"][12345]["image"]), idx_pixels(SHARED_FASHION / "train-images-idx3-ubyte.gz", 12345)
    )


def copy_fashion_sample(tmp_path: Path) -> Path:
    folder = tmp_path / "fashion"
    shutil.copytree(FASHION_SAMPLE, folder)
    return folder


def test_idx_with_a_wrong_magic_number_names_the_file(tmp_path):
    folder = copy_fashion_sample(tmp_path)
    labels = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[3] = 3  # an idx3 header on a label file
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(ValueError, match=rf"{labels} is not an unsigned-byte IDX file .* magic number is 00000803"):
        load_fashion_mnist(folder)


def test_truncated_idx_file_names_the_file(tmp_path):
    folder = copy_fashion_sample(tmp_path)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-100]))
    with pytest.raises(ValueError, match=rf"{images} declares shape \(16, 28, 28\) .* truncated"):
        load_fashion_mnist(folder)


def test_missing_idx_file(tmp_path):
    folder = copy_fashion_sample(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=rf"No t10k-labels-idx1-ubyte file in {folder}: looked for") as caught:
        load_fashion_mnist(folder)
    assert "t10k-labels.idx1-ubyte.gz" in str(caught.value)  # every name tried is listed


def test_image_zip_splits_classes_and_pixels(cifar_zip):
    dataset = load_image_folder(cifar_zip)
    assert list(dataset) == ["train", "test"]
    assert dataset["train"].features["label"].names == ["cat", "dog", "ship"]
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (6, 6)
    assert dataset["train"].info.dataset_name == "cifar-sample"
    row = dataset["test"][4]
    assert dataset["test"].features["label"].int2str(row["label"]) == "ship"
    assert row["image"].size == (32, 32) and row["image"].mode == "RGB"
    with Image.open(CIFAR_SAMPLE / "test" / "ship" / "0000.jpg") as original:
        np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(original))


def test_image_folder_reads_like_the_zip(cifar_zip):
    from_zip, from_folder = load_image_folder(cifar_zip), load_image_dataset(CIFAR_SAMPLE)
    for split in ("train", "test"):
        assert list(from_folder[split]["label"]) == list(from_zip[split]["label"])
        assert np.array_equal(np.asarray(from_folder[split][5]["image"]), np.asarray(from_zip[split][5]["image"]))


def test_corrupt_image_is_named(tmp_path):
    archive = tmp_path / "broken.zip"
    good = (CIFAR_SAMPLE / "train" / "cat" / "0000.jpg").read_bytes()
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("train/cat/0000.jpg", good)
        opened.writestr("train/cat/0001.jpg", good[: len(good) // 2])  # a truncated JPEG
    with pytest.raises(ValueError, match=rf"Cannot decode the image train/cat/0001.jpg in {archive}"):
        load_image_folder(archive)
    folder = tmp_path / "folder" / "test" / "dog"
    folder.mkdir(parents=True)
    (folder / "0000.png").write_bytes(b"this is not a PNG")
    with pytest.raises(ValueError, match=rf"Cannot decode the image {folder / '0000.png'}"):
        load_image_folder(tmp_path / "folder")


def test_layout_and_dispatch_errors(tmp_path, cifar_zip):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="No image found .* <split>/<class name>/<image file>"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="neither a folder nor a .zip"):
        load_image_folder(tmp_path / "absent.zip")
    with pytest.raises(TypeError, match="only apply to Hub datasets"):
        load_image_dataset(cifar_zip, split="train")


def test_standardise_image_columns_renames_by_feature_type(cifar_zip):
    dataset = load_image_folder(cifar_zip).rename_columns({"image": "img", "label": "fine_label"})
    renamed = standardise_image_columns(dataset)
    assert renamed["train"].column_names == ["image", "label"]
    ambiguous = datasets.DatasetDict(train=dataset["train"].add_column("coarse", dataset["train"]["fine_label"]))
    ambiguous = ambiguous.cast_column("coarse", dataset["train"].features["fine_label"])
    with pytest.raises(ValueError, match="2 ClassLabel columns"):
        standardise_image_columns(ambiguous)


@pytest.fixture(scope="module")
def cifar_train(cifar_zip) -> datasets.Dataset:
    return load_image_folder(cifar_zip)["train"]


def expected_pixels(image: Image.Image) -> np.ndarray:
    """What a ViT processor without resizing gives: (x / 255 - 0.5) / 0.5, channels first."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return (array - 0.5) / 0.5


def test_eval_transform_normalises(cifar_train):
    processor = ViTImageProcessorPil(do_resize=False)
    batch = cifar_train.with_transform(build_transforms(processor, train=False, horizontal_flip=True))[:4]
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["labels"].tolist() == list(cifar_train["label"][:4])
    for row in range(4):
        expected = expected_pixels(cifar_train[row]["image"])
        np.testing.assert_allclose(batch["pixel_values"][row].numpy(), expected, atol=1e-6)


def test_transform_resizes_to_the_processor_size(cifar_train):
    processor = ViTImageProcessorPil(size={"height": 48, "width": 48})
    sample = cifar_train.with_transform(build_transforms(processor, train=True, horizontal_flip=True))[0]
    assert sample["pixel_values"].shape == (3, 48, 48) and sample["labels"].ndim == 0


def test_train_transform_is_a_padded_random_crop(cifar_train):
    processor = ViTImageProcessorPil(do_resize=False)
    transform = build_transforms(processor, train=True, random_crop_padding=4, horizontal_flip=False)
    image = cifar_train[0]["image"]
    padded = np.pad(expected_pixels(image), ((0, 0), (4, 4), (4, 4)), constant_values=(0 - 0.5) / 0.5)
    crops = {(top, left): padded[:, top : top + 32, left : left + 32] for top in range(9) for left in range(9)}
    torch.manual_seed(0)
    offsets = set()
    for _ in range(6):
        output = transform({"image": [image]})["pixel_values"][0].numpy()
        offsets |= {offset for offset, crop in crops.items() if np.allclose(output, crop, atol=1e-6)}
    assert len(offsets) > 1  # every output is one of the crops, and they vary
    torch.manual_seed(0)
    first = transform({"image": [image]})["pixel_values"]
    torch.manual_seed(0)
    assert torch.equal(transform({"image": [image]})["pixel_values"], first)  # reproducible under torch's seed


def test_horizontal_flip_only_mirrors(cifar_train):
    processor = ViTImageProcessorPil(do_resize=False)
    transform = build_transforms(processor, train=True, random_crop_padding=0, horizontal_flip=True)
    image = cifar_train[1]["image"]
    plain = expected_pixels(image)
    torch.manual_seed(0)
    outputs = [transform({"image": [image]})["pixel_values"][0].numpy() for _ in range(8)]
    flipped = [np.allclose(output, plain[:, :, ::-1], atol=1e-6) for output in outputs]
    assert all(flipped[i] or np.allclose(output, plain, atol=1e-6) for i, output in enumerate(outputs))
    assert 0 < sum(flipped) < len(outputs)


def test_grey_images_follow_the_processor_channels():
    fashion = load_fashion_mnist(FASHION_SAMPLE)["test"]
    grey = ViTImageProcessorPil(do_resize=False, image_mean=[0.5], image_std=[0.5])
    one_channel = fashion.with_transform(build_transforms(grey, train=False, horizontal_flip=False))[:2]
    assert one_channel["pixel_values"].shape == (2, 1, 28, 28)
    np.testing.assert_allclose(one_channel["pixel_values"][0].numpy(), expected_pixels(fashion[0]["image"]), atol=1e-6)
    rgb = ViTImageProcessorPil(size={"height": 32, "width": 32})
    three_channels = fashion.with_transform(build_transforms(rgb, train=True, horizontal_flip=False))[:2]
    assert three_channels["pixel_values"].shape == (2, 3, 32, 32)
    assert torch.equal(three_channels["pixel_values"][:, 0], three_channels["pixel_values"][:, 2])


# --- IDX files under the names in common use ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rename",
    [
        lambda stem: f"{stem}.gz",  # train-images-idx3-ubyte.gz, as published
        lambda stem: stem.replace("-idx", ".idx") + ".gz",  # train-images.idx3-ubyte.gz, as some mirrors have it
        lambda stem: stem,  # unzipped
        lambda stem: stem.replace("-idx", ".idx"),  # unzipped, dotted: train-images.idx3-ubyte
    ],
    ids=["dashed-gz", "dotted-gz", "dashed", "dotted"],
)
def test_idx_files_are_found_under_the_names_in_use(tmp_path, rename):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for source in FASHION_SAMPLE.glob("*-ubyte.gz"):
        target = folder / rename(source.name.removesuffix(".gz"))
        target.write_bytes(source.read_bytes() if target.suffix == ".gz" else gzip.decompress(source.read_bytes()))
    dataset = load_image_dataset(folder)
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (16, 16)
    np.testing.assert_array_equal(
        np.asarray(dataset["test"][7]["image"]), idx_pixels(FASHION_SAMPLE / "t10k-images-idx3-ubyte.gz", 7)
    )


def test_folder_with_neither_idx_files_nor_images_says_what_was_looked_for(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    for source in FASHION_SAMPLE.glob("*-ubyte.gz"):
        shutil.copy(source, folder / source.name.replace("-ubyte", ""))  # train-images-idx3.gz: no known name
    with pytest.raises(FileNotFoundError) as caught:
        load_image_dataset(folder)
    message = str(caught.value)
    assert str(folder) in message
    assert "train-images-idx3-ubyte.gz" in message and "train-images.idx3-ubyte" in message
    assert "<split>/<class name>/<image file>" in message
    assert "train-images-idx3.gz" in message  # what the folder does hold


# --- 16-bit images --------------------------------------------------------------------------------------------------


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    fashion = load_fashion_mnist(FASHION_SAMPLE)
    originals = {}
    for split in ("train", "test"):
        row = fashion[split][0]
        grey = np.asarray(row["image"])
        class_folder = tmp_path / "png16" / split / FASHION_MNIST_CLASSES[row["label"]].replace("/", "-")
        class_folder.mkdir(parents=True)
        Image.fromarray(grey.astype(np.uint16) * 257).save(class_folder / "0000.png")  # 0..255 -> 0..65535
        originals[split] = row["image"]
    dataset = load_image_folder(tmp_path / "png16")
    assert dataset["train"][0]["image"].mode == "I;16"
    grey_processor = ViTImageProcessorPil(do_resize=False, image_mean=[0.5], image_std=[0.5])
    grey_batch = dataset["test"].with_transform(build_transforms(grey_processor, train=False, horizontal_flip=False))
    np.testing.assert_allclose(grey_batch[:1]["pixel_values"][0].numpy(), expected_pixels(originals["test"]), atol=1e-6)
    rgb_processor = ViTImageProcessorPil(do_resize=False)
    rgb_batch = dataset["train"].with_transform(build_transforms(rgb_processor, train=False, horizontal_flip=False))
    expected = expected_pixels(originals["train"].convert("RGB"))
    np.testing.assert_allclose(rgb_batch[:1]["pixel_values"][0].numpy(), expected, atol=1e-6)


def test_32_bit_integer_image_in_the_16_bit_range_is_scaled_too():
    original = load_fashion_mnist(FASHION_SAMPLE)["train"][1]["image"]
    wide = Image.fromarray(np.asarray(original).astype(np.int32) * 257)
    assert wide.mode == "I"
    processor = ViTImageProcessorPil(do_resize=False, image_mean=[0.5], image_std=[0.5])
    transform = build_transforms(processor, train=False, horizontal_flip=False)
    np.testing.assert_allclose(transform({"image": [wide]})["pixel_values"][0].numpy(), expected_pixels(original))


# --- Class folders --------------------------------------------------------------------------------------------------


def copy_cifar_sample(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar"
    shutil.copytree(CIFAR_SAMPLE, folder)
    return folder


@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_class_folders_differing_only_in_case_are_refused(tmp_path, as_zip):
    folder = copy_cifar_sample(tmp_path)
    (folder / "test" / "cat").rename(folder / "test" / "Cat")
    source = zip_tree(folder, tmp_path / "cifar.zip") if as_zip else folder
    with pytest.raises(ValueError, match="differ only in case") as caught:
        load_image_folder(source)
    assert "train/cat" in str(caught.value) and "test/Cat" in str(caught.value) and str(source) in str(caught.value)


def test_empty_training_class_folder_is_refused(tmp_path):
    folder = copy_cifar_sample(tmp_path)
    for image in (folder / "train" / "dog").iterdir():
        image.unlink()
    with pytest.raises(ValueError, match=rf"train/dog in {folder} holds no image"):
        load_image_folder(folder)


def test_class_only_in_an_empty_folder_is_refused(tmp_path):
    folder = copy_cifar_sample(tmp_path)
    (folder / "train" / "bird").mkdir()
    with pytest.raises(ValueError, match=rf"train/bird in {folder} holds no image"):
        load_image_folder(folder)


def test_class_without_a_training_folder_is_refused(tmp_path):
    folder = copy_cifar_sample(tmp_path)
    (folder / "test" / "ship").rename(folder / "test" / "boat")
    with pytest.raises(ValueError, match=rf"class 'boat' \(test/boat\) has no training folder train/boat in {folder}"):
        load_image_folder(folder)


# --- Local paths that do not exist ----------------------------------------------------------------------------------


@pytest.fixture
def hub_calls(monkeypatch, cifar_zip) -> list[str]:
    """The names `load_image_dataset` sends to `datasets.load_dataset`, which is replaced by a local stand-in."""
    calls = []

    def load_dataset(name, **kwargs):
        calls.append(name)
        return load_image_folder(cifar_zip)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_typo_in_a_local_path_fails_at_once_without_asking_the_hub(tmp_path, monkeypatch, hub_calls):
    shutil.copytree(FASHION_SAMPLE, tmp_path / "fashion-mnist")
    monkeypatch.chdir(tmp_path)
    typos = [
        tmp_path / "fashon-mnist",  # a Path is always local
        str(tmp_path / "fashon-mnist"),  # absolute
        "./fashon-mnist",
        "../fashon-mnist",
        "~/fashon-mnist-not-here",
        "fashion-mnist/train-images",  # owner/name shape, but its parent is a local folder
        "data/images/fashion-mnist",  # more than one separator: not a Hub id
    ]
    for typo in typos:
        with pytest.raises(FileNotFoundError, match="no such file or directory") as caught:
            load_image_dataset(typo)
        assert str(typo) in str(caught.value)
    assert hub_calls == []
    with pytest.raises(FileNotFoundError, match="did you mean .*fashion-mnist"):
        load_image_dataset("./fashon-mnist")


def test_hub_names_still_go_to_the_hub(tmp_path, monkeypatch, hub_calls):
    monkeypatch.chdir(tmp_path)
    for name in ("cifar10", "uoft-cs/cifar10"):
        assert load_image_dataset(name)["train"].num_rows == 6
    assert hub_calls == ["cifar10", "uoft-cs/cifar10"]


# --- Damaged archives -----------------------------------------------------------------------------------------------


def test_truncated_gzip_idx_file_names_the_file(tmp_path):
    folder = copy_fashion_sample(tmp_path)
    images = folder / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])  # a download cut short
    with pytest.raises(ValueError, match=rf"{images} is not a complete gzip file .* truncated"):
        load_image_dataset(folder)


def test_truncated_zip_names_the_file(tmp_path, cifar_zip):
    truncated = tmp_path / "cifar-sample.zip"
    whole = cifar_zip.read_bytes()
    truncated.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ValueError, match=rf"{truncated} is not a complete zip archive: .* truncated"):
        load_image_dataset(truncated)


def test_corrupt_zip_member_names_the_archive_and_the_member(tmp_path, cifar_zip):
    corrupt = tmp_path / "cifar-sample.zip"
    data = bytearray(cifar_zip.read_bytes())
    with zipfile.ZipFile(cifar_zip) as opened:
        member = opened.getinfo("train/dog/0001.jpg")
    # Past the member's local header (30 bytes, then its name): flip a byte of the stored JPEG data.
    data[member.header_offset + 30 + len(member.filename) + 100] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"Cannot read train/dog/0001.jpg in {corrupt}: .*CRC"):
        load_image_folder(corrupt)


def test_zip_without_a_test_split_is_refused(tmp_path):
    folder = copy_cifar_sample(tmp_path)
    shutil.rmtree(folder / "test")
    archive = zip_tree(folder, tmp_path / "train-only.zip")
    with pytest.raises(ValueError, match=rf"{archive} has no test split: its splits are \['train'\]"):
        load_image_dataset(archive)


# --- Normalisation statistics (a model trained from scratch) ---------------------------------------------------------


def pooled_statistics(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every pixel of `images` pooled, per RGB channel, in [0, 1]: the reference."""
    pixels = np.concatenate([np.asarray(image.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255
                             for image in images])
    return pixels.mean(axis=0), pixels.std(axis=0)


def test_normalisation_of_images_of_different_sizes_is_that_of_all_their_pixels():
    images = list(load_image_folder(CIFAR_SAMPLE)["train"]["image"])
    images[2] = images[2].resize((48, 40), Image.Resampling.BICUBIC)  # one photo of another size
    images[4] = images[4].resize((17, 23), Image.Resampling.BICUBIC)
    mean, std = measure_normalisation(images)
    expected_mean, expected_std = pooled_statistics(images)
    np.testing.assert_allclose(mean, expected_mean.round(4), atol=1e-12)
    np.testing.assert_allclose(std, expected_std.round(4), atol=1e-12)


def test_normalisation_of_equal_sizes_is_unchanged():
    """Images of one size (the common case) give exactly the statistics of their stack, as before."""
    images = list(load_image_folder(CIFAR_SAMPLE)["train"]["image"])
    stacked = np.stack([np.asarray(image.convert("RGB"), dtype=np.float64) / 255 for image in images])
    mean, std = measure_normalisation(images)
    assert mean == stacked.mean(axis=(0, 1, 2)).round(4).tolist()
    assert std == stacked.std(axis=(0, 1, 2)).round(4).tolist()


def test_normalisation_of_16_bit_images_is_that_of_their_8_bit_originals(tmp_path):
    """A 16-bit PNG is measured as the transforms hand it to the model (scaled by its range), not clipped at 255
    (which turned nearly every pixel white, std ~0, and the training into NaN)."""
    originals = list(load_fashion_mnist(FASHION_SAMPLE)["train"]["image"])[:8]
    sixteen_bit = []
    for index, image in enumerate(originals):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.asarray(image).astype(np.uint16) * 257).save(path)  # 0..255 -> 0..65535
        sixteen_bit.append(Image.open(path))
    assert {image.mode for image in sixteen_bit} == {"I;16"}
    mean, std = measure_normalisation(sixteen_bit)
    assert (mean, std) == measure_normalisation(originals)
    expected_mean, expected_std = pooled_statistics(originals)
    np.testing.assert_allclose(mean, expected_mean.round(4), atol=1e-12)
    assert 0.1 < std[0] < 0.5 and np.isfinite(std).all()


def test_normalisation_of_blank_images_keeps_the_scale_instead_of_dividing_by_zero(caplog):
    blank = [Image.new("L", (28, 28), 0), Image.new("L", (32, 30), 0)]
    with caplog.at_level("WARNING"):
        mean, std = measure_normalisation(blank)
    assert mean == [0.0, 0.0, 0.0] and std == [1.0, 1.0, 1.0]
    assert "no spread in channel(s) [0, 1, 2]" in caplog.text
    with pytest.raises(ValueError, match="No image to measure the normalisation on"):
        measure_normalisation([])


@pytest.mark.slow  # a training run, one epoch of a tiny ViT
def test_training_from_scratch_on_images_of_mixed_sizes_and_depths(tmp_path):
    """The image command from scratch on a CIFAR sample where one photo has another size and one is a 16-bit grey
    PNG: it trains (numpy's "all input arrays must have the same shape" before), and the processor it saves holds
    the pooled statistics of the training images as the transforms see them."""
    from hf_primaldual.cli import train_image

    folder = copy_cifar_sample(tmp_path)
    first, second = sorted((folder / "train" / "cat").iterdir())
    Image.open(first).resize((40, 36)).save(first.with_suffix(".png"))
    first.unlink()
    grey = np.asarray(Image.open(second).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(second.with_suffix(".png"))
    second.unlink()
    output = tmp_path / "out"
    code = train_image.main([
        "--dataset", str(folder), "--output_dir", str(output), "--num_train_epochs", "1", "--hidden_size", "24",
        "--num_hidden_layers", "1", "--num_attention_heads", "3", "--intermediate_size", "48",
        "--per_device_train_batch_size", "4", "--save_strategy", "no", "--disable_tqdm", "true", "--report_to", "none",
    ])
    assert code == 0
    processor = ViTImageProcessorPil.from_pretrained(output)
    seen = [image if image.mode != "I;16" else Image.fromarray(np.rint(np.asarray(image) / 257).astype(np.uint8))
            for image in load_image_folder(folder)["train"]["image"]]
    expected_mean, expected_std = pooled_statistics(seen)
    np.testing.assert_allclose(processor.image_mean, expected_mean.round(4), atol=1e-12)
    np.testing.assert_allclose(processor.image_std, expected_std.round(4), atol=1e-12)
