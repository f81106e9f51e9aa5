"""`load_timeseries` reads real UEA sets written by the tests into every format and layout it takes, and each gives
the `DatasetDict` of the `.ts` files (`load_uea`, the independent reference): BasicMotions (6 channels, string
classes in a header order that is not sorted), JapaneseVowels (12 channels, unequal lengths, integer classes) and
ItalyPowerDemand (univariate, from aeon's wheel). Then string labels, univariate series, the held-out test split,
and every refusal, with the place and the fix in its message.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from hf_primaldual.data import SHIPPED_UEA_DIR, TimeSeriesDataError, load_timeseries, load_uea

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASIC_MOTIONS = FIXTURES / "BasicMotions"
ITALY = FIXTURES / "ItalyPowerDemand"
BASIC_MOTIONS_CLASSES = ["Standing", "Running", "Walking", "Badminton"]  # the .ts header's order


@pytest.fixture(scope="module")
def basic_motions() -> datasets.DatasetDict:
    return load_uea(train_path=BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_path=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")


@pytest.fixture(scope="module")
def japanese_vowels() -> datasets.DatasetDict:
    return load_uea("JapaneseVowels", data_dir=SHIPPED_UEA_DIR)


@pytest.fixture(scope="module")
def italy() -> datasets.DatasetDict:
    return load_uea(train_path=ITALY / "ItalyPowerDemand_TRAIN.ts", test_path=ITALY / "ItalyPowerDemand_TEST.ts.gz")


def series_and_names(split: datasets.Dataset) -> tuple[list[np.ndarray], list[str]]:
    rows = split.with_format("numpy")
    names = split.features["label"].names
    return list(rows["past_values"]), [names[label] for label in rows["label"]]


def assert_same(got: datasets.DatasetDict, expected: datasets.DatasetDict) -> None:
    """Same splits, features (class names in order) and values, row by row."""
    assert set(got) == set(expected) == {"train", "test"}
    for split in expected:
        assert got[split].features == expected[split].features, split
        assert got[split]["label"] == expected[split]["label"] and got[split]["length"] == expected[split]["length"]
        for ours, theirs in zip(got[split].with_format("numpy")["past_values"], expected[split].with_format("numpy")["past_values"]):
            np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------------------------------------ writers


def long_frame(split: datasets.Dataset, prefix: str, shuffle: int | None = None) -> pd.DataFrame:
    """One row per time step: id, t, c0..c{C-1}, label; rows shuffled (seeded) when `shuffle` is given."""
    series, names = series_and_names(split)
    lengths = [len(values) for values in series]
    table = pd.DataFrame(np.concatenate(series), columns=[f"c{c}" for c in range(series[0].shape[1])])
    table.insert(0, "t", np.concatenate([np.arange(length) for length in lengths]))
    table.insert(0, "id", np.repeat([f"{prefix}{index}" for index in range(len(series))], lengths))
    table["label"] = np.repeat(names, lengths)
    return table.sample(frac=1, random_state=shuffle).reset_index(drop=True) if shuffle is not None else table


def nested_frame(split: datasets.Dataset, per_channel: bool) -> pd.DataFrame:
    """One row per series: a `series` column of (T, C) lists, or one list column per channel."""
    series, names = series_and_names(split)
    if per_channel:
        columns = {f"c{c}": [values[:, c].tolist() for values in series] for c in range(series[0].shape[1])}
    else:
        columns = {"series": [values.tolist() for values in series]}
    return pd.DataFrame({**columns, "label": names})


def write_splits(folder: Path, make, suffix: str, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in make.items():
        path = folder / f"data_{split}{suffix}"
        if suffix in (".csv", ".tsv"):
            frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",", **kwargs)
        elif suffix == ".parquet":
            frame.to_parquet(path, index=False)
        elif suffix == ".jsonl":
            frame.to_json(path, orient="records", lines=True)
        else:
            path.write_text(json.dumps(frame.to_dict(orient="records")))
    return folder


# ------------------------------------------------------------------------------------------------ formats and layouts


def test_uea_names_ts_files_and_folders_read_as_load_uea(basic_motions, japanese_vowels):
    assert_same(load_timeseries("JapaneseVowels"), japanese_vowels)
    assert_same(load_timeseries("BasicMotions", data_dir=FIXTURES), basic_motions)
    assert_same(load_timeseries(BASIC_MOTIONS), basic_motions)  # a folder of *TRAIN* / *TEST* files
    single = load_timeseries(
        BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_file=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz"
    )
    assert_same(single, basic_motions)
    assert single["train"].info.dataset_name == "BasicMotions" and "Bagnall" in single["train"].info.citation


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_long_tables_with_shuffled_rows_sorted_by_time(japanese_vowels, tmp_path, suffix):
    """JapaneseVowels (unequal lengths): one row per time step, rows shuffled, put back in order by `t`."""
    frames = {split: long_frame(japanese_vowels[split], split, shuffle=0) for split in ("train", "test")}
    folder = write_splits(tmp_path, frames, suffix)
    dataset = load_timeseries(folder, series_id_column="id", time_column="t")
    # the series come in order of their first row: sort both sides by the first row's id to compare
    order = {split: [int(i.removeprefix(split)) for i in frames[split].drop_duplicates("id")["id"]] for split in frames}
    expected = datasets.DatasetDict({split: japanese_vowels[split].select(order[split]) for split in frames})
    assert_same(dataset, expected)


def test_long_dataframe_in_memory_in_file_order(basic_motions):
    frame = long_frame(basic_motions["train"], "s").drop(columns="t")  # kept, it would be a channel
    test = long_frame(basic_motions["test"], "s").drop(columns="t")
    dataset = load_timeseries(
        datasets.DatasetDict(train=datasets.Dataset.from_pandas(frame), test=datasets.Dataset.from_pandas(test)),
        series_id_column="id", class_names=BASIC_MOTIONS_CLASSES,
    )
    assert_same(dataset, basic_motions)
    only_train = load_timeseries(frame, series_id_column="id", class_names=BASIC_MOTIONS_CLASSES)
    assert only_train["train"].num_rows + only_train["test"].num_rows == 40


@pytest.mark.parametrize(
    ("suffix", "per_channel"), [(".parquet", False), (".jsonl", True), (".json", False), (".parquet", True)]
)
def test_nested_tables(japanese_vowels, tmp_path, suffix, per_channel):
    frames = {split: nested_frame(japanese_vowels[split], per_channel) for split in ("train", "test")}
    assert_same(load_timeseries(write_splits(tmp_path, frames, suffix)), japanese_vowels)


def test_nested_file_with_test_file_and_label_column(basic_motions, tmp_path):
    for split in ("train", "test"):
        nested_frame(basic_motions[split], False).rename(columns={"label": "activity"}).to_parquet(tmp_path / f"{split}.parquet")
    dataset = load_timeseries(
        tmp_path / "train.parquet", test_file=tmp_path / "test.parquet", label_column="activity",
        class_names=BASIC_MOTIONS_CLASSES,
    )
    assert_same(dataset, basic_motions)


def test_save_to_disk_folders_and_hub_style_parquet_keep_class_labels(basic_motions, tmp_path):
    """A DatasetDict saved by `datasets` (its own layout, ClassLabel kept) reads back unchanged, and so do its
    parquet files, whose schema carries the ClassLabel names and order."""
    basic_motions.save_to_disk(tmp_path / "saved")
    assert_same(load_timeseries(tmp_path / "saved"), basic_motions)
    for split in ("train", "test"):
        basic_motions[split].to_parquet(tmp_path / "parquet" / f"{split}.parquet")
    assert_same(load_timeseries(tmp_path / "parquet"), basic_motions)
    raw = datasets.DatasetDict({
        split: datasets.Dataset.from_pandas(nested_frame(basic_motions[split], True)) for split in ("train", "test")
    })
    raw.save_to_disk(tmp_path / "raw")
    assert_same(load_timeseries(tmp_path / "raw", class_names=BASIC_MOTIONS_CLASSES), basic_motions)


def test_numpy_arrays_in_npz_and_npy_files_and_in_memory(basic_motions, tmp_path):
    (x_train, y_train), (x_test, y_test) = (
        (np.stack(series), np.array(names)) for series, names in map(series_and_names, basic_motions.values())
    )
    np.savez(tmp_path / "ntc.npz", X_train=x_train, y_train=y_train, X_test=x_test, y_test=y_test)
    ntc = load_timeseries(tmp_path / "ntc.npz", test_file=tmp_path / "ntc.npz", array_layout="NTC",
                          class_names=BASIC_MOTIONS_CLASSES)
    assert_same(ntc, basic_motions)
    aeon = tmp_path / "aeon"
    aeon.mkdir()
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        np.save(aeon / f"X_{split}.npy", x.transpose(0, 2, 1))  # aeon/sktime: (N, C, T)
        np.save(aeon / f"y_{split}.npy", y)
    assert_same(load_timeseries(aeon, array_layout="NCT", class_names=BASIC_MOTIONS_CLASSES), basic_motions)
    in_memory = load_timeseries(x_train, y_train, array_layout="NTC", class_names=BASIC_MOTIONS_CLASSES)
    assert in_memory["train"].features == basic_motions["train"].features
    assert in_memory["train"].num_rows + in_memory["test"].num_rows == 40


def test_univariate_wide_table_and_one_channel_of_a_multivariate_set(italy, japanese_vowels, tmp_path):
    """ItalyPowerDemand as a wide CSV (one column per step); one channel of JapaneseVowels (unequal lengths) as a
    wide CSV whose shorter series end in empty cells, as (T,) arrays in a list and as nested (T,) lists."""
    frames = {}
    for split in ("train", "test"):
        series, names = series_and_names(italy[split])
        frames[split] = pd.DataFrame(np.stack(series)[:, :, 0], columns=[f"t{i}" for i in range(24)]).assign(label=names)
    assert_same(load_timeseries(write_splits(tmp_path / "italy", frames, ".csv"), layout="wide"), italy)
    wide_2d = load_timeseries(np.stack(series_and_names(italy["train"])[0])[:, :, 0], series_and_names(italy["train"])[1])
    assert wide_2d["train"].features == italy["train"].features

    # one channel of JapaneseVowels: the same series and classes, one channel
    expected = {split: series_and_names(japanese_vowels[split]) for split in ("train", "test")}
    channel = {split: [values[:, 3] for values in expected[split][0]] for split in expected}
    features = datasets.Features({**japanese_vowels["train"].features, "past_values": datasets.Array2D((None, 1), "float32")})

    def assert_channel(dataset: datasets.DatasetDict) -> None:
        for split, (series, names) in expected.items():
            assert dataset[split].features == features
            got_series, got_names = series_and_names(dataset[split])
            assert got_names == names
            for got, values in zip(got_series, series):
                np.testing.assert_array_equal(got, values[:, 3:4])

    padded = {split: np.full((len(channel[split]), 29), np.nan) for split in channel}  # shorter series: empty cells
    for split, rows in channel.items():
        for index, values in enumerate(rows):
            padded[split][index, : len(values)] = values
    frames = {split: pd.DataFrame(padded[split]).add_prefix("t").assign(label=[int(n) for n in expected[split][1]])
              for split in channel}
    assert_channel(load_timeseries(write_splits(tmp_path / "jv", frames, ".csv"), layout="wide"))
    nested = {split: pd.DataFrame({"x": [v.tolist() for v in channel[split]], "label": expected[split][1]})
              for split in channel}
    assert_channel(load_timeseries(write_splits(tmp_path / "jv-nested", nested, ".parquet")))
    listed = load_timeseries(channel["train"], expected["train"][1])
    assert listed["train"].features == features


def test_string_labels_become_sorted_class_names_unless_given(basic_motions, tmp_path):
    frame = long_frame(basic_motions["train"], "s")
    frame.to_csv(tmp_path / "moves.csv", index=False)
    dataset = load_timeseries(tmp_path / "moves.csv", series_id_column="id", time_column="t", test_fraction=0.25,
                              split_seed=3)
    assert dataset["train"].features["label"].names == sorted(BASIC_MOTIONS_CLASSES)
    assert dataset["train"].info.dataset_name == "moves"
    by_series = {tuple(values[:2, 0]): name for values, name in zip(*series_and_names(basic_motions["train"]))}
    for split in dataset.values():
        for values, name in zip(*series_and_names(split)):
            assert by_series[tuple(values[:2, 0])] == name  # each series keeps its class, by name


def test_held_out_test_split_is_stratified_seeded_and_described(japanese_vowels):
    train = japanese_vowels["train"]
    first = load_timeseries(train, test_fraction=0.25, split_seed=7)
    again = load_timeseries(train, test_fraction=0.25, split_seed=7)
    other = load_timeseries(train, test_fraction=0.25, split_seed=8)
    assert first["test"]["length"] == again["test"]["length"] and first["test"]["length"] != other["test"]["length"]
    assert first["train"].num_rows + first["test"].num_rows == 270 and first["test"].num_rows == 68
    counts = np.bincount(first["test"]["label"], minlength=9)
    assert counts.min() >= 7 and counts.max() <= 8  # 30 per class, a quarter of each in the test split
    assert "stratified 0.25 of the series (68 of 270, seed 7) was held out" in first["test"].info.description


# ------------------------------------------------------------------------------------------------ refusals


def refused(match: str, source, *args, **kwargs) -> str:
    with pytest.raises(TimeSeriesDataError, match=match) as caught:
        load_timeseries(source, *args, **kwargs)
    return str(caught.value)


def test_missing_label_and_id_columns_list_the_columns(basic_motions):
    frame = long_frame(basic_motions["train"], "s")
    message = refused("has no column 'class'", frame, series_id_column="id", label_column="class")
    assert "its columns are id, t, c0, c1, c2, c3, c4, c5, label" in message and "--label_column" in message
    assert "--series_id_column" in refused("has no column 'series'", frame, series_id_column="series")
    assert "--layout wide" in refused("holds single numbers only", frame)


def test_a_series_with_other_channels_is_named(basic_motions):
    frame = nested_frame(basic_motions["train"], False)
    frame.at[5, "series"] = [row[:5] for row in frame.at[5, "series"]]
    refused(r"row 5 has 5 channel\(s\) but row 0 of the training split has 6", frame, class_names=BASIC_MOTIONS_CLASSES)
    per_channel = nested_frame(basic_motions["train"], True)
    per_channel.at[2, "c4"] = per_channel.at[2, "c4"][:-1]
    refused(r"row 2 has channels of different shapes \(.*c4 \(99,\)", per_channel)


def test_non_numeric_values_name_row_column_and_value(basic_motions, tmp_path):
    frame = long_frame(basic_motions["train"], "s").astype({"c2": object})
    frame.loc[123, "c2"] = "0,47"  # a decimal comma
    frame.to_csv(tmp_path / "bad.csv", index=False)
    refused(r"row 123, column 'c2' holds '0,47', which is not a number", tmp_path / "bad.csv", series_id_column="id")
    nested = nested_frame(basic_motions["train"], True)
    nested.at[7, "c1"] = ["x"] + nested.at[7, "c1"][1:]
    refused(r"row 7, column 'c1' is not a \(T,\) or \(T, C\) array of numbers", nested)
    frame = long_frame(basic_motions["train"], "s")
    frame.loc[9, "c0"] = np.nan
    refused(r"row 9, column 'c0' is empty \(a missing value\)", frame, series_id_column="id")


def test_a_class_only_in_the_test_split_is_refused(basic_motions, tmp_path):
    train = nested_frame(basic_motions["train"], False)
    test = nested_frame(basic_motions["test"], False)
    train[train["label"] != "Badminton"].to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    refused(r"the class 'Badminton' \(row 30, 10 series in all\) is never in the training split", tmp_path)


def test_labels_that_are_neither_classes_nor_numbers_are_refused(basic_motions):
    frame = nested_frame(basic_motions["train"], False)
    frame["label"] = frame["label"].astype(object)
    frame.at[3, "label"] = ["Standing"]
    refused(r"row 3 has the label \['Standing'\] \(list\), which is neither a class name nor a number", frame)
    frame.at[3, "label"] = None
    refused("row 3 has no label", frame)
    frame["label"] = "Standing"
    refused("every series has the class 'Standing'; a classifier needs two classes", frame)


def test_float_targets_are_refused_with_the_option_that_makes_them_classes(basic_motions):
    frame = nested_frame(basic_motions["train"], False)
    frame["label"] = frame["label"].map({"Standing": 0.5, "Running": 1.5, "Walking": 2.0, "Badminton": 2.5})
    message = refused(r"row 0 has the label 0.5, a number that is not whole: that is a regression target", frame)
    assert "--class_names" in message
    dataset = load_timeseries(frame, class_names=["0.5", "1.5", "2.0", "2.5"])
    assert dataset["train"].features["label"].names == ["0.5", "1.5", "2.0", "2.5"]


def test_ambiguous_arrays_and_missing_files_say_what_to_give(basic_motions, tmp_path):
    x = np.stack(series_and_names(basic_motions["train"])[0])
    y = series_and_names(basic_motions["train"])[1]
    message = refused(r"has shape \(40, 100, 6\): say which axis is time", x, y)
    assert "array_layout='NTC'" in message and "NCT (aeon/sktime's) reads 6 time steps of 100 channels" in message
    refused("needs its labels", x)
    refused("40 series but 39 labels", x, y[:-1], array_layout="NTC")
    refused("no such file or directory", tmp_path / "missing.csv")
    np.savez(tmp_path / "objects.npz", X=x, y=np.array(y, dtype=object))  # labels straight from pandas
    refused(r"holds an array of Python objects \(dtype object\).*y.astype\(str\)", tmp_path / "objects.npz",
            array_layout="NTC")
    np.save(tmp_path / "X_train.npy", x)
    refused(r"read from y_train.npy beside it, which does not exist", tmp_path / "X_train.npy", array_layout="NTC")
    (tmp_path / "notes.txt").write_text("x")
    refused(r"unknown file type", tmp_path / "notes.txt")


def test_a_class_only_in_a_ts_test_file_is_refused(tmp_path):
    train = tmp_path / "BasicMotions_TRAIN.ts"
    train.write_text("".join(line for line in (BASIC_MOTIONS / "BasicMotions_TRAIN.ts").open()
                             if not line.rstrip().endswith(":Badminton")))
    refused(r"the class 'Badminton' \(case 30, 10 series in all\) is never in the training split", train,
            test_file=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")


@pytest.mark.parametrize("declared_by", ["class_names", "ClassLabel"])
def test_a_declared_class_without_any_series_is_warned_about_and_described(basic_motions, declared_by, caplog):
    """A dead output is never made without a word: the class gets its output (a label set may be larger than the
    data at hand), with a warning naming the class and what declared it, and a sentence in the description (the
    model card)."""
    frame = nested_frame(basic_motions["train"], False)
    frame = frame[frame["label"] != "Walking"]
    if declared_by == "class_names":
        source, kwargs, expected = frame, {"class_names": BASIC_MOTIONS_CLASSES}, "--class_names (class_names=)"
    else:
        features = datasets.Features({"series": datasets.List(datasets.List(datasets.Value("float64"))),
                                      "label": datasets.ClassLabel(names=BASIC_MOTIONS_CLASSES)})
        source = datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)
        kwargs, expected = {}, "the ClassLabel feature"
    with caplog.at_level("WARNING"):
        dataset = load_timeseries(source, **kwargs)
    sentence = f"The class(es) 'Walking', declared by {expected}, have no series in any split"
    assert dataset["train"].features["label"].names == BASIC_MOTIONS_CLASSES
    assert sentence in caplog.text and f"remove them from {expected}" in caplog.text
    assert sentence in dataset["train"].info.description and sentence in dataset["test"].info.description


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_utf16_table_is_named_as_utf16(basic_motions, tmp_path, suffix):
    """The `datasets` builders said only "An error occurred while generating the dataset"."""
    folder = write_splits(tmp_path / "utf8", {"train": long_frame(basic_motions["train"], "s")}, suffix)
    path = tmp_path / f"steps{suffix}"
    path.write_bytes((folder / f"data_train{suffix}").read_text().encode("utf-16"))
    message = refused(r"steps\.(csv|jsonl): the file is UTF-16 text \(its byte-order mark\), not UTF-8\. Save it as "
                      r"UTF-8", path, series_id_column="id")
    assert f"> fixed{suffix}`" in message
