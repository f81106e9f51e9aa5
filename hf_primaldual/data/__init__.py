"""Datasets of the project: the UEA time-series archive (`.ts` files) and image classification sets."""

from .images import (
    FASHION_MNIST_CLASSES,
    build_transforms,
    load_fashion_mnist,
    load_image_dataset,
    load_image_folder,
    standardise_image_columns,
)
from .uea import SHIPPED_UEA_DIR, UEA_DIR_ENV, TsFormatError, TsSplit, load_uea, read_ts


__all__ = [
    "FASHION_MNIST_CLASSES",
    "SHIPPED_UEA_DIR",
    "UEA_DIR_ENV",
    "TsFormatError",
    "TsSplit",
    "build_transforms",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "load_uea",
    "read_ts",
    "standardise_image_columns",
]
