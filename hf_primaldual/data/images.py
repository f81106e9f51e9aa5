"""Image classification data as `datasets.DatasetDict`s with an `image` and a `label` column, and the
train/eval transforms that turn them into `pixel_values` for the PrimalDualViT models.

Everything reads local files (Fashion-MNIST IDX files, a folder or `.zip` of `split/class/image` files) without
network access; any other name goes to `datasets.load_dataset`.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps
from transformers.image_processing_utils import BaseImageProcessor


FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_UBYTE = 0x08
# Suffixes PIL can read; other files (READMEs, label lists) in an image folder are skipped.
_IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})


def load_fashion_mnist(data_dir: str | os.PathLike) -> datasets.DatasetDict:
    """Load Fashion-MNIST from its four IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each gzipped `.gz` or not) in `data_dir`.

    The 28x28 grey images are stored as binary PGM: lossless and written with no compression work, which keeps
    loading the 70k images to about a second (encoding them as PNG takes ~10 s).

    Returns:
        `DatasetDict` with splits `train` (60k) and `test` (10k); columns `image` (`datasets.Image`, mode "L",
        28x28) and `label` (`ClassLabel` with `FASHION_MNIST_CLASSES`).
    """
    data_dir = Path(data_dir)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FASHION_MNIST_CLASSES))}
    )
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find_idx_file(data_dir, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx_file(data_dir, f"{prefix}-labels-idx1-ubyte")
        images, labels = _read_idx(images_path, ndim=3), _read_idx(labels_path, ndim=1)
        if len(images) != len(labels):
            raise ValueError(
                f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels: "
                "use the image and label files of the same split."
            )
        if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
            raise ValueError(
                f"{labels_path} holds label {labels.max()}, but Fashion-MNIST has {len(FASHION_MNIST_CLASSES)} "
                "classes (0-9): is this a Fashion-MNIST label file?"
            )
        height, width = images.shape[1:]
        pgm_header = f"P5\n{width} {height}\n255\n".encode()
        columns = {
            "image": [{"bytes": pgm_header + image.tobytes(), "path": None} for image in images],
            "label": labels.tolist(),
        }
        info = datasets.DatasetInfo(
            dataset_name="fashion_mnist",
            description="Fashion-MNIST (Xiao et al., 2017, arXiv:1708.07747): 28x28 grey images, 10 clothing classes.",
            features=features,
        )
        splits[split] = datasets.Dataset.from_dict(columns, features=features, info=info, split=split)
    return datasets.DatasetDict(splits)


def load_image_folder(path: str | os.PathLike) -> datasets.DatasetDict:
    """Load an image classification set laid out as `<split>/<class name>/<image file>`, from a folder or a
    `.zip` archive (e.g. the CIFAR-10 JPEG zip, `{train,test}/<class>/NNNN.jpg`).

    Files at other depths (a top-level README) and files that are not images by their suffix are skipped.
    Class names are the class folders of all splits, sorted (the `imagefolder` convention, which gives CIFAR-10
    its usual label order). Images from a zip are kept as their encoded bytes, images from a folder as their paths;
    `datasets` decodes them lazily on access.

    Every image is nevertheless decoded once here, so that a corrupt file fails at once and by name rather than in
    the middle of training (for CIFAR-10 this is ~10 s of the ~15 s load on one core). That, and reading the zip
    without extracting it into the cache, is why `datasets`' own `imagefolder` builder is not used.

    Returns:
        `DatasetDict` with one split per top-level folder (`train` first); columns `image` (`datasets.Image`)
        and `label` (`ClassLabel`).

    Raises:
        FileNotFoundError: `path` is neither a folder nor a zip file.
        ValueError: an image does not decode (the message names it), or no image has the expected layout.
    """
    path = Path(path)
    if path.is_dir():
        entries = list(_folder_entries(path))
    elif zipfile.is_zipfile(path):
        entries = list(_zip_entries(path))
    else:
        raise FileNotFoundError(f"{path} is neither a folder nor a .zip file of <split>/<class>/<image> files.")
    if not entries:
        raise ValueError(
            f"No image found in {path} at the depth <split>/<class name>/<image file> (e.g. train/cat/0001.jpg)."
        )
    class_names = sorted({class_name for _, class_name, _ in entries})
    label_of = {class_name: label for label, class_name in enumerate(class_names)}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names)})
    info = datasets.DatasetInfo(dataset_name=path.name.removesuffix(".zip"), features=features)
    split_names = sorted({split for split, _, _ in entries}, key=lambda split: (split != "train", split))
    splits = {}
    for split_name in split_names:
        rows = [(class_name, image) for split, class_name, image in entries if split == split_name]
        columns = {
            "image": [image for _, image in rows],
            "label": [label_of[class_name] for class_name, _ in rows],
        }
        splits[split_name] = datasets.Dataset.from_dict(
            columns, features=features, info=info.copy(), split=split_name
        )
    return datasets.DatasetDict(splits)


def load_image_dataset(name_or_path: str | os.PathLike, **kwargs: Any) -> datasets.DatasetDict:
    """Load an image classification set with `image` and `label` columns, whatever its source.

    - a folder holding Fashion-MNIST IDX files: `load_fashion_mnist`;
    - another folder, or a `.zip`: `load_image_folder`;
    - anything else is a `datasets` Hub name: `datasets.load_dataset(name_or_path, **kwargs)`, with its image and
      class-label columns renamed `image` and `label` when they are called otherwise (e.g. `img` in `cifar10`).

    Args:
        name_or_path: local folder or zip, or Hub dataset name.
        kwargs: forwarded to `datasets.load_dataset` (Hub names only).
    """
    path = Path(name_or_path)
    if path.exists():
        if kwargs:
            raise TypeError(f"Keyword arguments {sorted(kwargs)} only apply to Hub datasets, not to the local {path}.")
        if path.is_dir() and any(path.glob("train-images-idx3-ubyte*")):
            return load_fashion_mnist(path)
        return load_image_folder(path)
    return standardise_image_columns(datasets.load_dataset(str(name_or_path), **kwargs))


def standardise_image_columns(dataset: datasets.DatasetDict) -> datasets.DatasetDict:
    """Rename the image column to `image` and the class-label column to `label`, found by their feature types.

    Raises:
        ValueError: the dataset has no single `datasets.Image` column or no single `ClassLabel` column.
    """
    features = next(iter(dataset.values())).features
    renames = {}
    for target, feature_type in (("image", datasets.Image), ("label", datasets.ClassLabel)):
        if target in features and isinstance(features[target], feature_type):
            continue
        candidates = [name for name, feature in features.items() if isinstance(feature, feature_type)]
        if len(candidates) != 1:
            raise ValueError(
                f"Cannot tell the {target} column: the dataset has {len(candidates)} {feature_type.__name__} "
                f"columns {candidates} (features: {features}). Rename the right one to {target!r} yourself."
            )
        renames[candidates[0]] = target
    return dataset.rename_columns(renames) if renames else dataset


def build_transforms(
    image_processor: BaseImageProcessor,
    train: bool,
    *,
    random_crop_padding: int = 4,
    horizontal_flip: bool,
) -> Callable[[dict[str, list]], dict[str, torch.Tensor]]:
    """Build the batch transform for `dataset.with_transform(...)`.

    Every image is first converted to the channel count of the processor's normalisation (`"L"` when its
    `image_mean` has one entry, else `"RGB"`), so grey and colour sets both work. For training it is then
    augmented at its own resolution: zero-padded by `random_crop_padding` pixels per side and randomly cropped back
    to its size, and mirrored left-right with probability 1/2 if `horizontal_flip`. The processor then resizes,
    rescales and normalises (use `ViTImageProcessorPil`: the default `ViTImageProcessor` needs torchvision).

    The random draws use torch's generator, which `Trainer`'s seed sets and `DataLoader` reseeds in each worker, so
    runs are reproducible and workers do not repeat each other's augmentations (numpy's global generator would).

    Args:
        image_processor: a transformers image processor.
        train: whether to augment.
        random_crop_padding: padding of the random crop, in pixels of the original image; 0 disables the crop.
        horizontal_flip: whether training mirrors images (CIFAR-10, Fashion-MNIST; not for sets such as digits).

    Returns:
        A function mapping a batch `{"image": [PIL images], "label": [ints]}` to `{"pixel_values": float32 tensor
        (batch, channels, height, width), "labels": int64 tensor (batch,)}` (no `labels` if the batch has no
        `label` column).
    """
    if random_crop_padding < 0:
        raise ValueError(f"random_crop_padding must be >= 0, got {random_crop_padding}.")
    mode = _pil_mode(image_processor)

    def transform(batch: dict[str, list]) -> dict[str, torch.Tensor]:
        images = [image.convert(mode) for image in batch["image"]]
        if train:
            images = [_augment(image, random_crop_padding, horizontal_flip) for image in images]
        output = {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]}
        if "label" in batch:
            output["labels"] = torch.tensor(batch["label"], dtype=torch.long)
        return output

    return transform


def _pil_mode(image_processor: BaseImageProcessor) -> str:
    mean = getattr(image_processor, "image_mean", None)
    num_channels = len(mean) if isinstance(mean, (list, tuple)) else 3
    if num_channels not in (1, 3):
        raise ValueError(f"The image processor normalises {num_channels} channels; only 1 (grey) or 3 (RGB) work.")
    return "L" if num_channels == 1 else "RGB"


def _augment(image: Image.Image, padding: int, horizontal_flip: bool) -> Image.Image:
    if padding:
        width, height = image.size
        left, top = (int(offset) for offset in torch.randint(0, 2 * padding + 1, (2,)))
        image = ImageOps.expand(image, border=padding, fill=0).crop((left, top, left + width, top + height))
    if horizontal_flip and torch.rand(()) < 0.5:
        image = ImageOps.mirror(image)
    return image


def _find_idx_file(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"No {stem}.gz (or {stem}) in {data_dir}: expected the four Fashion-MNIST IDX files "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte."
    )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (big-endian header: 0, 0, type 0x08, ndim, then ndim int32 sizes)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != _IDX_UBYTE or raw[3] != ndim:
        raise ValueError(
            f"{path} is not an unsigned-byte IDX file with {ndim} dimension(s): its magic number is "
            f"{raw[:4].hex()}, expected 000008{ndim:02x}. Check the file name (images are idx3, labels idx1)."
        )
    header_size = 4 + 4 * ndim
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if len(raw) - header_size != int(np.prod(shape)):
        raise ValueError(
            f"{path} declares shape {shape} ({int(np.prod(shape))} bytes) but holds {len(raw) - header_size} "
            "bytes of data: the file is truncated or corrupt."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _folder_entries(root: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (split, class name, image cell) for each `<split>/<class>/<image>` file under `root`."""
    for file in sorted(root.glob("*/*/*")):
        if file.is_file() and _is_image_name(file.relative_to(root).parts):
            with open(file, "rb") as handle:
                _check_decodes(handle.read(), str(file))
            split, class_name, _ = file.relative_to(root).parts
            yield split, class_name, {"path": str(file), "bytes": None}


def _zip_entries(archive: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield (split, class name, image cell) for each `<split>/<class>/<image>` member of `archive`."""
    with zipfile.ZipFile(archive) as opened:
        for member in opened.infolist():
            parts = tuple(member.filename.split("/"))
            if member.is_dir() or len(parts) != 3 or not _is_image_name(parts):
                continue
            data = opened.read(member)
            _check_decodes(data, f"{member.filename} in {archive}")
            # The path is the fsspec URL of the member; the bytes are what `datasets` decodes.
            yield parts[0], parts[1], {"path": f"zip://{member.filename}::{archive}", "bytes": data}


def _is_image_name(parts: tuple[str, ...]) -> bool:
    # Hidden files and macOS resource forks (`__MACOSX/`, `._name`) are not images even with an image suffix.
    hidden = any(part.startswith((".", "__MACOSX")) for part in parts)
    return not hidden and os.path.splitext(parts[-1])[1].lower() in _IMAGE_SUFFIXES


def _check_decodes(data: bytes, name: str) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    # PIL reports undecodable data with several exception types depending on the format plugin.
    except Exception as error:
        raise ValueError(f"Cannot decode the image {name}: {error}. Remove or replace this file.") from error
