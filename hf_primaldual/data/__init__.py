"""Datasets of the project: time series from anywhere (`load_timeseries`: UEA `.ts` files, tables, arrays, Hub
datasets) and image classification sets."""

from .images import (
    FASHION_MNIST_CLASSES,
    build_transforms,
    load_fashion_mnist,
    load_image_dataset,
    load_image_folder,
    standardise_image_columns,
)
from .timeseries import TimeSeriesDataArguments, TimeSeriesDataError, arrays_to_series, load_timeseries
from .uea import SHIPPED_UEA_DIR, UEA_DIR_ENV, TsFormatError, TsSplit, load_uea, read_ts


__all__ = [
    "FASHION_MNIST_CLASSES",
    "SHIPPED_UEA_DIR",
    "TimeSeriesDataArguments",
    "TimeSeriesDataError",
    "UEA_DIR_ENV",
    "TsFormatError",
    "TsSplit",
    "arrays_to_series",
    "build_transforms",
    "load_fashion_mnist",
    "load_image_dataset",
    "load_image_folder",
    "load_timeseries",
    "load_uea",
    "read_ts",
    "standardise_image_columns",
]
