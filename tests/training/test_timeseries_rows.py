"""The rows the time-series Trainer reads: the split's own rows, read out of Arrow once when the split is small."""

from __future__ import annotations

import numpy as np
import pytest

from hf_primaldual.data import load_uea
from hf_primaldual.training import timeseries as training_timeseries


@pytest.fixture(scope="module")
def train_split():
    return load_uea("JapaneseVowels")["train"]


def _assert_rows_equal(rows, split) -> None:
    assert len(rows) == len(split)
    for index in (0, 1, len(split) // 2, len(split) - 1):
        expected = split[index]  # Arrow's own row, as Python lists
        row = rows[index]
        assert set(row) == set(expected)
        np.testing.assert_array_equal(row["past_values"], np.asarray(expected["past_values"], dtype=np.float32))
        assert row["past_values"].shape == (expected["length"], 12)
        assert int(row["label"]) == expected["label"] and int(row["length"]) == expected["length"]


def test_a_small_split_is_read_out_once_into_its_rows(train_split):
    rows = training_timeseries.as_rows(train_split)
    assert isinstance(rows, list)
    _assert_rows_equal(rows, train_split)


def test_a_large_split_stays_in_arrow(train_split, monkeypatch):
    monkeypatch.setattr(training_timeseries, "IN_MEMORY_ROWS_MAX_BYTES", train_split.data.nbytes - 1)
    rows = training_timeseries.as_rows(train_split)
    assert rows.format["type"] == "numpy" and rows.data.table is train_split.data.table  # the same Arrow table
    _assert_rows_equal(rows, train_split)
