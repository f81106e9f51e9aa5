"""Tests of the UEA `.ts` reader and `load_uea`, on the shipped JapaneseVowels, the BasicMotions fixtures and, when
present, the shared archive beside the repository. Malformed files are edited copies of real ones."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from helpers import FIXTURES, SHARED_DATA
from hf_primaldual.data import SHIPPED_UEA_DIR, UEA_DIR_ENV, TsFormatError, load_uea, read_ts

SHARED_UEA = SHARED_DATA / "uea"
JAPANESE_VOWELS_TRAIN = SHIPPED_UEA_DIR / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts"
JAPANESE_VOWELS_TEST = SHIPPED_UEA_DIR / "JapaneseVowels" / "JapaneseVowels_TEST.ts"
BASIC_MOTIONS_TRAIN = FIXTURES / "BasicMotions" / "BasicMotions_TRAIN.ts"


def first_data_line(text: str) -> int:
    """1-based number of the first case's line (the line after @data)."""
    lines = text.splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.strip().lower() == "@data") + 1


def write_variant(tmp_path: Path, source: Path, edit) -> tuple[Path, int]:
    """Copy `source` with `edit(lines, first_case_index)` applied; return the copy and the first case's line."""
    text = source.read_text()
    lines = text.splitlines()
    first_case = first_data_line(text)
    edit(lines, first_case - 1)
    path = tmp_path / source.name
    path.write_text("\n".join(lines) + "\n")
    return path, first_case


def set_value(case_offset: int, channel: int, step: int, token: str):
    """An edit for `write_variant` writing `token` as value `step` of `channel` (both from 0) of a case."""

    def edit(lines, case):
        channels = lines[case + case_offset].split(":")
        values = channels[channel].split(",")
        values[step] = token
        channels[channel] = ",".join(values)
        lines[case + case_offset] = ":".join(channels)

    return edit


def shorten(lines: list[str], index: int, steps: int = 1) -> None:
    """Drop the last `steps` values of every channel of the case on `lines[index]`."""
    *channels, label = lines[index].split(":")
    lines[index] = ":".join([channel.rsplit(",", steps)[0] for channel in channels] + [label])


def assert_names_location(error: TsFormatError, path: Path, line_number: int | None) -> None:
    assert isinstance(error, ValueError)
    assert error.path == path and error.line_number == line_number
    assert str(path) in str(error)
    if line_number is not None:
        assert f"line {line_number}:" in str(error)


@pytest.fixture(scope="module")
def japanese_vowels():
    return load_uea("JapaneseVowels", data_dir=SHIPPED_UEA_DIR)


def test_japanese_vowels_counts_shapes_and_classes(japanese_vowels):
    train, test = japanese_vowels["train"], japanese_vowels["test"]
    assert (train.num_rows, test.num_rows) == (270, 370)
    assert train.features["label"].names == [str(k) for k in range(1, 10)]
    assert train.features["past_values"].shape == (None, 12)
    assert train.info.dataset_name == "JapaneseVowels"
    lengths = list(train["length"]) + list(test["length"])
    assert (min(lengths), max(lengths)) == (7, 29)
    arrays = train.with_format("numpy")["past_values"]
    assert [len(values) for values in arrays] == list(train["length"])
    assert all(values.shape[1] == 12 and values.dtype == np.float32 for values in arrays)


def test_japanese_vowels_values_match_the_file_text(japanese_vowels):
    text = JAPANESE_VOWELS_TRAIN.read_text()
    first_case = text.splitlines()[first_data_line(text) - 1]
    channels, label = first_case.split(":")[:-1], first_case.split(":")[-1]
    first = np.asarray(japanese_vowels["train"][0]["past_values"])
    assert first[0, 0] == np.float32(1.860936)  # the first value written in the file
    assert first[0, 0] == np.float32(channels[0].split(",")[0])
    assert first[-1, -1] == np.float32(channels[-1].split(",")[-1])
    assert first.shape == (len(channels[0].split(",")), 12)
    assert japanese_vowels["train"].features["label"].int2str(japanese_vowels["train"][0]["label"]) == label


def test_default_data_dir_is_the_environment_variable_then_the_shipped_folder(monkeypatch):
    monkeypatch.delenv(UEA_DIR_ENV, raising=False)
    assert load_uea("JapaneseVowels")["train"].num_rows == 270
    monkeypatch.setenv(UEA_DIR_ENV, str(FIXTURES))
    assert load_uea("BasicMotions")["train"].num_rows == 40


