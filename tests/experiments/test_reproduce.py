"""Smoke runs of the reproduction scripts (tiny budgets on the shipped data) and the head-redundancy measure
against its formula written out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from hf_primaldual import (
    PrimalDualTimeSeriesConfig,
    PrimalDualTimeSeriesFeatureExtractor,
    PrimalDualTimeSeriesForClassification,
)
from experiments.analysis import pairwise_head_distance
from helpers import FIXTURES
from helpers import REPO_ROOT as REPO
from hf_primaldual.data.uea import load_uea

TINY_TIMESERIES = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "8",
                   "--intermediate_size", "32"]


def run(script: str, *args: str) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / script), *args], capture_output=True, text=True,
                            timeout=400, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout


def test_pairwise_head_distance_matches_the_formula():
    torch.manual_seed(0)
    attention = torch.rand(2, 3, 5, 5).softmax(-1)
    query_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    expected = []
    for b in range(2):
        queries = [i for i in range(5) if query_mask[b, i]]
        pairs = [(h, g) for h in range(3) for g in range(h + 1, 3)]
        per_pair = [
            sum(float(torch.sqrt(((attention[b, h, i] - attention[b, g, i]) ** 2).sum())) for i in queries)
            / len(queries)
            for h, g in pairs
        ]
        expected.append(sum(per_pair) / len(pairs))
    torch.testing.assert_close(pairwise_head_distance(attention, query_mask), torch.tensor(expected))
    identical = attention[:, :1].expand(-1, 3, -1, -1)
    assert torch.all(pairwise_head_distance(identical) == 0)


@pytest.mark.slow  # training runs
def test_reproduce_uea_smoke_resumes_and_renders(tmp_path):
    args = ["--data_dir", str(REPO / "hf_primaldual" / "resources"), "--datasets", "JapaneseVowels",
            "--types", "bn_sh", "--seeds", "0", "--epochs", "1", "--results", str(tmp_path / "runs.jsonl"),
            "--report_dir", str(tmp_path), "--work_dir", str(tmp_path / "work"), "--reruns", "--", *TINY_TIMESERIES]
    run("reproduce_uea.py", *args)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [(r["dataset"], r["attention_type"]) for r in runs] == [("JapaneseVowels", "bn_sh")]
    assert runs[0]["head_scales"] == [1, 1, 1, 2, 2, 2, 4, 4]
    output = run("reproduce_uea.py", *args)  # everything done: nothing runs again
    assert "0 to go" in output
    table = (tmp_path / "uea_table.md").read_text()
    assert "| JapaneseVowels | 98.7 |" in table and "average over 1 complete sets" in table
    assert (tmp_path / "uea_accuracy.png").stat().st_size > 5_000
    assert "| bn_sh | final | 0 (0) |" in (tmp_path / "uea_paired.md").read_text()  # no softmax run to pair with
    (folder,) = (tmp_path / "work").iterdir()
    assert not list(folder.glob("checkpoint-*"))  # a recorded run's checkpoints are removed, its final model kept
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()


@pytest.mark.slow  # training runs
def test_reproduce_uea_goes_on_from_an_interrupted_run(tmp_path):
    """A run cut short after its first epoch (here: its first epoch run by hand into the run's folder) is resumed
    from that checkpoint, and its best epoch is taken over both epochs."""
    data_dir = str(REPO / "hf_primaldual" / "resources")
    interrupted = tmp_path / "work" / "JapaneseVowels-softmax-seed0-2ep"
    # the run's own settings (softmax, seed 0): a checkpoint of other model settings or training arguments is
    # refused, not resumed
    run("train_timeseries.py", "--data_dir", data_dir, "--output_dir", str(interrupted), "--num_train_epochs", "1",
        "--save_strategy", "epoch", "--attention_type", "softmax", "--seed", "0", *TINY_TIMESERIES)
    assert (interrupted / "checkpoint-17").is_dir()
    output = run("reproduce_uea.py", "--data_dir", data_dir, "--datasets", "JapaneseVowels", "--types", "softmax",
                 "--seeds", "0", "--epochs", "2", "--results", str(tmp_path / "runs.jsonl"), "--report_dir",
                 str(tmp_path), "--work_dir", str(tmp_path / "work"), "--", *TINY_TIMESERIES)
    assert "resuming from" in output and "checkpoint-17" in output
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["epochs"] == 2 and 0 < record["test_accuracy_best_epoch"] <= 1


@pytest.mark.slow  # training runs
def test_reproduce_images_smoke_with_conversion(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fashion-mnist").symlink_to(FIXTURES / "fashion-mnist-sample")
    run("reproduce_images.py", "--data_root", str(tmp_path / "data"), "--datasets", "fashion-mnist",
        "--types", "softmax", "--seeds", "0", "--epochs", "1", "--train_samples", "16", "--test_samples", "16",
        "--results", str(tmp_path / "runs.jsonl"), "--report_dir", str(tmp_path), "--work_dir", str(tmp_path / "work"))
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["experiment"] for r in runs] == ["scratch", "conversion"]
    converted = json.loads((tmp_path / "work" / "fashion-mnist-transformers-vit" / "config.json").read_text())
    assert converted["model_type"] == "vit"  # the conversion starts from a genuine transformers ViT checkpoint
    assert "Conversion" in (tmp_path / "image_table.md").read_text()
    run("reproduce_images.py", "--budget", "full", "--data_root", str(tmp_path / "data"), "--datasets",
        "fashion-mnist", "--types", "softmax", "--seeds", "0", "--epochs", "1", "--results",
        str(tmp_path / "runs.jsonl"), "--report_dir", str(tmp_path), "--work_dir", str(tmp_path / "work"))
    full = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()][2:]
    assert [(r["budget"], r["patch_size"], r["train_samples"]) for r in full] == [("full", 8, "all")]
    assert "| fashion-mnist |" in (tmp_path / "image_full_table.md").read_text()
    assert (tmp_path / "image_full_accuracy.png").stat().st_size > 5_000
    assert "Conversion" in (tmp_path / "image_table.md").read_text()  # the small budget's table left as it was


@pytest.mark.slow  # a training run
def test_head_redundancy_script(tmp_path):
    """On an untrained SH model with a class token, saved with its fitted feature extractor."""
    checkpoint = tmp_path / "model"
    train = load_uea("JapaneseVowels")["train"]
    PrimalDualTimeSeriesFeatureExtractor(max_sequence_length=29).fit(train["past_values"]).save_pretrained(checkpoint)
    config = PrimalDualTimeSeriesConfig(
        num_input_channels=12, max_sequence_length=29, hidden_size=16, num_hidden_layers=2, num_attention_heads=8,
        intermediate_size=32, attention_type="bn_sh", pooling="cls",
        id2label=dict(enumerate(train.features["label"].names)),
    )
    PrimalDualTimeSeriesForClassification(config).save_pretrained(checkpoint)
    run("head_redundancy.py", str(checkpoint), "--dataset", "JapaneseVowels", "--max_examples", "40",
        "--output_dir", str(tmp_path / "report"))
    results = json.loads((tmp_path / "report" / "head_redundancy.json").read_text())
    (result,) = results.values()
    assert result["examples"] == 40 and len(result["mean"]) == 2 and all(0 < m < 2**0.5 for m in result["mean"])
    assert (tmp_path / "report" / "attention_maps-model.png").exists()
    assert (tmp_path / "report" / "head_redundancy.png").exists()
    table = (tmp_path / "report" / "head_redundancy.md").read_text()
    row = f"| model (bn_sh) | – | {result['mean'][0]:.3f} ± {result['std'][0]:.3f} | "
    assert "| model | test accuracy | layer 1 | layer 2 |" in table and row in table


def test_accuracy_table_gives_mean_and_std_over_seeds(tmp_path):
    from experiments.analysis import render_accuracy_table

    runs = [{"dataset": "A", "attention_type": t, "test_accuracy_final": final, "test_accuracy_best_epoch": best}
            for t, final, best in [("softmax", 0.80, 0.90), ("softmax", 0.84, 0.92), ("bn", 0.86, 0.88)]]
    table = render_accuracy_table(runs, tmp_path, name="t", datasets=["A", "B"], types=["softmax", "bn"],
                                  published={"A": 81.0}, title="t")
    # sample std of 80 and 84 is 2.83; one seed has no spread; B has no runs
    assert "| A | 81.0 | 82.0 ± 2.8 (2) | 86.0 (1) |" in table and "| A | 81.0 | 91.0 ± 1.4 (2) | 88.0 (1) |" in table
    assert "| B | – | – | – |" in table and "average over 1 complete sets | 81.0 | 82.0 | 86.0 |" in table


def test_a_set_rerun_on_another_code_path_joins_the_table_whole(tmp_path):
    """The SCP sets re-run on the CPU kernel: a set whose every type is in replaces the grid's records of it (no row
    mixes code paths), an incomplete one stays out, and a complete long set pairs with the grid's seed 0."""
    from experiments.reproduce_uea import main

    def record(dataset: str, attention_type: str, accuracy: float) -> str:
        return json.dumps({"dataset": dataset, "attention_type": attention_type, "seed": 0,
                           "test_accuracy_final": accuracy, "test_accuracy_best_epoch": accuracy})

    grid = [record("JapaneseVowels", "softmax", 0.90), record("JapaneseVowels", "bn", 0.96),
            record("SelfRegulationSCP2", "softmax", 0.50), record("SelfRegulationSCP2", "bn", 0.52)]
    reruns = [record("SelfRegulationSCP1", "softmax", 0.80), record("SelfRegulationSCP1", "bn", 0.83),
              record("SelfRegulationSCP2", "softmax", 0.60)]
    (tmp_path / "grid.jsonl").write_text("\n".join(grid) + "\n")
    (tmp_path / "reruns.jsonl").write_text("\n".join(reruns) + "\n")
    assert main(["--render_only", "--datasets", "JapaneseVowels", "SelfRegulationSCP1", "SelfRegulationSCP2",
                 "--types", "softmax", "bn", "--seeds", "0", "--results", str(tmp_path / "grid.jsonl"),
                 "--reruns", str(tmp_path / "reruns.jsonl"), "--report_dir", str(tmp_path)]) == 0
    table = (tmp_path / "uea_table.md").read_text()
    assert "| SelfRegulationSCP1 | 92.2 | 80.0 (1) | 83.0 (1) |" in table
    assert "| SelfRegulationSCP2 | 53.9 | 50.0 (1) | 52.0 (1) |" in table  # its rerun is not complete: the grid's
    # seed 0 over the complete sets: JapaneseVowels +6 and SCP1 +3 points (SCP2 has no complete rerun, but the
    # grid's two cells are a complete pair too)
    paired = (tmp_path / "uea_seed0_paired.md").read_text()
    assert "| bn | final | 3 (3) | 3 / 0 / 0 | +3.67 [" in paired
