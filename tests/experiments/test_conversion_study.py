"""The conversion study: a tiny resumable run on the shipped JapaneseVowels (a 4-epoch softmax source converted to
bn and sh, fine-tuned 1 and 2 epochs), and its paired statistics against numbers written out by hand."""

from __future__ import annotations

import argparse
import json
from unittest import mock

import pytest
from safetensors.torch import load_file

from experiments import conversion_study
from experiments.conversion_study import FAMILIES, Unit, finetune_epochs, main, paired_rows, plan
from hf_primaldual.data import SHIPPED_UEA_DIR

TINY = ["--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "8", "--intermediate_size", "32"]


def test_finetune_lengths_are_the_protocols_fractions():
    assert finetune_epochs(100) == [10, 30]
    assert finetune_epochs(10) == [1, 3]
    assert finetune_epochs(4, [0.25, 0.5]) == [1, 2]
    assert finetune_epochs(2) == [1]  # at least one epoch, no repeats


def test_plan_puts_every_first_seed_first():
    units = plan(["vit", "mvts", "patchtst"], [0, 1], None)
    assert units[:6] == [("mvts", d, 0) for d in FAMILIES["mvts"].datasets]
    assert units[6] == ("patchtst", "JapaneseVowels", 0) and units[12] == ("vit", "fashion-mnist", 0)
    assert {s for _, _, s in units[:14]} == {0} and len(units) == 28


def _record(dataset, seed, attention_type, epochs, accuracy):
    return {"family": "mvts", "dataset": dataset, "seed": seed, "attention_type": attention_type,
            "finetune_epochs": epochs, "test_accuracy_final": accuracy}


def test_paired_rows_compare_with_the_control_and_with_scratch():
    records = [_record("A", 0, "bn", 1, 0.90), _record("B", 0, "bn", 1, 0.80),
               _record("A", 0, "softmax", 1, 0.70), _record("B", 0, "softmax", 1, 0.70)]
    scratch = {("A", "bn", 0): 0.85, ("B", "bn", 0): 0.85}
    rows = {row["comparison"]: row for row in paired_rows(records, scratch, ["bn"]) if row["finetune_epochs"] == 1}
    control, from_scratch = rows["converted vs softmax control"], rows["converted vs from scratch"]
    # differences written out: +20 and +10 points against the control, +5 and -5 against scratch
    assert (control["pairs"], control["wins"], control["losses"]) == (2, 2, 0)
    assert control["mean_difference"] == pytest.approx(15.0)
    assert (from_scratch["pairs"], from_scratch["wins"], from_scratch["losses"]) == (2, 1, 1)
    assert from_scratch["mean_difference"] == pytest.approx(0.0, abs=1e-9)
    assert from_scratch["attention_type"] == "bn"


@pytest.mark.slow  # trains a source and six fine-tunes
def test_study_records_each_cell_once_and_resumes(tmp_path):
    arguments = ["--families", "mvts", "--datasets", "JapaneseVowels", "--seeds", "0", "--types", "bn", "sh",
                 "--epochs", "4", "--fractions", "0.25", "0.5", "--data_dir", str(SHIPPED_UEA_DIR),
                 "--results", str(tmp_path / "runs.jsonl"), "--report_dir", str(tmp_path / "report"),
                 "--work_dir", str(tmp_path / "work"), "--grid_dir", str(tmp_path), "--", *TINY]
    # (d), the from-scratch cells, come from the grid's records: one of 4 epochs, and one of another length
    scratch = [{"dataset": "JapaneseVowels", "attention_type": "bn", "seed": 0, "epochs": epochs,
                "test_accuracy_final": accuracy} for epochs, accuracy in ((4, 0.5), (100, 0.99))]
    (tmp_path / "uea_runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in scratch))
    assert main(arguments) == 0
    records = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    cells = [(r["attention_type"], r["finetune_epochs"]) for r in records]
    assert sorted(cells) == sorted([("softmax", 0), ("bn", 0), ("sh", 0), ("bn", 1), ("bn", 2), ("sh", 1), ("sh", 2),
                                    ("softmax", 1), ("softmax", 2)])
    assert all(0 <= r["test_accuracy_final"] <= 1 for r in records)
    assert [r["learning_rate"] for r in records if r["finetune_epochs"]] == [pytest.approx(1e-4)] * 6

    # the conversion changes the attention and nothing else: the same weights under another attention_type
    work = tmp_path / "work" / "mvts" / "JapaneseVowels-seed0-4ep"
    source = load_file(work / "source-softmax" / "model.safetensors")
    for attention_type, scales in (("bn", None), ("sh", [1, 1, 1, 2, 2, 2, 4, 4])):
        config = json.loads((work / f"converted-{attention_type}" / "config.json").read_text())
        assert (config["attention_type"], config["head_scales"]) == (attention_type, scales)
        converted = load_file(work / f"converted-{attention_type}" / "model.safetensors")
        assert converted.keys() == source.keys() and all(converted[k].equal(source[k]) for k in source)

    # constant learning rate: epoch 1 of the 2-epoch fine-tune is what a 1-epoch fine-tune of its own reaches
    two = next(r for r in records if (r["attention_type"], r["finetune_epochs"]) == ("bn", 2))
    args = argparse.Namespace(epochs=4, data_dir=SHIPPED_UEA_DIR, work_dir=tmp_path / "again", extra=[])
    alone = Unit(FAMILIES["mvts"], "JapaneseVowels", 0, args).finetune(work / "converted-bn", "bn", 1)
    assert alone == [two["eval_history"][0]]

    with mock.patch.object(conversion_study.Unit, "train_source", side_effect=AssertionError("trained again")), \
            mock.patch.object(conversion_study.Unit, "finetune", side_effect=AssertionError("fine-tuned again")):
        assert main(arguments) == 0
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == len(records)

    table = (tmp_path / "report" / "conversion_table.md").read_text()
    assert table.count("| JapaneseVowels |") == 3  # softmax, bn, sh
    converted = next(r for r in records if (r["attention_type"], r["finetune_epochs"]) == ("bn", 0))
    # (b) against (d), from the 4-epoch grid cell only
    assert "| converted vs from scratch | bn | 0 | 1 (1) |" in table
    assert f"{100 * (converted['test_accuracy_final'] - 0.5):+.2f}" in table
    assert "| converted vs from scratch | sh |" not in table  # no sh cell in the grid
    assert "converted vs softmax control" in table
    assert (tmp_path / "report" / "conversion_mvts_curves.png").stat().st_size > 0

    # head redundancy of the source, each converted model before and after fine-tuning, and the control
    assert main([*arguments[:arguments.index("--")], "--head_redundancy",
                 "--redundancy_dir", str(tmp_path / "redundancy"), "--max_examples", "20"]) == 0
    rows = (tmp_path / "redundancy" / "head_redundancy.md").read_text().splitlines()[2:]
    assert [row.split(" | ")[1] for row in rows] == [
        "softmax source", "bn, converted", "bn, fine-tuned 2 ep", "sh, converted", "sh, fine-tuned 2 ep",
        "softmax control, fine-tuned 2 ep"]
    measured = json.loads((tmp_path / "redundancy" / "JapaneseVowels-seed0.json").read_text())
    assert all(0 <= value <= 2 ** 0.5 for result in measured.values() for value in result["mean"])
    assert measured["bn, converted"]["mean"] != measured["softmax source"]["mean"]  # the attention did change

    # a unit measured before is read back (a study of many units is not measured again whole for one new unit)
    with mock.patch("hf_primaldual.evaluation.load_checkpoint_data", side_effect=AssertionError("measured again")):
        assert main([*arguments[:arguments.index("--")], "--head_redundancy",
                     "--redundancy_dir", str(tmp_path / "redundancy"), "--max_examples", "20"]) == 0
    assert (tmp_path / "redundancy" / "head_redundancy.md").read_text().splitlines()[2:] == rows


@pytest.mark.slow  # trains a PatchTST source and two fine-tunes
def test_patchtst_is_converted_by_the_conversion_module_and_runs_the_family(tmp_path):
    from hf_primaldual import attention_interface

    arguments = ["--families", "patchtst", "--datasets", "JapaneseVowels", "--seeds", "0", "--types", "bn",
                 "--epochs", "1", "--fractions", "1", "--data_dir", str(SHIPPED_UEA_DIR),
                 "--results", str(tmp_path / "runs.jsonl"), "--report_dir", str(tmp_path / "report"),
                 "--work_dir", str(tmp_path / "work"), "--grid_dir", str(tmp_path)]
    with mock.patch.object(attention_interface, "primal_dual_attention",
                           wraps=attention_interface.primal_dual_attention) as spy:
        assert main(arguments) == 0
    assert spy.call_count > 0  # the converted model and its fine-tune ran Attention-BN, not transformers' sdpa
    records = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["attention_type"], r["finetune_epochs"]) for r in records) == [
        ("bn", 0), ("bn", 1), ("softmax", 0), ("softmax", 1)]
    folder = tmp_path / "work" / "patchtst" / "JapaneseVowels-seed0-1ep"
    assert json.loads((folder / "converted-bn" / "config.json").read_text())["attn_implementation"] == "primaldual_bn"
    source_config = json.loads((folder / "source-softmax" / "config.json").read_text())
    assert not str(source_config.get("attn_implementation")).startswith("primaldual")  # the source is left as it was
