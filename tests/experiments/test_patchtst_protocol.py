"""transformers' PatchTST on the UEA protocol with the family's attentions: a tiny resumable grid on the shipped
JapaneseVowels (real, unequal lengths)."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from hf_primaldual import attention_interface
from hf_primaldual.data import SHIPPED_UEA_DIR
from experiments.reproduce_patchtst import main

pytestmark = pytest.mark.slow  # a grid of training runs


def test_patchtst_grid_runs_each_attention_records_and_resumes(tmp_path):
    arguments = ["--datasets", "JapaneseVowels", "--types", "softmax", "bn_sh", "--seeds", "0", "--epochs", "1",
                 "--data_dir", str(SHIPPED_UEA_DIR), "--results", str(tmp_path / "runs.jsonl"),
                 "--report_dir", str(tmp_path), "--work_dir", str(tmp_path / "work")]
    with mock.patch.object(attention_interface, "primal_dual_attention",
                           wraps=attention_interface.primal_dual_attention) as spy:
        assert main(arguments) == 0
    # softmax runs transformers' sdpa; bn_sh runs the family, on the 1-D patch sequence of each channel
    assert spy.call_count > 0 and all(call.args[3].spec.scaled_heads for call in spy.call_args_list)
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [(r["attention_type"], r["epochs"], r["model"]) for r in runs] == [("softmax", 1, "PatchTST"),
                                                                           ("bn_sh", 1, "PatchTST")]
    assert all(0 <= r["test_accuracy_final"] <= r["test_accuracy_best_epoch"] <= 1 for r in runs)
    assert (tmp_path / "patchtst_table.md").read_text().count("JapaneseVowels") == 2
    with mock.patch("experiments.reproduce_patchtst.train_patchtst") as train:
        assert main(arguments) == 0
    train.assert_not_called()  # both runs are in the results file
