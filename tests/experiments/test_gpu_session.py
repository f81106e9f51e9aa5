"""The prepared GPU session, on the CPU with its tiny settings: every job runs, the grid's runs are recorded where
docs/results reads them, the benchmark writes its tables."""

from __future__ import annotations

import json

import pytest

from experiments.gpu_session import main

pytestmark = pytest.mark.slow  # the grid's training runs and the benchmark


def test_gpu_session_smoke_runs_the_grid_and_the_benchmark(tmp_path):
    assert main(["--smoke", "--output_dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu_session.json").read_text())
    assert set(report["jobs"]) == {"benchmark", "grid-1", "grid-2"}
    assert all(job["returncode"] == 0 for job in report["jobs"].values())
    runs = [json.loads(line) for line in (tmp_path / "uea_runs.jsonl").read_text().splitlines()]
    assert sorted(r["attention_type"] for r in runs) == ["linear", "softmax"] and report["finished_runs"] == 2
    assert all({"test_accuracy_final", "test_accuracy_best_epoch", "seed"} <= set(r) for r in runs)
    assert (tmp_path / "benchmark" / "results.json").exists() and (tmp_path / "benchmark" / "results.md").exists()


def test_gpu_session_refuses_to_run_the_full_session_without_cuda(tmp_path, capsys):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full session would start")
    with pytest.raises(SystemExit) as exit_info:
        main(["--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "no CUDA device" in capsys.readouterr().err
