"""The time-series commands on data from anywhere, on real BasicMotions:

* data that cannot be read exits with status 2 and a message naming the place and the fix, before any training
  (the Trainer is never built) and without an output folder;
* a long CSV table trains, with the same seed, to the same accuracy epoch by epoch as the `.ts` files it was written
  from, and the evaluate command reads the CSV the same way;
* a Hub dataset (test Hub server) with string labels in another column and no test split trains in a fresh process,
  its card says how the test split was held out, and the evaluate command holds out the same one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from huggingface_hub import HfApi, ModelCard
from transformers import HfArgumentParser

from hf_primaldual import AttentionSettings, PrimalDualTimeSeriesConfig
from hf_primaldual.cli import evaluate_checkpoint as evaluate_script
from hf_primaldual.cli import train_timeseries as timeseries_script
from hf_primaldual.data import load_uea
from hf_primaldual.training import AttentionArguments, TimeSeriesAttentionArguments
from hf_primaldual.training import run as training_run

from helpers.hub_clients import client_environ

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BASIC_MOTIONS = FIXTURES / "BasicMotions"
HEADER_ORDER = ["Standing", "Running", "Walking", "Badminton"]
TINY = ["--num_train_epochs", "2", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "2",
        "--intermediate_size", "32", "--save_strategy", "no", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def basic_motions() -> datasets.DatasetDict:
    return load_uea(train_path=BASIC_MOTIONS / "BasicMotions_TRAIN.ts", test_path=BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")


def frames(dataset: datasets.DatasetDict, layout: str) -> dict[str, pd.DataFrame]:
    """Each split as a long table (id, t, c0..c5, label) or a nested one (c0..c5 lists, activity)."""
    out = {}
    for split, rows in dataset.with_format("numpy").items():
        names = [rows.features["label"].names[label] for label in rows["label"]]
        series = list(rows["past_values"])
        if layout == "long":
            table = pd.DataFrame(np.concatenate(series), columns=[f"c{c}" for c in range(6)])
            table.insert(0, "t", np.tile(np.arange(100), len(series)))
            table.insert(0, "id", np.repeat([f"{split}-{i}" for i in range(len(series))], 100))
            table["label"] = np.repeat(names, 100)
        else:
            table = pd.DataFrame({f"c{c}": [values[:, c].tolist() for values in series] for c in range(6)})
            table["activity"] = names
        out[split] = table
    return out


# ------------------------------------------------------------------------------------------------ refused data


def write_bad(case: str, folder: Path, dataset: datasets.DatasetDict) -> list[str]:
    """Write the data of `case` into `folder`; the command-line arguments that read it."""
    long = frames(dataset, "long")
    long_args = ["--series_id_column", "id", "--time_column", "t"]
    if case in ("missing-label", "missing-id"):
        long["train"].to_csv(folder / "train.csv", index=False)
        extra = ["--label_column", "class"] if case == "missing-label" else ["--series_id_column", "series"]
        return ["--dataset", str(folder / "train.csv"), *(long_args if case == "missing-label" else []), *extra]
    if case == "non-numeric":
        table = long["train"].astype({"c3": object})
        table.loc[250, "c3"] = "1.5e"
        table.to_csv(folder / "train.csv", index=False)
        return ["--dataset", str(folder / "train.csv"), *long_args]
    if case in ("utf16-ts", "class-only-in-test-ts"):
        text = (BASIC_MOTIONS / "BasicMotions_TRAIN.ts").read_text()
        if case == "utf16-ts":
            (folder / "BasicMotions_TRAIN.ts").write_bytes(text.encode("utf-16"))  # as a Windows editor saves it
        else:
            (folder / "BasicMotions_TRAIN.ts").write_text(
                "".join(line for line in text.splitlines(True) if not line.rstrip().endswith(":Walking")))
        return ["--dataset", str(folder / "BasicMotions_TRAIN.ts"),
                "--test_file", str(BASIC_MOTIONS / "BasicMotions_TEST.ts.gz")]
    if case == "class-only-in-test":
        for split, table in long.items():
            (table[table["label"] != "Walking"] if split == "train" else table).to_csv(folder / f"{split}.csv", index=False)
        return ["--dataset", str(folder), *long_args]
    nested = frames(dataset, "nested")["train"]
    if case == "other-channels":
        nested = nested.drop(columns="c5").assign(c5=[values[:50] for values in nested["c5"]])
    elif case == "float-targets":
        nested["activity"] = np.linspace(0.1, 0.9, len(nested))
    if case == "ambiguous-array":  # aeon's (N, C, T), given without --array_layout
        series = np.stack(list(dataset["train"].with_format("numpy")["past_values"])).transpose(0, 2, 1)
        np.savez(folder / "arrays.npz", X=series, y=nested["activity"].to_numpy(dtype=str))
        return ["--dataset", str(folder / "arrays.npz")]
    nested.to_parquet(folder / "train.parquet")
    return ["--dataset", str(folder / "train.parquet"), "--label_column", "activity"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-label", r"has no column 'class'; its columns are id, t, c0, c1, c2, c3, c4, c5, label\. Give the "
                          r"right one with --label_column"),
        ("missing-id", r"has no column 'series'; its columns are id, t, .* --series_id_column"),
        ("non-numeric", r"row 250, column 'c3' holds '1.5e', which is not a number"),
        ("other-channels", r"row 0 has channels of different shapes \(c0 \(100,\), .*c5 \(50,\)\)"),
        ("class-only-in-test", r"the class 'Walking' \(series 'test-20' \(rows 2000\.\.\.\), 10 series in all\) is never "
                               r"in the training split"),
        ("class-only-in-test-ts", r"the class 'Walking' \(case 20, 10 series in all\) is never in the training split"),
        ("utf16-ts", r"BasicMotions_TRAIN\.ts: the file is UTF-16 text \(its byte-order mark\), not UTF-8\. Save it as "
                     r"UTF-8"),
        ("float-targets", r"row 0 has the label 0\.1, a number that is not whole: that is a regression target.*"
                          r"--class_names"),
        ("ambiguous-array", r"has shape \(40, 6, 100\): say which axis is time\. --array_layout NTC"),
    ],
)
def test_data_that_cannot_be_read_exits_2_before_training(case, expected, basic_motions, tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a Trainer was built for data that should have been refused")

    monkeypatch.setattr(training_run, "Trainer", no_training)
    argv = write_bad(case, tmp_path, basic_motions) + ["--output_dir", str(tmp_path / "out"), *TINY]
    code = timeseries_script.main(argv)
    stderr = capsys.readouterr().err  # the error, after the progress bars of datasets' file readers
    message = next((line for line in stderr.splitlines() if line.startswith("error: ")), stderr)
    assert code == 2 and re.search(expected, message), stderr
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()


def test_a_missing_local_file_exits_2_naming_it(tmp_path, capsys):
    code = timeseries_script.main(["--dataset", str(tmp_path / "steps.csv"), "--output_dir", str(tmp_path / "out")])
    message = capsys.readouterr().err
    assert code == 2 and "steps.csv: no such file or directory" in message and "Traceback" not in message


def test_parsing_the_command_line_leaves_the_attention_settings_alone(tmp_path):
    """HfArgumentParser rewrites the types of the fields it parses; the configs' strict checks read the types of
    AttentionSettings: after a command line is parsed, a config with the default head_scales=None still builds
    (it was refused with "expected a list, got NoneType", which stopped every training run)."""
    types = {item.name: item.type for item in fields(AttentionSettings)}
    for arguments in (TimeSeriesAttentionArguments, AttentionArguments):  # the time-series and the image command's
        HfArgumentParser(arguments).parse_args_into_dataclasses(args=[])
    assert {item.name: item.type for item in fields(AttentionSettings)} == types
    assert PrimalDualTimeSeriesConfig(num_input_channels=6, max_sequence_length=100).head_scales is None


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_a_long_csv_trains_as_its_ts_files_and_evaluates_alike(basic_motions, tmp_path, capsys):
    for split, table in frames(basic_motions, "long").items():  # the steps of each series shuffled, put back by t
        table.groupby("id", sort=False).sample(frac=1, random_state=1).to_csv(tmp_path / f"motions_{split}.csv", index=False)
    from_ts = timeseries_script.run(["--dataset", str(BASIC_MOTIONS), "--output_dir", str(tmp_path / "ts"), *TINY])
    csv_args = ["--series_id_column", "id", "--time_column", "t"]
    from_csv = timeseries_script.run([
        "--dataset", str(tmp_path), *csv_args, "--class_names", *HEADER_ORDER, "--output_dir", str(tmp_path / "csv"),
        *TINY,
    ])
    def history(metrics):
        return [(epoch["eval_loss"], epoch["eval_accuracy"]) for epoch in metrics["eval_history"]]

    assert history(from_csv) == history(from_ts) and len(history(from_ts)) == 2
    assert from_csv["test_accuracy_final"] == from_ts["test_accuracy_final"]
    card = (tmp_path / "csv" / "README.md").read_text()
    assert "Read from motions_train.csv, motions_test.csv. 6 channel(s), 4 classes." in card and str(tmp_path) not in card
    capsys.readouterr()
    evaluate_script.main([str(tmp_path / "csv"), str(tmp_path), *csv_args, "--output", str(tmp_path / "cm.png")])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["accuracy"] == pytest.approx(from_csv["test_accuracy_final"]) and summary["examples"] == 40


@pytest.mark.slow
def test_a_hub_dataset_with_string_labels_and_no_test_split_trains_in_a_fresh_process(basic_motions, hub_env, tmp_path):
    repo_id = hub_env.hub.new_repo_id("motions")
    api = HfApi(endpoint=hub_env.endpoint, token=hub_env.token)
    api.create_repo(repo_id, repo_type="dataset")
    nested = frames(basic_motions, "nested")
    table = pd.concat([nested["train"], nested["test"]], ignore_index=True)
    table.to_json(tmp_path / "motions.jsonl", orient="records", lines=True)
    api.upload_file(path_or_fileobj=tmp_path / "motions.jsonl", path_in_repo="data/train.jsonl", repo_id=repo_id,
                    repo_type="dataset")
    api.create_tag(repo_id, tag="v1", repo_type="dataset")
    data_args = [repo_id, "--dataset_revision", "v1", "--label_column", "activity", "--test_fraction", "0.25"]
    env = client_environ(hub_env.env)
    output = tmp_path / "out"
    trained = subprocess.run(
        [sys.executable, "-m", "hf_primaldual.cli.train_timeseries", "--dataset", *data_args, "--output_dir",
         str(output), *TINY], capture_output=True, text=True, env=env, timeout=600,
    )
    assert trained.returncode == 0, trained.stderr[-4000:]
    metrics = json.loads((output / "training_metrics.json").read_text())
    card = (output / "README.md").read_text()
    assert f"The Hub dataset {repo_id} at revision v1." in card
    assert "a stratified 0.25 of the series (20 of 80, seed 42) was held out as the test split" in card
    metadata = ModelCard(card).data
    assert metadata.datasets == [repo_id]  # the full Hub id, not its last segment
    assert metadata.eval_results[0].dataset_type == repo_id
    config = json.loads((output / "config.json").read_text())
    assert list(config["id2label"].values()) == sorted(HEADER_ORDER)  # the string labels, sorted
    evaluated = subprocess.run(
        [sys.executable, "-m", "hf_primaldual.cli.evaluate_checkpoint", str(output), *data_args, "--output",
         str(tmp_path / "cm.png")], capture_output=True, text=True, env=env, timeout=600,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-4000:]
    summary = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert summary["examples"] == 20 and summary["accuracy"] == pytest.approx(metrics["test_accuracy_final"])
