"""The time-series training command with --torch_compile (inductor): it runs to the end on the shipped JapaneseVowels
set, with its padding masks and attention dropout, without inductor failing or dynamo breaking the graph."""

from __future__ import annotations

import pytest

from helpers.training_runs import finish, start_script, summary


@pytest.mark.slow  # inductor compiles the training and evaluation graphs: about 2 min
def test_the_timeseries_command_trains_compiled(tmp_path):
    process = start_script(
        "train_timeseries.py", "--output_dir", str(tmp_path / "compiled"), "--num_train_epochs", "1",
        "--torch_compile", "--hidden_size", "16", "--num_hidden_layers", "1", "--num_attention_heads", "4",
        "--intermediate_size", "32", "--attention_type", "bn_sh",
    )
    code, stdout, stderr = finish(process, timeout=900)
    assert code == 0, stdout[-3000:] + stderr[-5000:]
    result = summary(stdout)
    assert result is not None and 0 <= result["test_accuracy_final"] <= 1
    for failure in ("Error detected in", "Graph break", "falling back to eager", "recompile_limit"):
        assert failure not in stderr, stderr[-5000:]