def test_read_ts_split_fields():
    split = read_ts(BASIC_MOTIONS_TRAIN)
    assert split.problem_name == "BasicMotions"
    assert split.class_names == ["Standing", "Running", "Walking", "Badminton"]  # header order, not sorted
    assert len(split) == 40 and split.num_channels == 6 and split.path == BASIC_MOTIONS_TRAIN
    assert {values.shape for values in split.series} == {(100, 6)}
    assert sorted(set(split.labels)) == [0, 1, 2, 3]


def test_basic_motions_equal_length_with_a_gzipped_test_split():
    dataset = load_uea("BasicMotions", data_dir=FIXTURES)  # TRAIN is .ts, TEST is .ts.gz
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (40, 40)
    assert set(dataset["train"]["length"]) == set(dataset["test"]["length"]) == {100}
    assert dataset["test"].features["past_values"].shape == (None, 6)


def test_gzipped_file_reads_like_the_plain_one(tmp_path):
    compressed = tmp_path / "JapaneseVowels_TRAIN.ts.gz"
    compressed.write_bytes(gzip.compress(JAPANESE_VOWELS_TRAIN.read_bytes()))
    plain, zipped = read_ts(JAPANESE_VOWELS_TRAIN), read_ts(compressed)
    assert zipped.labels == plain.labels and zipped.problem_name == "JapaneseVowels"
    assert all(np.array_equal(a, b) for a, b in zip(plain.series, zipped.series))


@pytest.mark.skipif(not SHARED_UEA.is_dir(), reason="shared data folder beside the repository not present")
def test_fixture_gz_matches_the_shared_archive_file():
    fixture = read_ts(FIXTURES / "BasicMotions" / "BasicMotions_TEST.ts.gz")
    shared = read_ts(SHARED_UEA / "BasicMotions" / "BasicMotions_TEST.ts")
    assert fixture.labels == shared.labels
    assert all(np.array_equal(a, b) for a, b in zip(fixture.series, shared.series))


@pytest.mark.skipif(not SHARED_UEA.is_dir(), reason="shared data folder beside the repository not present")
@pytest.mark.parametrize(
    ("name", "sizes", "channels", "length", "classes"),
    [
        ("Libras", (180, 180), 2, 45, 15),  # '?' appears in its comments, which must not count as missing values
        ("AtrialFibrillation", (15, 15), 2, 640, 3),
        ("ERing", (30, 270), 4, 65, 6),
        ("RacketSports", (151, 152), 6, 30, 4),
    ],
)
def test_shared_archive_sets_match_their_published_sizes(name, sizes, channels, length, classes):
    dataset = load_uea(name, data_dir=SHARED_UEA)
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == sizes
    assert dataset["train"].features["past_values"].shape == (None, channels)
    assert set(dataset["train"]["length"]) == {length}
    assert dataset["train"].features["label"].num_classes == classes


def test_explicit_paths_and_argument_errors():
    dataset = load_uea(train_path=JAPANESE_VOWELS_TRAIN, test_path=JAPANESE_VOWELS_TEST)
    assert dataset["test"].num_rows == 370
    with pytest.raises(ValueError, match="not both"):
        load_uea("JapaneseVowels", train_path=JAPANESE_VOWELS_TRAIN)
    with pytest.raises(ValueError, match="both `train_path` and `test_path`"):
        load_uea(train_path=JAPANESE_VOWELS_TRAIN)


def test_unknown_problem_lists_the_available_ones():
    with pytest.raises(FileNotFoundError) as caught:
        load_uea("SpokenArabicDigits", data_dir=FIXTURES)
    message = str(caught.value)
    assert "SpokenArabicDigits_TRAIN.ts" in message and str(FIXTURES) in message
    assert "available" in message and "BasicMotions" in message and UEA_DIR_ENV in message


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "Nope_TRAIN.ts")):
        read_ts(tmp_path / "Nope_TRAIN.ts")


def test_wrong_channel_count(tmp_path):
    def drop_last_channel(lines, case):
        *channels, label = lines[case].split(":")
        lines[case] = ":".join(channels[:-1] + [label])

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, drop_last_channel)
    with pytest.raises(TsFormatError, match="found 5 channels but @dimensions says 6") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


def test_non_numeric_value(tmp_path):
    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, set_value(0, 1, 2, "0.1x"))
    with pytest.raises(TsFormatError, match=r"value 3 of channel 2 \(counting from 1\) is '0.1x'") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


