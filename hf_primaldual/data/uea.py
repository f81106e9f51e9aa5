"""Reader for the `.ts` files of the UEA multivariate time-series classification archive, and a `datasets` loader.

The `.ts` format (sktime/aeon; Bagnall et al., "The UEA multivariate time series classification archive, 2018",
arXiv:1811.00075) is a text file in three parts:

```
# comment lines start with '#'
@problemName JapaneseVowels
@timeStamps false
@missing false
@univariate false
@dimensions 12
@equalLength false
@classLabel true 1 2 3 4 5 6 7 8 9
@data
1.86,1.89,...:-0.21,-0.19,...:...:1
```

After `@data` every line is one case: the channels separated by `:`, the values of a channel separated by `,`,
the class label last. Cases may have different lengths (`@equalLength false`); the channels of one case may not.
Under `@equalLength true` every case must have the same length; where that length is not the header's
`@seriesLength` the reader follows the data and warns (`read_ts`).
"""

from __future__ import annotations

import codecs
import gzip
import logging
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import datasets
import numpy as np

from .schema import classes_without_training_cases, series_dataset, series_features, warn_about_empty_classes


logger = logging.getLogger(__name__)

SHIPPED_UEA_DIR = Path(__file__).resolve().parent.parent / "resources"
"""Folder of the `.ts` files shipped with the package (JapaneseVowels, the project's default dataset)."""

UEA_DIR_ENV = "HF_PRIMALDUAL_UEA_DIR"
"""Environment variable naming the folder `load_uea(name)` reads when no `data_dir` is given."""

UEA_CITATION = """@article{bagnall2018uea,
  title   = {The {UEA} multivariate time series classification archive, 2018},
  author  = {Bagnall, Anthony and Dau, Hoang Anh and Lines, Jason and Flynn, Michael and Large, James and
             Bostrom, Aaron and Southam, Paul and Keogh, Eamonn},
  journal = {arXiv preprint arXiv:1811.00075},
  year    = {2018}
}"""

# Header tags stored as they are, by the _Header field they fill.
_HEADER_FIELDS = {
    "@missing": "missing",
    "@univariate": "univariate",
    "@equallength": "equal_length",
    "@dimensions": "dimensions",
    "@serieslength": "series_length",
}
_BOOLEAN_TAGS = ("@timestamps", "@missing", "@univariate", "@equallength")
_KNOWN_TAGS = ("@problemname", "@timestamps", *_HEADER_FIELDS, "@classlabel", "@data")
# The series are stored as float32: a value beyond this would silently become inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# How many (line, channel) places a warning lists before it only counts them.
_PLACES_SHOWN = 5
# How much of a file's start `_check_text` reads to tell text from what is not.
_SNIFFED_BYTES = 4096
# Byte-order marks of the text encodings a .ts file must not be in; UTF-32's first, as UTF-16-LE's is its prefix.
_WIDE_ENCODINGS = (
    ("UTF-32", (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)),
    ("UTF-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)),
)
# The first bytes of files given as text by mistake: (magic, what the file is, the fix; {kind} is the text format).
_BINARY_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed", "Decompress it{gz_hint}."),
    (b"PK\x03\x04", "a zip archive", "Extract the {kind} files from it and give those."),
    (b"PAR1", "a Parquet table", "Give it with its .parquet suffix, or export it as {kind} text."),
    (b"\x93NUMPY", "a NumPy array", "Give it with its .npy suffix, or export it as {kind} text."),
)


class TsFormatError(ValueError):
    """A `.ts` file that does not follow the format. The message reads `<file>, line <n>: <problem>. <fix>`."""

    def __init__(self, path: str | os.PathLike, line_number: int | None, problem: str, fix: str):
        self.path = Path(path)
        self.line_number = line_number
        location = f"{self.path}, line {line_number}" if line_number is not None else str(self.path)
        super().__init__(f"{location}: {problem}. {fix}")


