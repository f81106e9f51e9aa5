"""Time-series classification data from anywhere, as the one `DatasetDict` the package trains on
(`past_values` (time, channels) float32, `length`, `label` as a `ClassLabel`; see `schema.series_features`).

`load_timeseries(source, ...)` reads:

- a UEA problem name (`JapaneseVowels`, or any under `data_dir` / `$HF_PRIMALDUAL_UEA_DIR`);
- a local file: `.ts` / `.ts.gz`, `.csv`, `.tsv`, `.parquet`, `.json`, `.jsonl`, `.npz`, `.npy`;
- a local folder: a `datasets` `save_to_disk` folder, or one holding a file named `*train*` and optionally one named
  `*test*` (any of the formats above);
- a `datasets` Hub id (`config_name`, `revision`);
- in memory: an array `(N, T)`, `(N, T, C)` or `(N, C, T)` or a list of `(T_i, C)` arrays with their `labels`,
  a pandas `DataFrame`, a `datasets.Dataset` or `DatasetDict`.

A table is read in one of three layouts:

- **long**: one row per time step; `series_id_column` groups the rows into series, `time_column` (optional) orders
  them, every other column but the label is a channel (or those of `value_columns`);
- **nested**: one row per series; a column holding a `(T,)` or `(T, C)` array per row, or one list column per
  channel;
- **wide**: one row per univariate series, one column per time step (trailing empty cells end a shorter series).

Labels (`label_column`) that are strings, integers or whole numbers become a `ClassLabel` with the real names: in
the order of a `.ts` header or a `ClassLabel` feature when the source has one, of `class_names` when given, else
sorted (numerically for integers). Anything that cannot be read as series and classes is refused with a
`TimeSeriesDataError` that names the place (file, split, row or series, column) and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import pandas as pd

from .locations import looks_local, no_such_path
from .schema import classes_without_training_cases, series_dataset, series_features, warn_about_empty_classes
from .uea import (
    SHIPPED_UEA_DIR,
    UEA_CITATION,
    UEA_DIR_ENV,
    TsFormatError,
    _available_problems,
    _find_split_file,
    read_ts,
    text_file_problem,
)

Layout = Literal["long", "nested", "wide"]
ArrayLayout = Literal["NTC", "NCT"]
LAYOUTS = ("long", "nested", "wide")
ARRAY_LAYOUTS = ("NTC", "NCT")
# `datasets` builder and its arguments, by file suffix.
TABLE_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".parquet": ("parquet", {}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
}
TS_SUFFIXES = (".ts", ".ts.gz")
NUMPY_SUFFIXES = (".npz", ".npy")
DATA_SUFFIXES = (*TS_SUFFIXES, *TABLE_FORMATS, *NUMPY_SUFFIXES)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SHOWN = 20  # how many columns or names a message lists


class TimeSeriesDataError(ValueError):
    """Data that cannot be read as labelled time series; the message names the place and the fix."""


class UnknownClassesError(TimeSeriesDataError):
    """Labels that are not among the classes given (`class_names`): `unknown` lists them, `classes` the classes."""

    def __init__(self, message: str, unknown: list[str], classes: list[str]) -> None:
        super().__init__(message)
        self.unknown, self.classes = unknown, classes


@dataclass
class TimeSeriesDataArguments:
    """How to read a time-series dataset: the options of the time-series commands, as keywords of
    `load_timeseries` (`options()`)."""

    data_dir: str | None = field(
        default=None, metadata={"help": "folder of the UEA archive, for a UEA problem name (default: the shipped one)"}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "configuration of a Hub dataset"})
    dataset_revision: str | None = field(default=None, metadata={"help": "branch, tag or commit of a Hub dataset"})
    test_file: str | None = field(default=None, metadata={"help": "file of the test split (any supported format)"})
    test_fraction: float = field(
        default=0.2,
        metadata={"help": "without a test split: the stratified fraction of the data held out as the test split"},
    )
    split_seed: int = field(default=42, metadata={"help": "seed of the --test_fraction hold-out"})
    label_column: str = field(default="label", metadata={"help": "column of the classes"})
    series_id_column: str | None = field(
        default=None, metadata={"help": "long layout (one row per time step): the column naming each row's series"}
    )
    time_column: str | None = field(
        default=None, metadata={"help": "long layout: the column ordering the rows of a series (default: file order)"}
    )
    value_columns: list[str] | None = field(
        default=None, metadata={"help": "the columns holding the values (default: all but label, id and time)"}
    )
    layout: str | None = field(
        default=None,
        metadata={"help": "long, nested or wide (default: long with --series_id_column, nested when a column holds "
                          "sequences; a table of single numbers needs one of them)"},
    )
    array_layout: str | None = field(
        default=None, metadata={"help": "3-D arrays: NTC (series, time, channels) or NCT (aeon/sktime's)"}
    )

    def options(self) -> dict[str, Any]:
        """These options as the keywords of `load_timeseries`."""
        options = {item.name: getattr(self, item.name) for item in fields(TimeSeriesDataArguments)}
        options["config_name"] = options.pop("dataset_config_name")
        options["revision"] = options.pop("dataset_revision")
        return options


@dataclass
class _Split:
    """One split read from its source, before its labels become class indices."""

    series: list[np.ndarray]  # float32, (time_i, channels) each
    labels: list[Any]  # the source's label of each series: a name, a number
    names: list[str]  # how a message names each series: "row 12", "series 'a7'", "case 3"
    where: str  # how a message names the split: "the training split (path/to/train.csv)"
    class_names: list[str] | None = None  # the source's own class order (a .ts header, a ClassLabel feature)
    class_source: str = "the ClassLabel feature"  # what declared `class_names`, for messages


@dataclass
class _Options:
    label_column: str
    series_id_column: str | None
    time_column: str | None
    value_columns: list[str] | None
    layout: str | None
    array_layout: str | None


def load_timeseries(
    source: str | os.PathLike | np.ndarray | Sequence[np.ndarray] | pd.DataFrame | datasets.Dataset
    | datasets.DatasetDict,
    labels: Sequence[Any] | np.ndarray | None = None,
    *,
    test_file: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 42,
    label_column: str = "label",
    series_id_column: str | None = None,
    time_column: str | None = None,
    value_columns: Sequence[str] | None = None,
    layout: Layout | None = None,
    array_layout: ArrayLayout | None = None,
    class_names: Sequence[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    config_name: str | None = None,
    revision: str | None = None,
) -> datasets.DatasetDict:
    """Load time series for classification from any source (see the module's description) as a `DatasetDict` with
    a `train` and a `test` split, as the training commands and `load_uea` give it.

    Args:
        source: a UEA problem name, a local file or folder, a Hub dataset id, or data in memory: an array of shape
            (N, T) (univariate), (N, T, C) or (N, C, T) (`array_layout`), a list of (T_i, C) or (T_i,) arrays, a
            pandas `DataFrame`, a `datasets.Dataset` or `DatasetDict`.
        labels: the labels of an array or list `source`, one per series (any hashable: strings, integers).
        test_file: the test split, when the source has none (any file the source could be).
        test_fraction: without a test split, the fraction of the series held out as one (stratified by class,
            seeded by `split_seed`; the dataset's description says so).
        label_column: the column of the classes in a table.
        series_id_column: long layout: the column naming the series of each row.
        time_column: long layout: the column the rows of a series are sorted by (default: their order).
        value_columns: the columns of the values (channels, or time steps for `wide`); default: all but the label,
            id and time columns.
        layout: `"long"`, `"nested"` or `"wide"`; default: long with `series_id_column`, nested when a column holds
            sequences. A table of single numbers without `series_id_column` needs `layout="wide"`.
        array_layout: for 3-D arrays, `"NTC"` (series, time, channels) or `"NCT"` (aeon/sktime's); required.
        class_names: the classes in the order the model's label ids follow (default: the source's order or sorted);
            labels are matched to them as text, so it also names numeric class codes such as 0.5.
        data_dir: the UEA archive folder for a problem name (default: `$HF_PRIMALDUAL_UEA_DIR`, else the shipped
            folder).
        config_name, revision: the configuration and the revision of a Hub dataset.

    Returns:
        `DatasetDict` with `train` and `test` splits of `past_values` (float32, (time, channels)), `length` (int32)
        and `label` (`ClassLabel`); `info.dataset_name` names the source, `info.description` says where the data
        came from and how the test split was made.

    Raises:
        TimeSeriesDataError: the data cannot be read as labelled series (a missing file or column, a non-numeric
            value, a series with another number of channels, a class found only in the test split...): the message
            names the place and the fix.
    """
    if not 0 < test_fraction < 1:
        raise TimeSeriesDataError(f"test_fraction {test_fraction}: give a fraction in (0, 1) to hold out as the test split.")
    if layout is not None and layout not in LAYOUTS:
        raise TimeSeriesDataError(f"layout {layout!r}: give one of {', '.join(LAYOUTS)}.")
    if array_layout is not None and array_layout not in ARRAY_LAYOUTS:
        raise TimeSeriesDataError(f"array_layout {array_layout!r}: give NTC (series, time, channels) or NCT (series, channels, time).")
    options = _Options(label_column, series_id_column, time_column, list(value_columns) if value_columns else None,
                       layout, array_layout)
    name = source_name(source)
    splits, description = _read_source(source, labels, options, data_dir, config_name, revision)
    if test_file is not None:
        if "test" in splits:
            raise TimeSeriesDataError(
                f"{name} has a test split already; leave out --test_file (test_file=), or give a source without one."
            )
        test_splits, test_description = _read_source(test_file, None, options, None, None, None, role="test")
        splits["test"] = next(iter(test_splits.values()))
        description += f" Test split: {test_description}"
    dataset = _encode(splits, class_names, name, description)
    if "test" not in splits:
        dataset = _hold_out_test(dataset["train"], test_fraction, split_seed)
    return dataset


def source_name(source: Any) -> str:
    """A short name for `source`, for folder names and model cards: a UEA problem or Hub dataset's name, a file's
    name without `_TRAIN`/`train` and suffix (`.../BasicMotions_TRAIN.csv` -> `BasicMotions`), a folder's name."""
    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        info = source.info if isinstance(source, datasets.Dataset) else next(iter(source.values()), None).info
        return (info.dataset_name if info is not None else None) or "dataset"
    if not isinstance(source, (str, os.PathLike)):
        return "arrays" if not isinstance(source, pd.DataFrame) else "dataframe"
    path = Path(str(source).rstrip("/\\"))
    stem = path.name
    for suffix in sorted(DATA_SUFFIXES, key=len, reverse=True):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for part in ("_TRAIN", "-TRAIN", "_train", "-train", "TRAIN", "train"):
        if stem.endswith(part) or stem.startswith(part):
            stem = stem.removesuffix(part).removeprefix(part).strip("_-.")
            break
    return stem or path.parent.name or "dataset"


# ------------------------------------------------------------------------------------------------ sources


def _read_source(
    source: Any,
    labels: Any,
    options: _Options,
    data_dir: str | os.PathLike | None,
    config_name: str | None,
    revision: str | None,
    role: str = "train",
) -> tuple[dict[str, _Split], str]:
    """The splits of `source` (`train`, maybe `test`; a `role="test"` source gives its one split) and a sentence
    saying where they came from."""
    if labels is not None and not isinstance(source, (np.ndarray, list, tuple)):
        raise TimeSeriesDataError("labels= goes with an array or a list of arrays; a table or file has a label column.")
    if isinstance(source, datasets.DatasetDict):
        return _dataset_dict_splits(source, options, "the DatasetDict"), "A datasets.DatasetDict."
    if isinstance(source, datasets.Dataset):
        return {role: _table_split(source, options, f"the {_role(role)} (a datasets.Dataset)")}, "A datasets.Dataset."
    if isinstance(source, pd.DataFrame):
        where = f"the {_role(role)} (a DataFrame)"
        return {role: _frame_split(source, None, options, where)}, "A pandas DataFrame."
    if isinstance(source, (np.ndarray, list, tuple)):
        if labels is None:
            raise TimeSeriesDataError("An array of series needs its labels: load_timeseries(X, labels, ...).")
        split = _array_split(source, labels, options.array_layout, f"the {_role(role)} (arrays)")
        return {role: split}, "Arrays."
    if not isinstance(source, (str, os.PathLike)):
        raise TimeSeriesDataError(
            f"Cannot read time series from a {type(source).__name__}: give a file, folder, UEA name or Hub id, an "
            "array with its labels, a DataFrame or a datasets.Dataset."
        )
    text = str(source)
    path = Path(text).expanduser()
    uea_root = Path(data_dir if data_dir is not None else os.environ.get(UEA_DIR_ENV, SHIPPED_UEA_DIR))
    if not path.exists() and (data_dir is not None or text in _available_problems(uea_root)):
        try:
            files = [_find_split_file(uea_root, text, split) for split in ("TRAIN", "TEST")]
        except FileNotFoundError as error:
            raise TimeSeriesDataError(str(error)) from None
        description = f"UEA time-series classification archive (Bagnall et al. 2018, arXiv:1811.00075), problem {text}."
        return {"train": _ts_split(files[0], "train"), "test": _ts_split(files[1], "test")}, description
    if path.is_dir():
        return _folder_splits(path, options, role)
    if path.is_file():
        return {role: _file_split(path, options, role)}, f"Read from {path.name}."
    if looks_local(source):
        raise TimeSeriesDataError(no_such_path(source, path))
    return _hub_splits(text, options, config_name, revision)


def _role(role: str) -> str:
    return "training split" if role == "train" else "test split"


def _folder_splits(folder: Path, options: _Options, role: str) -> tuple[dict[str, _Split], str]:
    """A `save_to_disk` folder, or the `*train*` / `*test*` files of a folder."""
    if (folder / "dataset_dict.json").is_file():
        return _dataset_dict_splits(datasets.load_from_disk(str(folder)), options, str(folder)), f"Read from {folder.name}."
    if (folder / "state.json").is_file():
        where = f"the {_role(role)} ({folder})"
        return {role: _table_split(datasets.load_from_disk(str(folder)), options, where)}, f"Read from {folder.name}."
    files = sorted(
        path for path in folder.iterdir()
        if path.is_file() and path.name.lower().endswith(DATA_SUFFIXES) and not _is_label_file(path)
    )
    by_split = {split: [path for path in files if split in path.name.lower()] for split in ("train", "test")}
    if not by_split["train"] and len(files) == 1 and not by_split["test"]:
        by_split["train"] = files
    if len(by_split["train"]) != 1 or len(by_split["test"]) > 1:
        listed = ", ".join(path.name for path in files[:_SHOWN]) or "none"
        raise TimeSeriesDataError(
            f"{folder}: expected one data file named *train* (and at most one named *test*), found {listed}. Give "
            f"the training file itself as the dataset, and the test file with --test_file (test_file=)."
        )
    splits = {"train": _file_split(by_split["train"][0], options, "train")}
    if by_split["test"]:
        splits["test"] = _file_split(by_split["test"][0], options, "test")
    return splits, f"Read from {', '.join(path.name for split in by_split.values() for path in split)}."


def _file_split(path: Path, options: _Options, role: str) -> _Split:
    name = path.name.lower()
    where = f"the {_role(role)} ({path})"
    if name.endswith(TS_SUFFIXES):
        return _ts_split(path, role)
    if name.endswith(NUMPY_SUFFIXES):
        return _numpy_split(path, options, role)
    suffix = next((suffix for suffix in TABLE_FORMATS if name.endswith(suffix)), None)
    if suffix is None:
        raise TimeSeriesDataError(
            f"{path}: unknown file type. Give one of {', '.join(DATA_SUFFIXES)}, a save_to_disk folder, or a folder "
            "of *train* / *test* files."
        )
    builder, kwargs = TABLE_FORMATS[suffix]
    problem = text_file_problem(path) if builder in ("csv", "json") else None
    if problem is not None:  # the builders would only say "An error occurred while generating the dataset"
        raise TimeSeriesDataError(f"{path}: {'. '.join(problem)}")
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # the builders' errors name no row: say which file, and keep the cause
        raise TimeSeriesDataError(f"{path}: cannot be read as a {suffix[1:]} table ({error}).") from error
    return _table_split(table, options, where)


def _ts_split(path: Path, role: str) -> _Split:
    try:
        split = read_ts(path)
    except TsFormatError as error:
        raise TimeSeriesDataError(str(error)) from error
    names = [f"case {index}" for index in range(len(split))]
    labels = [split.class_names[label] for label in split.labels]
    return _Split(split.series, labels, names, f"the {_role(role)} ({path})", list(split.class_names),
                  "the @classLabel header")


def _is_label_file(path: Path) -> bool:
    """The `y...npy` file beside an `X...npy` one."""
    return path.name.endswith(".npy") and path.name.startswith("y") and _labels_beside(path, "y", "X").is_file()


def _labels_beside(path: Path, old: str = "X", new: str = "y") -> Path:
    return path.with_name(new + path.name[len(old):]) if path.name.startswith(old) else path.with_name(f"{new}.npy")


def _numpy_split(path: Path, options: _Options, role: str) -> _Split:
    """`.npz` with `X` and `y` (or `X_train`/`y_train` for the training role, `X_test`/`y_test` for the test role);
    `.npy` holding X, with its labels in the file named with `y` for its leading `X` (`X_train.npy` ->
    `y_train.npy`)."""
    where = f"the {_role(role)} ({path})"
    try:
        if path.name.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as arrays:
                keys = [("X", "y"), (f"X_{role}", f"y_{role}")]
                pair = next(((x, y) for x, y in keys if x in arrays and y in arrays), None)
                if pair is None:
                    raise TimeSeriesDataError(
                        f"{path} holds the arrays {', '.join(arrays.files) or 'none'}: name the series X and the "
                        f"labels y (or X_{role} and y_{role})."
                    )
                values, labels = arrays[pair[0]], arrays[pair[1]]
        else:
            label_path = _labels_beside(path)
            if not label_path.is_file():
                raise TimeSeriesDataError(
                    f"{path}: the labels of a .npy file of series are read from {label_path.name} beside it, which "
                    "does not exist. Save them there, or save both in one .npz file as X and y."
                )
            values, labels = np.load(path, allow_pickle=False), np.load(label_path, allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" not in str(error):
            raise
        raise TimeSeriesDataError(
            f"{path} holds an array of Python objects (dtype object), which is not loaded: unpickling can run code. "
            "Save labels as text or numbers (e.g. y.astype(str) for labels from pandas), and series of different "
            "lengths as a table: nested (.parquet, .jsonl) or long (.csv)."
        ) from error
    return _array_split(values, labels, options.array_layout, where)


def _hub_splits(
    name: str, options: _Options, config_name: str | None, revision: str | None
) -> tuple[dict[str, _Split], str]:
    try:
        dataset = datasets.load_dataset(name, name=config_name, revision=revision)
    except Exception as error:  # offline, no such repo, a gated one: keep the cause, say what was tried
        raise TimeSeriesDataError(
            f"{name!r} is no local file or folder and no UEA problem (in {SHIPPED_UEA_DIR} or ${UEA_DIR_ENV}), and "
            f"loading it as a Hub dataset failed: {error}"
        ) from error
    where = f"Hub dataset {name}" + (f" ({config_name})" if config_name else "")
    revision_text = f" at revision {revision}" if revision else ""
    return _dataset_dict_splits(dataset, options, where), f"The Hub dataset {name}{revision_text}."


def _dataset_dict_splits(dataset: datasets.DatasetDict, options: _Options, where: str) -> dict[str, _Split]:
    if "train" not in dataset:
        raise TimeSeriesDataError(
            f"{where} has no train split (it has {', '.join(dataset) or 'none'}): name the training split `train`."
        )
    return {
        split: _table_split(dataset[split], options, f"the {_role(split)} of {where}")
        for split in ("train", "test") if split in dataset
    }


# ------------------------------------------------------------------------------------------------ tables


def _table_split(table: datasets.Dataset, options: _Options, where: str) -> _Split:
    """A `datasets.Dataset` in any layout: nested columns are read from Arrow as arrays, the rest through pandas."""
    features = table.features
    sequences = [name for name, feature in features.items() if _is_sequence_feature(feature)]
    if _layout(options, bool(sequences), table.column_names, where) != "nested":
        return _frame_split(table.to_pandas(), features, options, where)
    _require_columns(table.column_names, {options.label_column: "label_column"}, where)
    columns = options.value_columns or [name for name in sequences if name != options.label_column]
    _require_columns(table.column_names, dict.fromkeys(columns, "value_columns"), where)
    arrays = table.select_columns(columns).with_format("numpy")[:]  # all rows at once: one Arrow read per column
    labels = _label_values(table[options.label_column], features.get(options.label_column))
    return _nested_split(arrays, labels, options, where, _class_order(features, options))


def _frame_split(frame: pd.DataFrame, features: datasets.Features | None, options: _Options, where: str) -> _Split:
    """A pandas DataFrame in any layout."""
    sequences = [name for name in frame.columns if len(frame) and _is_sequence_value(frame[name].iloc[0])]
    layout = _layout(options, bool(sequences), list(frame.columns), where)
    label_column = options.label_column
    _require_columns(
        list(frame.columns),
        {label_column: "label_column", options.series_id_column: "series_id_column", options.time_column: "time_column"},
        where,
    )
    feature = features.get(label_column) if features is not None else None
    class_order = _class_order(features, options)
    if layout == "nested":
        columns = options.value_columns or [name for name in sequences if name != label_column]
        _require_columns(list(frame.columns), dict.fromkeys(columns, "value_columns"), where)
        labels = _label_values(frame[label_column].tolist(), feature)
        return _nested_split({name: frame[name].tolist() for name in columns}, labels, options, where, class_order)
    skipped = {label_column, options.series_id_column, options.time_column}
    columns = options.value_columns or [name for name in frame.columns if name not in skipped]
    _require_columns(list(frame.columns), dict.fromkeys(columns, "value_columns"), where)
    if not columns:
        raise TimeSeriesDataError(f"{where}: no value column besides {', '.join(map(str, filter(None, skipped)))}.")
    values = np.stack([_numeric_column(frame, name, where, allow_missing=layout == "wide") for name in columns], 1)
    labels = _label_values(frame[label_column].tolist(), feature)
    if layout == "wide":
        ids = frame[options.series_id_column].tolist() if options.series_id_column else None
        names = [f"series {ids[row]!r} (row {row})" if ids else f"row {row}" for row in range(len(frame))]
        return _Split([_trim_wide(row, names[i], columns, where) for i, row in enumerate(values)], labels, names,
                      where, class_order)
    return _long_split(frame, values, labels, columns, options, where, class_order)


def _long_split(
    frame: pd.DataFrame,
    values: np.ndarray,
    labels: list[Any],
    columns: list[str],
    options: _Options,
    where: str,
    class_order: list[str] | None,
) -> _Split:
    """Group the rows of a long table into series by their id (in order of first appearance), sorted by time."""
    ids = frame[options.series_id_column]
    if ids.isna().any():
        row = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise TimeSeriesDataError(
            f"{where}: row {row} has no {options.series_id_column!r} (series id): give every row its series' id."
        )
    order = frame[options.time_column] if options.time_column else pd.Series(np.arange(len(frame)))
    series, series_labels, names = [], [], []
    for series_id, rows in pd.Series(np.arange(len(frame))).groupby(ids.to_numpy(), sort=False):
        rows = rows.to_numpy()
        if options.time_column:
            rows = rows[np.argsort(order.to_numpy()[rows], kind="stable")]
        name = f"series {series_id!r}"
        row_labels = {_hashable(labels[row]) for row in rows}
        if len(row_labels) > 1:
            raise TimeSeriesDataError(
                f"{where}: the rows of {name} have different labels ({', '.join(map(repr, sorted(map(str, row_labels))))})"
                f": a series has one class. Fix the {options.label_column!r} column, or give the right "
                "--series_id_column (series_id_column=)."
            )
        series.append(values[rows])
        series_labels.append(labels[rows[0]])
        names.append(f"{name} (rows {rows[0]}...)")
    return _Split(series, series_labels, names, where, class_order)


def _nested_split(
    columns: Mapping[str, Sequence[Any]],
    labels: list[Any],
    options: _Options,
    where: str,
    class_order: list[str] | None,
) -> _Split:
    """One row per series: one column of (T,) or (T, C) arrays, or one (T,) column per channel."""
    if not columns:
        raise TimeSeriesDataError(f"{where}: no column holds a sequence of values (nested layout).")
    names = list(columns)
    series, row_names = [], []
    for row in range(len(labels)):
        parts = [_float_array(columns[name][row], f"{where}: row {row}, column {name!r}") for name in names]
        if len(parts) == 1:
            values = parts[0][:, None] if parts[0].ndim == 1 else parts[0]
        else:
            lengths = {len(part) for part in parts}
            if any(part.ndim != 1 for part in parts) or len(lengths) > 1:
                shapes = ", ".join(f"{name} {part.shape}" for name, part in zip(names, parts))
                raise TimeSeriesDataError(
                    f"{where}: row {row} has channels of different shapes ({shapes}): with one column per channel, "
                    "each column holds one (T,) sequence of the same length T per row."
                )
            values = np.stack(parts, axis=1)
        if values.ndim != 2:
            raise TimeSeriesDataError(
                f"{where}: row {row}, column {names[0]!r} holds an array of shape {values.shape}; a series is (T,) or "
                "(T, C)."
            )
        series.append(values)
        row_names.append(f"row {row}")
    return _Split(series, labels, row_names, where, class_order)


def _layout(options: _Options, has_sequences: bool, columns: list[str], where: str) -> str:
    if options.layout is not None:
        if options.layout == "long" and options.series_id_column is None:
            raise TimeSeriesDataError(f"{where}: the long layout needs --series_id_column (series_id_column=).")
        return options.layout
    if options.series_id_column is not None:
        return "long"
    if has_sequences:
        return "nested"
    raise TimeSeriesDataError(
        f"{where} holds single numbers only (columns {_listed(columns)}): say how its rows make series. One row per "
        "time step (long): give the column naming each row's series with --series_id_column (series_id_column=). "
        "One row per univariate series, one column per time step (wide): give --layout wide (layout='wide')."
    )


def _trim_wide(row: np.ndarray, name: str, columns: list[str], where: str) -> np.ndarray:
    """A wide row without its trailing empty cells (a shorter series); an empty cell before a value is refused."""
    missing = np.isnan(row)
    length = len(row) - int(np.argmin(missing[::-1])) if not missing.all() else 0
    if length == 0:
        raise TimeSeriesDataError(f"{where}: {name} has no value.")
    if missing[:length].any():
        column = columns[int(np.flatnonzero(missing[:length])[0])]
        raise TimeSeriesDataError(
            f"{where}: {name}, column {column!r} is empty before the series ends: fill the missing value (e.g. by "
            "interpolation) or drop the series."
        )
    return row[:length, None]


def _numeric_column(frame: pd.DataFrame, column: str, where: str, allow_missing: bool = False) -> np.ndarray:
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise TimeSeriesDataError(
            f"{where}: row {row}, column {column!r} holds {raw.iloc[row]!r}, which is not a number. Fix the value, or "
            "leave the column out with --value_columns (value_columns=)."
        )
    if not allow_missing and values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise TimeSeriesDataError(
            f"{where}: row {row}, column {column!r} is empty (a missing value): fill it (e.g. by interpolation along "
            "time) or drop the row."
        )
    return values.to_numpy(dtype=np.float64)


def _float_array(value: Any, where: str) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype == object:
        value = list(value)
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TimeSeriesDataError(
            f"{where} is not a (T,) or (T, C) array of numbers ({error}). Fix the value; a nested row holds one "
            "series, as equal-length lists of numbers."
        ) from None


def _is_sequence_feature(feature: Any) -> bool:
    return isinstance(feature, (datasets.List, datasets.LargeList, datasets.Array2D))


def _is_sequence_value(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray, pd.Series))


def _require_columns(columns: list[str], wanted: Mapping[str | None, str], where: str) -> None:
    """Refuse a column of `wanted` (column -> the option that named it) that the table lacks, listing its columns."""
    for name, option in wanted.items():
        if name is not None and name not in columns:
            raise TimeSeriesDataError(
                f"{where} has no column {name!r}; its columns are {_listed(columns)}. Give the right one with "
                f"--{option} ({option}=)."
            )


def _listed(items: Sequence[Any]) -> str:
    shown = ", ".join(map(str, items[:_SHOWN]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "") if items else "none"


# ------------------------------------------------------------------------------------------------ arrays


def arrays_to_series(values: np.ndarray | Sequence[Any], array_layout: ArrayLayout | None, where: str = "X") -> list[np.ndarray]:
    """Series as (T_i, C) float64 arrays from an array (N, T) (univariate), (N, T, C) or (N, C, T) (`array_layout`
    "NTC" or "NCT", required for 3-D arrays), or from a list of (T_i, C) or (T_i,) arrays (or (C, T_i) with "NCT").

    Raises:
        TimeSeriesDataError: a 3-D array without `array_layout`, a non-numeric array, series of another number of
            channels than the first, or another number of dimensions.
    """
    if isinstance(values, np.ndarray) and values.dtype != object:
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
            raise TimeSeriesDataError(f"{where} holds {values.dtype} values, not numbers.")
        if values.ndim == 2:
            return [row[:, None].astype(np.float64) for row in values]
        if values.ndim != 3:
            raise TimeSeriesDataError(
                f"{where} has shape {values.shape}: give (N, T) univariate series, (N, T, C) or (N, C, T) ones."
            )
        if array_layout is None:
            n, a, b = values.shape
            raise TimeSeriesDataError(
                f"{where} has shape {values.shape}: say which axis is time. --array_layout NTC (array_layout='NTC') "
                f"reads {n} series of {a} time steps and {b} channels; NCT (aeon/sktime's) reads {b} time steps of "
                f"{a} channels."
            )
        values = values if array_layout == "NTC" else values.transpose(0, 2, 1)
        return [row.astype(np.float64) for row in values]
    series = []
    for index, item in enumerate(values):
        array = _float_array(item, f"{where}[{index}]")
        if array.ndim == 1:
            array = array[:, None]
        elif array.ndim == 2 and array_layout == "NCT":
            array = array.T
        elif array.ndim != 2:
            raise TimeSeriesDataError(f"{where}[{index}] has shape {array.shape}; a series is (T,) or (T, C).")
        series.append(array)
    return series


def _array_split(values: Any, labels: Any, array_layout: str | None, where: str) -> _Split:
    series = arrays_to_series(values, array_layout, where)
    labels = list(np.asarray(labels, dtype=object).reshape(-1)) if not isinstance(labels, list) else labels
    if len(labels) != len(series):
        raise TimeSeriesDataError(f"{where}: {len(series)} series but {len(labels)} labels; give one label per series.")
    return _Split(series, labels, [f"series {index}" for index in range(len(series))], where)


# ------------------------------------------------------------------------------------------------ labels and checks


def _class_order(features: datasets.Features | None, options: _Options) -> list[str] | None:
    feature = features.get(options.label_column) if features is not None else None
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _label_values(values: Sequence[Any], feature: Any) -> list[Any]:
    """Labels as the source holds them; a `ClassLabel`'s indices as their names."""
    if isinstance(feature, datasets.ClassLabel):
        return [feature.int2str(int(value)) if value is not None and value >= 0 else None for value in values]
    return list(values)


def _hashable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _label_name(value: Any, index: int, split: _Split, class_names: Sequence[str] | None) -> str:
    """The class name of one label: a string as it is, a whole number as its integer text ("3" for 3 and 3.0)."""
    value = _hashable(value)
    where = f"{split.where}: {split.names[index]}"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise TimeSeriesDataError(f"{where} has no label: give every series its class, or drop it.")
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and np.isfinite(value):
        if class_names is not None and str(value) in class_names:  # a numeric class code, named as given
            return str(value)
        if value.is_integer():
            return str(int(value))
        if class_names is not None:
            return str(value)  # not among class_names: refused, with the others, by _encode
        raise TimeSeriesDataError(
            f"{where} has the label {value!r}, a number that is not whole: that is a regression target, and "
            "hf_primaldual trains classifiers only. If the numbers name classes, list them with --class_names "
            "(class_names=), e.g. --class_names 0.5 1.5; for regression use another tool."
        )
    raise TimeSeriesDataError(
        f"{where} has the label {value!r} ({type(value).__name__}), which is neither a class name nor a number: "
        "give each series one string or integer class."
    )


def _encode(
    splits: dict[str, _Split], class_names: Sequence[str] | None, name: str, description: str
) -> datasets.DatasetDict:
    """Check the splits against each other and turn them into the package's `DatasetDict`."""
    train = splits["train"]
    if not train.series:
        raise TimeSeriesDataError(f"{train.where} holds no series.")
    names = {split: [_label_name(value, i, s, class_names) for i, value in enumerate(s.labels)] for split, s in splits.items()}
    present = list(dict.fromkeys(names["train"]))
    if class_names is not None:
        order = [str(value) for value in class_names]
        unknown = sorted({label for labels in names.values() for label in labels} - set(order))
        if unknown:
            raise UnknownClassesError(
                f"The labels {_listed(unknown)} are not among --class_names ({_listed(order)}): list every class.",
                unknown, order,
            )
    elif train.class_names is not None:
        order = list(train.class_names)
    else:
        order = sorted(present, key=_class_sort_key)
    if len(present) < 2:
        raise TimeSeriesDataError(
            f"{train.where}: every series has the class {present[0]!r}; a classifier needs two classes or more. Check "
            "--label_column."
        )
    others = {split: labels for split, labels in names.items() if split != "train"}
    for split, label, count, first in classes_without_training_cases(names["train"], others)[:1]:
        raise TimeSeriesDataError(
            f"{splits[split].where}: the class {label!r} ({splits[split].names[first]}, {count} series in all) is "
            "never in the training split, so the model cannot learn it. Drop those series or move some to the "
            "training split."
        )
    declared_by = "--class_names (class_names=)" if class_names is not None else train.class_source
    empty_note = warn_about_empty_classes(order, list(names.values()), declared_by, train.where)
    num_channels = _check_series(splits)
    features = series_features(num_channels, order)
    index = {label: i for i, label in enumerate(order)}
    info = datasets.DatasetInfo(
        dataset_name=name,
        description=f"{description} {num_channels} channel(s), {len(order)} classes. Values as in the source (not "
                    f"standardised).{' ' + empty_note if empty_note else ''}",
        citation=UEA_CITATION if all(split.where.endswith((".ts)", ".ts.gz)")) for split in splits.values()) else "",
        features=features,
    )
    return datasets.DatasetDict({
        split: series_dataset([values.astype(np.float32) for values in s.series], [index[label] for label in names[split]],
                              features, info, split)
        for split, s in splits.items()
    })


def _class_sort_key(name: str) -> tuple[int, Any]:
    """Integers in numeric order before other names in text order."""
    try:
        return (0, int(name))
    except ValueError:
        return (1, name)


def _check_series(splits: dict[str, _Split]) -> int:
    """The number of channels all series share; refuse a series with another one, or with a non-finite value."""
    first = splits["train"]
    num_channels = first.series[0].shape[1]
    for split in splits.values():
        for values, name in zip(split.series, split.names):
            if values.shape[1] != num_channels:
                raise TimeSeriesDataError(
                    f"{split.where}: {name} has {values.shape[1]} channel(s) but {first.names[0]} of the training "
                    f"split has {num_channels}: every series needs the same channels."
                )
            if len(values) == 0:
                raise TimeSeriesDataError(f"{split.where}: {name} has no time step.")
            bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
            if bad.any():
                time, channel = (int(i[0]) for i in np.nonzero(bad))
                raise TimeSeriesDataError(
                    f"{split.where}: {name}, time step {time}, channel {channel} is {values[time, channel]!r} (missing, "
                    "infinite or beyond float32): fill or drop it."
                )
    return num_channels


def _hold_out_test(train: datasets.Dataset, fraction: float, seed: int) -> datasets.DatasetDict:
    """A stratified, seeded `fraction` of `train` as the test split, said in the dataset's description."""
    try:
        parts = train.train_test_split(test_size=fraction, stratify_by_column="label", seed=seed)
    except ValueError as error:
        raise TimeSeriesDataError(
            f"Cannot hold out a stratified {fraction:g} of the {len(train)} series as the test split ({error}). Give "
            "a test split with --test_file (test_file=), or another --test_fraction."
        ) from error
    note = (
        f" No test split was given: a stratified {fraction:g} of the series ({len(parts['test'])} of {len(train)}, "
        f"seed {seed}) was held out as the test split."
    )
    for split in parts.values():
        split.info.description = (split.info.description or "") + note
    return datasets.DatasetDict(train=parts["train"], test=parts["test"])


__all__ = [
    "ARRAY_LAYOUTS",
    "DATA_SUFFIXES",
    "LAYOUTS",
    "TimeSeriesDataArguments",
    "TimeSeriesDataError",
    "UnknownClassesError",
    "arrays_to_series",
    "load_timeseries",
    "source_name",
]