def test_data_before_the_data_tag(tmp_path):
    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, lambda lines, case: lines.pop(case - 1))
    with pytest.raises(TsFormatError, match="before the @data line") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line - 1)


def test_header_without_data_tag(tmp_path):
    def drop_data(lines, case):
        del lines[case - 1 :]

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, drop_data)
    with pytest.raises(TsFormatError, match="no @data line") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line - 2)


def test_label_not_in_the_header(tmp_path):
    def relabel(lines, case):
        lines[case] = lines[case].rsplit(":", 1)[0] + ":Swimming"

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, relabel)
    with pytest.raises(TsFormatError, match=r"'Swimming' is not in the header's @classLabel list") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)
    assert "Badminton" in str(caught.value)


def test_channels_of_different_lengths_in_one_case(tmp_path):
    def shorten_channel_1(lines, case):
        channels = lines[case].split(":")
        channels[0] = channels[0].rsplit(",", 1)[0]
        lines[case] = ":".join(channels)

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, shorten_channel_1)
    with pytest.raises(TsFormatError, match=r"different lengths \[99, 100, 100, 100, 100, 100\]") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


def test_series_length_mismatch(tmp_path):
    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, lambda lines, case: shorten(lines, case))
    with pytest.raises(TsFormatError, match="has 99 time steps but @seriesLength says 100") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("@timeStamps false", "@timeStamps true", r"@timeStamps true\) is not supported"),
        ("@dimensions 6", "@dimensions six", "@dimensions must be a positive integer"),
        ("@missing false", "@missing maybe", "@missing must be true or false"),
        ("@problemName BasicMotions", "@problem BasicMotions", "unknown header tag '@problem'"),
        ("@classLabel true Standing Running Walking Badminton", "@classLabel false", "lists no class labels"),
    ],
)
def test_header_errors(tmp_path, old, new, message):
    text = BASIC_MOTIONS_TRAIN.read_text()
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if text_line == old)
    path = tmp_path / BASIC_MOTIONS_TRAIN.name
    path.write_text(text.replace(old, new))
    with pytest.raises(TsFormatError, match=message) as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


def test_train_and_test_with_different_channel_counts():
    with pytest.raises(TsFormatError, match="test cases have 12 channels but the training cases") as caught:
        load_uea(train_path=BASIC_MOTIONS_TRAIN, test_path=JAPANESE_VOWELS_TEST)
    assert_names_location(caught.value, JAPANESE_VOWELS_TEST, None)
    assert str(BASIC_MOTIONS_TRAIN) in str(caught.value)


def test_test_header_in_another_class_order_keeps_the_labels(tmp_path):
    reordered = tmp_path / "BasicMotions_TEST.ts"
    text = gzip.decompress((FIXTURES / "BasicMotions" / "BasicMotions_TEST.ts.gz").read_bytes()).decode()
    reordered.write_text(text.replace("Standing Running Walking Badminton", "Badminton Walking Running Standing"))
    original = list(load_uea("BasicMotions", data_dir=FIXTURES)["test"]["label"])
    assert list(load_uea(train_path=BASIC_MOTIONS_TRAIN, test_path=reordered)["test"]["label"]) == original


def test_missing_values_are_interpolated_along_time(tmp_path, caplog):
    original = read_ts(BASIC_MOTIONS_TRAIN).series[0].astype(np.float64)

    def punch_holes(lines, case):
        *channels, label = lines[case].split(":")
        values = [channel.split(",") for channel in channels]
        values[0][0] = "?"  # leading gap: nearest observed value
        values[0][2], values[0][3] = "?", "NaN"  # inner gap: linear interpolation between steps 1 and 4
        values[1][98], values[1][99] = "?", "?"  # trailing gap: nearest observed value
        values[2] = ["?"] * 100  # nothing observed: 0.0
        lines[case] = ":".join([",".join(channel) for channel in values] + [label])

    path, _ = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, punch_holes)
    with caplog.at_level(logging.WARNING, logger="hf_primaldual.data.uea"):
        filled = read_ts(path).series[0]
    assert "filled 5 missing values by linear interpolation" in caplog.text  # the header says @missing false

    expected = original.copy()
    expected[0, 0] = original[1, 0]
    step = (original[4, 0] - original[1, 0]) / 3
    expected[2, 0] = original[1, 0] + step
    expected[3, 0] = original[1, 0] + 2 * step
    expected[98, 1] = expected[99, 1] = original[97, 1]
    expected[:, 2] = 0.0
    np.testing.assert_allclose(filled, expected, rtol=1e-6, atol=1e-7)
    assert filled.dtype == np.float32