@dataclass
class TsSplit:
    """One parsed `.ts` file.

    Attributes:
        problem_name: the `@problemName` of the header.
        class_names: the labels of `@classLabel`, in header order.
        series: one float32 array of shape (time, channels) per case; missing values already filled (see `read_ts`).
        labels: per case, the index of its label in `class_names`.
        path: the file it was read from.
    """

    problem_name: str
    class_names: list[str]
    series: list[np.ndarray]
    labels: list[int]
    path: Path

    def __len__(self) -> int:
        return len(self.series)

    @property
    def num_channels(self) -> int:
        return self.series[0].shape[1]


@dataclass
class _Header:
    problem_name: str | None = None
    univariate: bool | None = None
    dimensions: int | None = None
    equal_length: bool | None = None
    series_length: int | None = None
    missing: bool | None = None
    class_names: list[str] | None = None


def read_ts(path: str | os.PathLike) -> TsSplit:
    """Parse one `.ts` (or gzipped `.ts.gz`) file of the UEA archive.

    Missing values, written `?` or `NaN`, are filled so that every series is finite:

    - inside a channel, by linear interpolation along time between the nearest observed values;
    - at the start or end of a channel, with the nearest observed value of that channel;
    - a channel with no observed value in a case is filled with 0.0. That is 0 in the file's units, which is the
      channel mean only for data that are already standardised (as many UEA sets are); otherwise drop such cases.
      These channels are always reported in a warning, by line and channel.

    Under `@equalLength true` all cases must have the same length. A `@seriesLength` that no case has while all
    cases agree (e.g. a header one step short of every case) is taken as a slip of the header: the cases are read
    as they are, with a warning naming the file and both lengths.

    Args:
        path: the `.ts` or `.ts.gz` file.

    Returns:
        A `TsSplit` whose `series[i]` is a float32 array of shape (time_i, channels).

    Raises:
        FileNotFoundError: `path` does not exist.
        TsFormatError: the file breaks the format, or a `.gz` file is truncated; the message names the file, the
            line, and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No .ts file at {path}.")
    header = _Header()
    series: list[np.ndarray] = []
    labels: list[int] = []
    line_numbers: list[int] = []
    num_interpolated = 0
    zero_filled: list[str] = []
    try:
        _check_text(path)
        with _open_text(path) as handle:
            lines = _numbered_lines(handle)
            last_header_line = _read_header(path, lines, header)
            # Multivariate files always carry @dimensions; univariate ones may leave it out.
            num_channels = header.dimensions if header.dimensions is not None else (1 if header.univariate else None)
            label_index = {name: index for index, name in enumerate(header.class_names)}
            for line_number, line in lines:
                values, label = _parse_case(path, line_number, line, num_channels, header, label_index)
                num_channels = values.shape[1]
                missing = np.isnan(values)
                if missing.any():
                    values, empty_channels = _fill_missing(values, missing)
                    num_interpolated += int(missing.sum()) - len(empty_channels) * len(values)
                    zero_filled += [f"line {line_number} channel {channel}" for channel in empty_channels]
                series.append(values.astype(np.float32))
                labels.append(label)
                line_numbers.append(line_number)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise TsFormatError(
            path,
            None,
            f"the gzip file is truncated or corrupt ({error})",
            "Download or compress the file again (`gzip -t <file>` checks it).",
        ) from error
    if not series:
        raise TsFormatError(
            path, last_header_line, "no case after @data", "Add one line per case after the @data line."
        )
    _check_lengths(path, header, [len(values) for values in series], line_numbers)
    if num_interpolated:
        # A header that says `@missing false` while the data has gaps deserves to be seen, not just logged.
        log = logger.warning if header.missing is False else logger.info
        log(
            "%s: filled %d missing values by linear interpolation along time (the nearest observed value before "
            "a channel's first or after its last observation).",
            path,
            num_interpolated,
        )
    if zero_filled:
        # 0.0 is a guess about the data's units, so it is always shown, whatever @missing says.
        shown = ", ".join(zero_filled[:_PLACES_SHOWN]) + (", ..." if len(zero_filled) > _PLACES_SHOWN else "")
        logger.warning(
            "%s: %d channel(s) of a case have no observed value and were filled with 0.0: %s. 0.0 is in the "
            "file's units, the channel mean only for standardised data; drop these cases otherwise.",
            path,
            len(zero_filled),
            shown,
        )
    problem_name = header.problem_name or path.name.split(".")[0].rsplit("_", 1)[0]
    return TsSplit(problem_name, list(header.class_names), series, labels, path)


def load_uea(
    name: str | None = None,
    *,
    data_dir: str | os.PathLike | None = None,
    train_path: str | os.PathLike | None = None,
    test_path: str | os.PathLike | None = None,
) -> datasets.DatasetDict:
    """Load a UEA problem as a `DatasetDict` with splits `train` and `test`.

    Give either `name`, read from `<data_dir>/<name>/<name>_{TRAIN,TEST}.ts` (or `.ts.gz`, or directly
    `<data_dir>/<name>_{TRAIN,TEST}.ts`), or both `train_path` and `test_path`.

    The series are returned as stored (missing values filled as `read_ts` documents): standardisation is the
    feature extractor's job, fitted on the training split only.

    Args:
        name: problem name, e.g. `"JapaneseVowels"`.
        data_dir: folder of the archive; defaults to `$HF_PRIMALDUAL_UEA_DIR`, else the shipped `SHIPPED_UEA_DIR`
            (which holds JapaneseVowels only).
        train_path: explicit training file, instead of `name`.
        test_path: explicit test file, instead of `name`.

    Returns:
        `DatasetDict` whose splits have the columns `past_values` (float32, shape (time, channels), time varies
        per row), `length` (int32, the number of time steps, e.g. to pick `max_sequence_length`) and `label`
        (`ClassLabel` with the training header's class names, in its order). `info.dataset_name` is the problem
        name.
    """
    if name is not None and (train_path is not None or test_path is not None):
        raise ValueError("Give either `name` or `train_path`/`test_path`, not both.")
    if name is None:
        if train_path is None or test_path is None:
            raise ValueError("Give a problem `name`, or both `train_path` and `test_path`.")
    else:
        root = Path(data_dir if data_dir is not None else os.environ.get(UEA_DIR_ENV, SHIPPED_UEA_DIR))
        train_path = _find_split_file(root, name, "TRAIN")
        test_path = _find_split_file(root, name, "TEST")
    train, test = read_ts(train_path), read_ts(test_path)

    if test.num_channels != train.num_channels:
        raise TsFormatError(
            test.path,
            None,
            f"the test cases have {test.num_channels} channels but the training cases in {train.path} have "
            f"{train.num_channels}",
            "Use the TRAIN and TEST files of the same problem.",
        )
    unknown = [label for label in test.class_names if label not in train.class_names]
    if unknown:
        raise TsFormatError(
            test.path,
            None,
            f"the test @classLabel lists {unknown}, which the training file {train.path} does not "
            f"(it has {train.class_names})",
            "Use the TRAIN and TEST files of the same problem.",
        )
    # The headers may list the same classes in another order: express test labels in the training order.
    test_labels = [train.class_names.index(test.class_names[label]) for label in test.labels]
    for _, label, count, first in classes_without_training_cases(train.labels, {"test": test_labels})[:1]:
        raise TsFormatError(
            test.path,
            None,
            f"the class {train.class_names[label]!r} has {count} test case(s) (the first is case {first}) but no "
            f"training case in {train.path}, so a model cannot learn it",
            "Drop those cases or move some to the training file.",
        )
    empty_note = warn_about_empty_classes(
        train.class_names, [[train.class_names[label] for label in split] for split in (train.labels, test_labels)],
        "the @classLabel header", str(train.path),
    )

    features = series_features(train.num_channels, train.class_names)
    info = datasets.DatasetInfo(
        dataset_name=train.problem_name,
        description=(
            f"UEA multivariate time-series classification problem {train.problem_name}: "
            f"{train.num_channels} channels, {len(train.class_names)} classes. Values as in the .ts files "
            "(not standardised); missing values filled by linear interpolation along time, a channel with no "
            "observed value in a case by 0.0." + (f" {empty_note}" if empty_note else "")
        ),
        citation=UEA_CITATION,
        features=features,
    )

    return datasets.DatasetDict(
        train=series_dataset(train.series, train.labels, features, info, "train"),
        test=series_dataset(test.series, test_labels, features, info, "test"),
    )


def _find_split_file(root: Path, name: str, split: str) -> Path:
    candidates = [
        folder / f"{name}_{split}{suffix}" for folder in (root / name, root) for suffix in (".ts", ".ts.gz")
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = _available_problems(root)
    raise FileNotFoundError(
        f"No {split} file for UEA problem {name!r}: tried {', '.join(str(c) for c in candidates)}. "
        f"Problems available under {root}: {', '.join(available) if available else 'none'}. "
        f"Pass data_dir=, set ${UEA_DIR_ENV}, or give train_path=/test_path= explicitly."
    )


def _available_problems(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    names = {
        path.name.rsplit("_TRAIN.ts", 1)[0]
        for pattern in ("*_TRAIN.ts", "*_TRAIN.ts.gz", "*/*_TRAIN.ts", "*/*_TRAIN.ts.gz")
        for path in root.glob(pattern)
    }
    return sorted(names)


def _check_text(path: Path) -> None:
    """Refuse (`TsFormatError`) a `.ts` file that is not UTF-8 text (see `text_file_problem`): read as UTF-8, it
    would only fail later as "a data line comes before the @data line", which names the wrong problem."""
    problem = text_file_problem(path)
    if problem is not None:
        raise TsFormatError(path, None, *problem)


def text_file_problem(path: Path) -> tuple[str, str] | None:
    """``(problem, fix)`` when ``path``, a file of a text format (`.ts`, `.csv`, `.json`...; a `.gz` file read
    decompressed), is not UTF-8 text: UTF-16 or UTF-32 (what some Windows editors and PowerShell's `>` save), a
    compressed or binary file; None when it may be UTF-8 text. Only the first bytes are read."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        head = handle.read(_SNIFFED_BYTES)
    kind = (path.suffixes[-2] if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix) or "text"
    read = f"gunzip -c {path.name} | iconv -f {{}}" if path.suffix == ".gz" else f"iconv -f {{}} {path.name}"
    fix = f"Save it as UTF-8 text (e.g. `{read} -t UTF-8 > fixed{kind}`), or export it again as UTF-8."
    for encoding, marks in _WIDE_ENCODINGS:
        if head.startswith(marks):
            return f"the file is {encoding} text (its byte-order mark), not UTF-8", fix.format(encoding)
    for magic, what, remedy in _BINARY_MAGIC:
        if head.startswith(magic):
            gz_hint = f", or name it with the suffix {kind}.gz (read as it is)" if kind == ".ts" else ""
            return f"the file is {what}, not {kind} text", remedy.format(kind=kind, gz_hint=gz_hint)
    if b"\0" in head:
        # UTF-16 without a byte-order mark: ASCII text with a zero byte beside every character.
        for encoding, zeros in (("UTF-16-LE", head[1::2]), ("UTF-16-BE", head[::2])):
            if zeros and zeros.count(0) > 0.9 * len(zeros):
                return f"the file is {encoding} text (a zero byte beside every character), not UTF-8", fix.format(encoding)
        return (
            f"the file is not text: it holds zero bytes (it starts with {head[:16]!r})",
            f"Give the {kind} text file itself (UTF-8), not a binary or compressed one; a gzipped file must end in .gz.",
        )
    return None


def _open_text(path: Path) -> TextIO:
    # utf-8-sig drops a byte-order mark; `replace` keeps odd bytes in free-text comments from failing the read
    # (a replaced character inside the data still fails as a non-numeric value, with its line).
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", errors="replace")
    return open(path, encoding="utf-8-sig", errors="replace")


def _numbered_lines(handle: TextIO) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, stripped line), skipping blank and `#` comment lines."""
    for line_number, line in enumerate(handle, start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield line_number, line


def _read_header(path: Path, lines: Iterator[tuple[int, str]], header: _Header) -> int:
    """Consume the header up to and including `@data`, filling `header`; return the line number of `@data`."""
    line_number = 0
    for line_number, line in lines:
        if not line.startswith("@"):
            raise TsFormatError(
                path,
                line_number,
                "a data line comes before the @data line",
                "Put the header (@problemName ... @classLabel) and an @data line before the cases.",
            )
        tag, _, value = line.partition(" ")
        tag, value = tag.lower(), value.strip()
        if tag == "@data":
            if header.class_names is None:
                raise TsFormatError(
                    path,
                    line_number,
                    "the header has no @classLabel line",
                    "Add `@classLabel true <label> <label> ...` listing every class before @data.",
                )
            return line_number
        if tag == "@problemname":
            header.problem_name = value
        elif tag == "@classlabel":
            header.class_names = _parse_class_labels(path, line_number, value)
        elif tag == "@timestamps":
            if _parse_boolean(path, line_number, tag, value):
                raise TsFormatError(
                    path,
                    line_number,
                    "time-stamped data (@timeStamps true) is not supported",
                    "Convert the cases to plain comma-separated values (one value per time step) and set "
                    "@timeStamps false.",
                )
        elif tag in _HEADER_FIELDS:
            parse = _parse_boolean if tag in _BOOLEAN_TAGS else _parse_positive_int
            setattr(header, _HEADER_FIELDS[tag], parse(path, line_number, tag, value))
        elif tag == "@targetlabel":
            raise TsFormatError(
                path,
                line_number,
                "this is a regression file (@targetLabel); only classification files are supported",
                "Use a classification problem, whose header has `@classLabel true <labels...>`.",
            )
        else:
            raise TsFormatError(
                path,
                line_number,
                f"unknown header tag {tag!r}",
                f"Header tags are {', '.join(_KNOWN_TAGS)} (case-insensitive); fix or remove the line.",
            )
    raise TsFormatError(
        path, line_number, "the file has no @data line", "End the header with a line `@data` followed by the cases."
    )


def _parse_boolean(path: Path, line_number: int, tag: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise TsFormatError(
            path, line_number, f"{tag} must be true or false, not {value!r}", f"Write `{tag} true` or `{tag} false`."
        )
    return value.lower() == "true"


def _parse_positive_int(path: Path, line_number: int, tag: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise TsFormatError(
            path, line_number, f"{tag} must be a positive integer, not {value!r}", f"Write e.g. `{tag} 12`."
        )
    return int(value)


def _parse_class_labels(path: Path, line_number: int, value: str) -> list[str]:
    flag, *names = value.split() or [""]
    if flag.lower() != "true" or not names:
        raise TsFormatError(
            path,
            line_number,
            f"`@classLabel {value}` lists no class labels; only classification files are supported",
            "Write `@classLabel true <label> <label> ...` listing every class.",
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TsFormatError(
            path, line_number, f"@classLabel lists {duplicates} more than once", "List each class label once."
        )
    return names


def _parse_case(
    path: Path,
    line_number: int,
    line: str,
    num_channels: int | None,
    header: _Header,
    label_index: dict[str, int],
) -> tuple[np.ndarray, int]:
    """Parse one data line into (values of shape (time, channels) with NaN where missing, label index)."""
    *channel_texts, label = line.split(":")
    label = label.strip()
    if num_channels is not None and len(channel_texts) != num_channels:
        if header.dimensions is not None:
            source = "@dimensions"
        else:
            source = "@univariate true" if header.univariate else "the first case"
        raise TsFormatError(
            path,
            line_number,
            f"found {len(channel_texts)} channels but {source} says {num_channels}",
            f"Write each case as {num_channels} channels separated by ':' followed by ':<class label>'.",
        )
    if not channel_texts:
        raise TsFormatError(
            path,
            line_number,
            "the case has no ':' separating its values from the class label",
            "Write each case as its channels separated by ':' followed by ':<class label>'.",
        )
    channels = [_parse_channel(path, line_number, index, text) for index, text in enumerate(channel_texts, 1)]
    lengths = [len(channel) for channel in channels]
    if len(set(lengths)) > 1:
        raise TsFormatError(
            path,
            line_number,
            f"the channels of this case have different lengths {lengths}",
            "Give every channel of a case one value per time step; mark absent values with '?'.",
        )
    if label not in label_index:
        raise TsFormatError(
            path,
            line_number,
            f"class label {label!r} is not in the header's @classLabel list {list(label_index)}",
            "Fix the label, or add it to the @classLabel line.",
        )
    return np.stack(channels, axis=1), label_index[label]


def _check_lengths(path: Path, header: _Header, lengths: list[int], line_numbers: list[int]) -> None:
    """Refuse cases of different lengths under `@equalLength true`; warn when they agree on a length other than
    `@seriesLength` (a header slip: the archive's own readers follow the data too)."""
    if not header.equal_length:
        return
    declared = header.series_length
    # A declared length that some case has is the one to hold the others to; else the first case's.
    reference = declared if declared in lengths else lengths[0]
    odd = next((index for index, length in enumerate(lengths) if length != reference), None)
    if odd is not None:
        if reference == declared:
            problem = f"the case has {lengths[odd]} time steps but @seriesLength says {declared}"
        else:
            problem = (
                f"the case has {lengths[odd]} time steps but the first case (line {line_numbers[0]}) has "
                f"{lengths[0]}, and the header says @equalLength true"
            )
            if declared is not None:
                problem += f" (its @seriesLength {declared} matches no case)"
        raise TsFormatError(
            path,
            line_numbers[odd],
            problem,
            "Fix the case, or declare `@equalLength false` and drop @seriesLength if the cases differ in length.",
        )
    if declared is not None and declared != reference:
        logger.warning(
            "%s: @seriesLength says %d but every case has %d time steps; reading the cases as they are. Write "
            "`@seriesLength %d` in the header to silence this.",
            path,
            declared,
            reference,
            reference,
        )


def _parse_channel(path: Path, line_number: int, channel: int, text: str) -> np.ndarray:
    """Parse the comma-separated values of one channel (`channel` counts from 1), `?` and `NaN` becoming NaN."""
    tokens = text.split(",")
    try:
        values = np.array(["nan" if token.strip() == "?" else token for token in tokens], dtype=np.float64)
    except ValueError:
        position, token = next(
            (position, token) for position, token in enumerate(tokens, 1) if not _is_number(token)
        )
        raise TsFormatError(
            path,
            line_number,
            f"value {position} of channel {channel} (counting from 1) is {token!r}, not a number",
            "Write values as decimal numbers separated by ',' and missing values as '?' or NaN.",
        ) from None
    # NaN compares False, so missing values pass; inf and finite values beyond float32 do not.
    out_of_range = np.abs(values) > _FLOAT32_MAX
    if out_of_range.any():
        position = int(np.flatnonzero(out_of_range)[0]) + 1
        token = tokens[position - 1].strip()
        if "inf" in token.lower():
            problem, fix = "infinite", "Replace it with a finite number, or with '?' to mark it missing."
        else:
            problem = (
                f"{token!r}, which overflows float32 (largest magnitude {_FLOAT32_MAX:.7g}), the type the series "
                "are stored in"
            )
            fix = "Rescale the channel in the file (e.g. write it in larger units), or write '?' to mark it missing."
        raise TsFormatError(
            path, line_number, f"value {position} of channel {channel} (counting from 1) is {problem}", fix
        )
    return values


def _is_number(token: str) -> bool:
    if token.strip() == "?":
        return True
    try:
        float(token)
    except ValueError:
        return False
    return True


def _fill_missing(values: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Fill the NaNs of `values` (time, channels) channel by channel, as `read_ts` documents; return the filled
    values and the channels (counting from 1) that had no observed value and were set to 0.0."""
    filled = values.copy()
    time = np.arange(len(values))
    empty_channels = []
    for channel in np.flatnonzero(missing.any(axis=0)):
        observed = ~missing[:, channel]
        if observed.any():
            # Beyond the first/last observed step np.interp holds that value: the nearest-value edge fill.
            filled[:, channel] = np.interp(time, time[observed], values[observed, channel])
        else:
            filled[:, channel] = 0.0
            empty_channels.append(int(channel) + 1)
    return filled, empty_channels
