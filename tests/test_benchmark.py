"""scripts/benchmark.py in its smoke version (no timing asserts)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_primaldual.attention import ATTENTION_TYPES

REPO = Path(__file__).resolve().parents[1]
ALL_TYPES = list(ATTENTION_TYPES)


def load_benchmark_module():
    spec = importlib.util.spec_from_file_location("primaldual_benchmark", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The command line's smoke run, once: its output folder and stdout."""
    output = tmp_path_factory.mktemp("benchmark")
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--smoke", "--output_dir", str(output)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return output, result.stdout


def test_smoke_run_writes_the_tables_and_the_plots(smoke_run):
    output, stdout = smoke_run
    report = (output / "results.md").read_text()
    for section in ("## ViT training step", "## Attention layer", "## Time-series classifier training step",
                    "## Explicit path only when asked", "## Targets"):
        assert section in report
    for plot in ("attention_time.png", "attention_memory.png"):
        path = output / plot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    assert "Targets (ratios measured in this run):" in stdout


def test_smoke_run_covers_every_attention_type(smoke_run):
    output, _ = smoke_run
    results = json.loads((output / "results.json").read_text())
    assert {row["model"] for row in results["vit"]} == {"transformers ViT (sdpa)", *ALL_TYPES}
    assert all(row["same_weights_same_logits"] for row in results["vit"])
    sweep = [row for row in results["attention"] if row["run"] == "sweep"]
    for length in {row["length"] for row in sweep}:
        assert {row["attention_type"] for row in sweep if row["length"] == length} == set(ALL_TYPES)
    dropout = [row for row in results["attention"] if row["run"] == "dropout"]
    assert {row["attention_type"] for row in dropout} == {"torch SDPA", "softmax", "bn", "sh", "bn_sh"}
    assert all(row["dropout"] == 0.1 and row["speedup_vs_torch_sdpa"] > 0 for row in dropout)
    assert {row["attention_type"] for row in results["timeseries"]} == set(ALL_TYPES)
    for row in results["attention"]:
        assert row["forward_ms"] > 0 and row["forward_backward_peak_mb"] > 0 and row["forward_gflop"] > 0
    for row in results["vit"] + results["timeseries"]:
        assert row["step_ms"] > 0 and row["peak_mb"] > 0
    assert all(row["fast_path_fused"] and row["explicit_path_when_asked"] for row in results["explicit_path"])


def test_benchmark_functions_are_importable_and_return_rows():
    benchmark = load_benchmark_module()
    settings = benchmark.Settings.smoke()
    rows = benchmark.benchmark_attention(settings, ["softmax", "sh"], log=lambda _: None)
    assert {(row["length"], row["attention_type"]) for row in rows} == {
        (n, t) for n in settings.attention_lengths for t in ("softmax", "sh")
    }
    # SH's analytic FLOPs: heads at scale s see N / s keys
    full = benchmark.attention_flops("softmax", 1024, 8, (1,) * 8)
    assert benchmark.attention_flops("sh", 1024, 8, (1, 1, 2, 2, 4, 4, 8, 8)) < 0.5 * full
    assert benchmark.attention_flops("linear", 4096, 8, (1,) * 8) < benchmark.attention_flops("softmax", 4096, 8, (1,) * 8) / 50


def test_peak_memory_measures_the_tensors_a_call_allocates():
    benchmark = load_benchmark_module()
    x = torch.ones(1024, 256)  # 1 MiB

    def two_temporaries():
        a = x * 2
        b = a + 1  # both live: 2 MiB
        del a
        return b.sum()

    peak = benchmark.peak_memory_bytes(two_temporaries)
    assert 2 * 2**20 <= peak < 2.1 * 2**20