def test_infinite_value_is_rejected(tmp_path):
    def put_inf(lines, case):
        lines[case] = "inf" + lines[case][lines[case].index(","):]

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, put_inf)
    with pytest.raises(TsFormatError, match="value 1 of channel 1 .* is infinite") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)


# --- Real files whose header disagrees with their data ----------------------------------------------------------


def set_series_length(length: int | None):
    """An edit for `write_variant` that rewrites (or, with None, drops) the @seriesLength line."""

    def edit(lines, case):
        index = next(i for i, line in enumerate(lines) if line.lower().startswith("@serieslength"))
        if length is None:
            del lines[index]
        else:
            lines[index] = f"@seriesLength {length}"

    return edit


def test_series_length_one_short_of_every_case_follows_the_data_and_warns(tmp_path, caplog):
    # Every case of BasicMotions has 100 steps; a header one step short is what some archive copies carry.
    path, _ = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, set_series_length(99))
    with caplog.at_level(logging.WARNING, logger="hf_primaldual.data.uea"):
        split = read_ts(path)
    assert {values.shape for values in split.series} == {(100, 6)}
    original = read_ts(BASIC_MOTIONS_TRAIN)
    assert all(np.array_equal(a, b) for a, b in zip(split.series, original.series))
    assert str(path) in caplog.text
    assert "@seriesLength says 99 but every case has 100 time steps" in caplog.text


def test_cases_of_different_lengths_under_equal_length_are_refused_without_series_length(tmp_path):
    def drop_series_length_and_shorten_the_third_case(lines, case):
        shorten(lines, case + 2)
        set_series_length(None)(lines, case)

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, drop_series_length_and_shorten_the_third_case)
    # The @seriesLength line is gone, so the cases start one line earlier; the third case is two lines further.
    with pytest.raises(TsFormatError, match=r"has 99 time steps but the first case .* has 100.*@equalLength true"):
        read_ts(path)
    with pytest.raises(TsFormatError) as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line - 1 + 2)


def test_series_length_that_no_case_has_with_unequal_cases_is_refused(tmp_path):
    def header_99_and_shorten_the_second_case_to_98(lines, case):
        set_series_length(99)(lines, case)
        shorten(lines, case + 1, steps=2)

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, header_99_and_shorten_the_second_case_to_98)
    with pytest.raises(TsFormatError, match="has 98 time steps but the first case") as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line + 1)


# --- Values the float32 series cannot hold ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e300", "-3.5e38"])
def test_value_beyond_float32_is_refused_with_file_line_and_channel(tmp_path, value):
    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, set_value(0, 1, 2, value))
    pattern = rf"value 3 of channel 2 \(counting from 1\) is '{re.escape(value)}', which overflows float32"
    with pytest.raises(TsFormatError, match=pattern) as caught:
        read_ts(path)
    assert_names_location(caught.value, path, line)
    assert "?" in str(caught.value)  # the fix offers marking it missing


def test_largest_float32_value_still_loads(tmp_path):
    path, _ = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, set_value(0, 0, 0, "-3.4028234e38"))
    assert read_ts(path).series[0][0, 0] == -np.finfo(np.float32).max


# --- Missing values: the warning says what was done ---------------------------------------------------------------


def test_channel_with_no_observed_value_is_reported_as_filled_with_zero(tmp_path, caplog):
    def blank_channel_3_of_case_2(lines, case):
        for step in range(100):
            set_value(1, 2, step, "?")(lines, case)

    path, line = write_variant(tmp_path, BASIC_MOTIONS_TRAIN, blank_channel_3_of_case_2)
    with caplog.at_level(logging.WARNING, logger="hf_primaldual.data.uea"):
        split = read_ts(path)
    assert (split.series[1][:, 2] == 0.0).all()
    assert "interpolation" not in caplog.text  # nothing was interpolated
    assert str(path) in caplog.text
    assert f"filled with 0.0: line {line + 1} channel 3" in caplog.text


# --- Damaged compressed files ----------------------------------------------------------------------------------------


def test_truncated_gzipped_ts_names_the_file(tmp_path):
    truncated = tmp_path / "BasicMotions_TEST.ts.gz"
    whole = (FIXTURES / "BasicMotions" / "BasicMotions_TEST.ts.gz").read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TsFormatError, match="truncated or corrupt") as caught:
        read_ts(truncated)
    assert caught.value.path == truncated and str(truncated) in str(caught.value)


# --- Files that are not UTF-8 text -----------------------------------------------------------------------------------


