"""Image classification data as `datasets.DatasetDict`s with an `image` and a `label` column, and the
train/eval transforms that turn them into `pixel_values` for the PrimalDualViT models.

Everything reads local files (Fashion-MNIST IDX files, a folder or `.zip` of `split/class/image` files) without
network access; any other name goes to `datasets.load_dataset`, except names that can only be local paths, which
fail at once when they do not exist.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps
from transformers.image_processing_utils import BaseImageProcessor

from .locations import looks_local, no_such_path


logger = logging.getLogger(__name__)

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
# The splits `load_image_folder` needs: the training scripts train on one and report accuracy on the other.
_REQUIRED_SPLITS = ("train", "test")
# Grey modes PIL gives 16-bit images (PNG, TIFF; "I" in older Pillow); `convert("L")` would clip them at 255.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
# Errors zipfile and gzip raise on a cut-short or damaged archive, depending on where the damage is.
_ARCHIVE_ERRORS = (EOFError, zipfile.BadZipFile, gzip.BadGzipFile, zlib.error)
# Suffixes PIL can read; other files (READMEs, label lists) in an image folder are skipped.
_IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp"})


def load_fashion_mnist(data_dir: str | os.PathLike) -> datasets.DatasetDict:
    """Load Fashion-MNIST from its four IDX files (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
    `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each gzipped `.gz` or not, and each also found under the
    dotted names some mirrors use, e.g. `train-images.idx3-ubyte.gz`) in `data_dir`.

    The 28x28 grey images are stored as binary PGM: lossless and written with no compression work, which keeps
    loading the 70k images fast (PNG encoding would dominate the load).

    Returns:
        `DatasetDict` with splits `train` (60k) and `test` (10k); columns `image` (`datasets.Image`, mode "L",
        28x28) and `label` (`ClassLabel` with `FASHION_MNIST_CLASSES`).

    Raises:
        FileNotFoundError: an IDX file is under none of the names tried (the message lists them).
        ValueError: an IDX file is truncated, corrupt or of the wrong kind (the message names it).
    """
    data_dir = Path(data_dir)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(FASHION_MNIST_CLASSES))}
    )
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find_idx_file(data_dir, prefix, "images")
        labels_path = _find_idx_file(data_dir, prefix, "labels")
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

    The set must have a `train` and a `test` split, every class must have a training image, and class folders
    whose names differ only in case (`train/Cat`, `test/cat`) are refused rather than read as two classes.

    Every image is nevertheless decoded once here, so that a corrupt file fails at once and by name rather than in
    the middle of training (most of the load's time). That, and reading the zip
    without extracting it into the cache, is why `datasets`' own `imagefolder` builder is not used.

    Returns:
        `DatasetDict` with one split per top-level folder (`train` first); columns `image` (`datasets.Image`)
        and `label` (`ClassLabel`).

    Raises:
        FileNotFoundError: `path` is neither a folder nor a zip file.
        ValueError: an image does not decode or the zip is truncated (the message names the file), no image has
            the expected layout, a split is missing, a class has no training image, or two class folders differ
            only in case.
    """
    path = Path(path)
    if path.is_dir():
        entries, class_folders = _read_folder(path)
    elif zipfile.is_zipfile(path):
        entries, class_folders = _read_zip(path)
    elif path.is_file() and path.suffix.lower() == ".zip":
        raise ValueError(
            f"{path} is not a complete zip archive: its end-of-archive record is missing, so the file is truncated "
            f"or corrupt. Download or build it again (`unzip -t {path}` checks it)."
        )
    else:
        raise FileNotFoundError(f"{path} is neither a folder nor a .zip file of <split>/<class>/<image> files.")
    if not entries:
        raise ValueError(
            f"No image found in {path} at the depth <split>/<class name>/<image file> (e.g. train/cat/0001.jpg)."
        )
    class_names = _check_layout(path, entries, class_folders)
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

    A name that can only be a local path (a `Path`, or a string starting with `.`, `~` or `/`, holding a
    backslash, that is no valid Hub id such as `a/b/c`, or whose parent folder exists here) and does not exist
    fails at once, instead of being retried against the Hub.

    Args:
        name_or_path: local folder or zip, or Hub dataset name.
        kwargs: forwarded to `datasets.load_dataset` (Hub names only).

    Raises:
        FileNotFoundError: a local-looking path does not exist, or a folder holds neither IDX files nor images.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        if kwargs:
            raise TypeError(f"Keyword arguments {sorted(kwargs)} only apply to Hub datasets, not to the local {path}.")
        if path.is_dir():
            if any((path / name).is_file() for name in _idx_names("train", "images")):
                return load_fashion_mnist(path)
            if not _has_image_layout(path):
                raise FileNotFoundError(_neither_idx_nor_images(path))
        return load_image_folder(path)
    if looks_local(name_or_path):
        raise FileNotFoundError(no_such_path(name_or_path, path))
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
        images = [_convert(image, mode) for image in batch["image"]]
        if train:
            images = [_augment(image, random_crop_padding, horizontal_flip) for image in images]
        output = {"pixel_values": image_processor(images, return_tensors="pt")["pixel_values"]}
        if "label" in batch:
            output["labels"] = torch.tensor(batch["label"], dtype=torch.long)
        return output

    return transform


def measure_normalisation(images: Iterable[Image.Image]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (population, ddof=0) of the RGB pixel values in [0, 1] of ``images``, each image
    taken as the transforms hand it to the processor (`_convert` to RGB: 16-bit grey images scaled to 8 bits by their
    real range, not clipped at 255; grey images as three equal channels).

    Grey images are taken as RGB: the model then accepts any image, as the image-classification pipeline and the
    processor's RGB conversion hand it, for the cost of a wider first layer.

    Images may differ in size: the statistics are those of all their pixels pooled (each pixel counts once),
    accumulated image by image with Chan et al.'s parallel update of the mean and the sum of squared deviations,
    so no stack of images is ever built.

    Args:
        images: PIL images of any modes and sizes (e.g. a training split's ``image`` column).

    Returns:
        ``(mean, std)``, three floats each (R, G, B), rounded to 4 decimals. A channel with no spread (std 0, e.g.
        a sample of blank images) gets std 1.0, with a warning: dividing by 0 would turn every pixel into NaN.

    Raises:
        ValueError: ``images`` is empty, or a 32-bit integer image holds values outside the 16-bit range.
    """
    count, mean, sum_squares = 0, np.zeros(3), np.zeros(3)
    for image in images:
        pixels = np.asarray(_convert(image, "RGB"), dtype=np.float64).reshape(-1, 3) / 255
        image_count, image_mean = len(pixels), pixels.mean(axis=0)
        delta = image_mean - mean
        total = count + image_count
        mean = mean + delta * image_count / total
        sum_squares += ((pixels - image_mean) ** 2).sum(axis=0) + delta**2 * count * image_count / total
        count = total
    if count == 0:
        raise ValueError("No image to measure the normalisation on: give at least one training image.")
    std = np.sqrt(sum_squares / count).round(4)
    if (std == 0).any():
        logger.warning(
            "The images measured have no spread in channel(s) %s (std 0: every pixel the same): those channels are "
            "not scaled (std 1.0). Measure on more images (--normalisation_samples) if this sample is not the data.",
            [int(channel) for channel in np.flatnonzero(std == 0)],
        )
        std[std == 0] = 1.0
    return mean.round(4).tolist(), std.tolist()


def _pil_mode(image_processor: BaseImageProcessor) -> str:
    mean = getattr(image_processor, "image_mean", None)
    num_channels = len(mean) if isinstance(mean, (list, tuple)) else 3
    if num_channels not in (1, 3):
        raise ValueError(f"The image processor normalises {num_channels} channels; only 1 (grey) or 3 (RGB) work.")
    return "L" if num_channels == 1 else "RGB"


def _convert(image: Image.Image, mode: str) -> Image.Image:
    """`image.convert(mode)`, with 16-bit grey images first scaled to 8 bits (PIL would clip them at 255).

    Mode "I" (32-bit integers) is taken as 16-bit data, which is what older Pillow gives for a 16-bit PNG.
    """
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if values.min(initial=0) < 0 or values.max(initial=0) > 0xFFFF:
            raise ValueError(
                f"A {image.mode} image holds values from {values.min()} to {values.max()}, outside the 16-bit range "
                "0..65535 that is scaled to 8 bits. Convert the image to 8 bits yourself."
            )
        # 65535 / 257 = 255: the full 16-bit range maps onto the full 8-bit one, and x * 257 back onto x.
        image = Image.fromarray(np.rint(values / 257.0).astype(np.uint8))
    return image.convert(mode)


def _augment(image: Image.Image, padding: int, horizontal_flip: bool) -> Image.Image:
    if padding:
        width, height = image.size
        left, top = (int(offset) for offset in torch.randint(0, 2 * padding + 1, (2,)))
        image = ImageOps.expand(image, border=padding, fill=0).crop((left, top, left + width, top + height))
    if horizontal_flip and torch.rand(()) < 0.5:
        image = ImageOps.mirror(image)
    return image


def _idx_names(prefix: str, kind: str) -> list[str]:
    """The names one IDX file goes by: the published dashed name and the dotted one of some mirrors (and of the
    original MNIST files once unpacked on Windows), each gzipped or not."""
    dims = "idx3" if kind == "images" else "idx1"
    stems = (f"{prefix}-{kind}-{dims}-ubyte", f"{prefix}-{kind}.{dims}-ubyte")
    return [stem + suffix for suffix in (".gz", "") for stem in stems]


def _find_idx_file(data_dir: Path, prefix: str, kind: str) -> Path:
    names = _idx_names(prefix, kind)
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(
        f"No {names[0].removesuffix('.gz')} file in {data_dir}: looked for {', '.join(names)}. A Fashion-MNIST "
        "folder holds the four IDX files train-images, train-labels, t10k-images and t10k-labels under one of "
        "these namings; rename the file, or download it again."
    )


def _neither_idx_nor_images(folder: Path) -> str:
    held = sorted(entry.name for entry in folder.iterdir())
    shown = ", ".join(held[:10]) + (f" and {len(held) - 10} more" if len(held) > 10 else "") if held else "nothing"
    return (
        f"{folder} holds neither Fashion-MNIST IDX files (looked for {', '.join(_idx_names('train', 'images'))}) "
        "nor images laid out <split>/<class name>/<image file> (e.g. train/cat/0001.jpg); it holds "
        f"{shown}. Rename the IDX files to one of those names, or lay the images out by split and class."
    )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file (big-endian header: 0, 0, type 0x08, ndim, then ndim int32 sizes)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except _ARCHIVE_ERRORS as error:
            raise ValueError(
                f"{path} is not a complete gzip file ({error}): it is truncated or corrupt. Download it again "
                f"(`gzip -t {path}` checks it)."
            ) from error
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


_Entry = tuple[str, str, dict[str, Any]]
"""(split, class name, image cell) of one `<split>/<class>/<image>` file."""


def _read_folder(root: Path) -> tuple[list[_Entry], set[tuple[str, str]]]:
    """The images under `root`, and every `<split>/<class>` folder, with images or not."""
    entries = []
    for file in sorted(root.glob("*/*/*")):
        if file.is_file() and _is_image_name(file.relative_to(root).parts):
            with open(file, "rb") as handle:
                _check_decodes(handle.read(), str(file))
            split, class_name, _ = file.relative_to(root).parts
            entries.append((split, class_name, {"path": str(file), "bytes": None}))
    folders = (folder.relative_to(root).parts for folder in root.glob("*/*") if folder.is_dir())
    return entries, {(split, name) for split, name in folders if not _is_hidden((split, name))}


def _read_zip(archive: Path) -> tuple[list[_Entry], set[tuple[str, str]]]:
    """The images of `archive`, and every `<split>/<class>` folder (explicit or implied by a member's path)."""
    entries, folders = [], set()
    with zipfile.ZipFile(archive) as opened:
        for member in opened.infolist():
            parts = tuple(member.filename.split("/"))
            if len(parts) >= 3 and not _is_hidden(parts[:2]):
                folders.add(parts[:2])
            if member.is_dir() or len(parts) != 3 or not _is_image_name(parts):
                continue
            try:
                data = opened.read(member)
            except _ARCHIVE_ERRORS as error:
                raise ValueError(
                    f"Cannot read {member.filename} in {archive}: {error}. The archive is truncated or corrupt; "
                    f"download or build it again (`unzip -t {archive}` checks it)."
                ) from error
            _check_decodes(data, f"{member.filename} in {archive}")
            # The path is the fsspec URL of the member; the bytes are what `datasets` decodes.
            entries.append((parts[0], parts[1], {"path": f"zip://{member.filename}::{archive}", "bytes": data}))
    return entries, folders


def _check_layout(path: Path, entries: list[_Entry], class_folders: set[tuple[str, str]]) -> list[str]:
    """Refuse a missing split, class folders that differ only in case, and classes without a training image;
    return the sorted class names."""
    splits = sorted({split for split, _, _ in entries})
    missing = [split for split in _REQUIRED_SPLITS if split not in splits]
    if missing:
        raise ValueError(
            f"{path} has no {' or '.join(missing)} split: its splits are {splits}. Put the images under "
            f"{' and '.join(f'{split}/<class name>/' for split in _REQUIRED_SPLITS)}."
        )
    spellings: dict[str, set[str]] = defaultdict(set)
    for _, class_name in class_folders:
        spellings[class_name.casefold()].add(class_name)
    clashes = [sorted(names) for names in spellings.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(", ".join(_folders_of(names, class_folders)) for names in clashes)
        raise ValueError(
            f"Class folders in {path} differ only in case ({listed}): they would be read as different classes. "
            "Rename them so that every split spells each class the same way."
        )
    trained = {class_name for split, class_name, _ in entries if split == "train"}
    for class_name in sorted({class_name for _, class_name in class_folders} - trained):
        if ("train", class_name) in class_folders:
            problem = f"The training class folder train/{class_name} in {path} holds no image"
        else:
            folders = ", ".join(_folders_of([class_name], class_folders))
            problem = f"The class {class_name!r} ({folders}) has no training folder train/{class_name} in {path}"
        raise ValueError(
            f"{problem}: a class without training images cannot be learnt. Add its training images, or remove "
            "the class from every split."
        )
    return sorted({class_name for _, class_name in class_folders})


def _folders_of(class_names: Iterable[str], class_folders: set[tuple[str, str]]) -> list[str]:
    return [f"{split}/{name}" for split, name in sorted(class_folders) if name in class_names]


def _has_image_layout(root: Path) -> bool:
    return any(file.is_file() and _is_image_name(file.relative_to(root).parts) for file in root.glob("*/*/*"))


def _is_hidden(parts: tuple[str, ...]) -> bool:
    # Hidden files and macOS resource forks (`__MACOSX/`, `._name`) are not data even with an image suffix.
    return any(part.startswith((".", "__MACOSX")) for part in parts)


def _is_image_name(parts: tuple[str, ...]) -> bool:
    return not _is_hidden(parts) and os.path.splitext(parts[-1])[1].lower() in _IMAGE_SUFFIXES


def _check_decodes(data: bytes, name: str) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    # PIL reports undecodable data with several exception types depending on the format plugin.
    except Exception as error:
        raise ValueError(f"Cannot decode the image {name}: {error}. Remove or replace this file.") from error