def _utf16(text: str) -> bytes:
    return text.encode("utf-16")  # with its byte-order mark, as Windows editors and PowerShell's `>` write


@pytest.mark.parametrize(
    ("name", "encode", "message"),
    [
        ("utf16", _utf16, r"the file is UTF-16 text \(its byte-order mark\), not UTF-8\. Save it as UTF-8"),
        ("utf16-le", lambda text: text.encode("utf-16-le"), r"the file is UTF-16-LE text .*not UTF-8\. Save it as UTF-8"),
        ("utf16-be", lambda text: text.encode("utf-16-be"), r"the file is UTF-16-BE text .*not UTF-8\. Save it as UTF-8"),
        ("utf32", lambda text: text.encode("utf-32"), r"the file is UTF-32 text \(its byte-order mark\), not UTF-8"),
        ("gzip-named-ts", lambda text: gzip.compress(text.encode()), r"the file is gzip-compressed.*suffix \.ts\.gz"),
        ("binary", lambda text: np.arange(4096, dtype=np.int32).tobytes(), r"the file is not text: it holds zero bytes"),
    ],
)
def test_a_file_that_is_not_utf8_text_is_named_as_what_it_is(tmp_path, name, encode, message):
    path = tmp_path / "BasicMotions_TRAIN.ts"
    path.write_bytes(encode(BASIC_MOTIONS_TRAIN.read_text()))
    with pytest.raises(TsFormatError, match=message) as caught:
        read_ts(path)
    assert "data line comes before the @data line" not in str(caught.value)
    assert_names_location(caught.value, path, None)


def test_a_gzipped_utf16_file_says_how_to_convert_it(tmp_path):
    path = tmp_path / "BasicMotions_TRAIN.ts.gz"
    path.write_bytes(gzip.compress(_utf16(BASIC_MOTIONS_TRAIN.read_text())))
    with pytest.raises(TsFormatError, match=r"UTF-16 text .*`gunzip -c BasicMotions_TRAIN\.ts\.gz \| iconv -f UTF-16"):
        read_ts(path)


def test_a_utf8_file_with_a_byte_order_mark_and_odd_comment_bytes_still_reads(tmp_path):
    path = tmp_path / "BasicMotions_TRAIN.ts"
    path.write_bytes(b"\xef\xbb\xbf# caf\xe9 (latin-1 in a comment)\n" + BASIC_MOTIONS_TRAIN.read_bytes())
    assert len(read_ts(path)) == len(read_ts(BASIC_MOTIONS_TRAIN))


# --- Classes the training file lacks ---------------------------------------------------------------------------------


def _without_class(source_text: str, label: str) -> str:
    return "\n".join(line for line in source_text.splitlines() if not line.endswith(f":{label}")) + "\n"


def test_a_class_with_test_cases_but_no_training_case_is_refused(tmp_path):
    train = tmp_path / "BasicMotions_TRAIN.ts"
    train.write_text(_without_class(BASIC_MOTIONS_TRAIN.read_text(), "Badminton"))
    test = FIXTURES / "BasicMotions" / "BasicMotions_TEST.ts.gz"
    with pytest.raises(TsFormatError, match=r"the class 'Badminton' has 10 test case\(s\) \(the first is case 30\) "
                                            r"but no training case") as caught:
        load_uea(train_path=train, test_path=test)
    assert_names_location(caught.value, test, None)
    assert str(train) in str(caught.value)


def test_a_declared_class_with_no_case_at_all_is_warned_about_and_described(tmp_path, caplog):
    paths = {}
    for split, source in (("TRAIN", BASIC_MOTIONS_TRAIN), ("TEST", FIXTURES / "BasicMotions" / "BasicMotions_TEST.ts.gz")):
        text = gzip.decompress(source.read_bytes()).decode() if source.suffix == ".gz" else source.read_text()
        paths[split] = tmp_path / f"BasicMotions_{split}.ts"
        paths[split].write_text(_without_class(text, "Badminton"))
    with caplog.at_level(logging.WARNING):
        dataset = load_uea(train_path=paths["TRAIN"], test_path=paths["TEST"])
    assert dataset["train"].features["label"].names == ["Standing", "Running", "Walking", "Badminton"]
    expected = "The class(es) 'Badminton', declared by the @classLabel header, have no series in any split"
    assert expected in caplog.text and str(paths["TRAIN"]) in caplog.text
    assert "remove them from the @classLabel header" in caplog.text
    assert expected in dataset["train"].info.description  # and so in the model card
