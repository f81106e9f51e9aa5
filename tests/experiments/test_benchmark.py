"""The benchmark (experiments.benchmark, and scripts/benchmark.py over it) in its smoke version: every section's
code path on tiny sizes, on the CPU (no timing asserts). The CUDA path is the same code with another device."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from experiments import benchmark
from helpers import REPO_ROOT as REPO
from hf_primaldual.attention import ATTENTION_TYPES
from hf_primaldual.attention_interface import REGISTERED_ATTENTIONS

ALL_TYPES = list(ATTENTION_TYPES)


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "benchmark.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=REPO)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The command line's smoke run, once: its output folder and stdout."""
    output = tmp_path_factory.mktemp("benchmark")
    result = run_command("--smoke", "--output_dir", str(output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return output, result.stdout


@pytest.mark.slow  # the smoke run of the command (shared by the next two)
def test_smoke_run_writes_the_tables_and_the_plots(smoke_run):
    output, stdout = smoke_run
    report = (output / "results.md").read_text()
    for section in ("## ViT training step", "## Stock transformers models", "## Attention layer",
                    "## Time-series classifier training step", "## Time-series training step at the UEA grid's shapes",
                    "## Targets"):
        assert section in report
    assert "device cpu (no GPU used), float32" in report
    for plot in ("attention_time.png", "attention_memory.png"):
        path = output / plot
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({plot})" in report
    assert "Targets (ratios measured in this run):" in stdout
    assert "stock BertForSequenceClassification" in stdout


@pytest.mark.slow  # the smoke run
def test_smoke_run_covers_every_attention_type(smoke_run):
    output, _ = smoke_run
    results = json.loads((output / "results.json").read_text())
    assert results["settings"]["device"] == "cpu" and results["settings"]["dtype"] == "float32"
    assert {row["model"] for row in results["vit"]} == {"transformers ViT (sdpa)", *ALL_TYPES}
    sweep = [row for row in results["attention"] if row["run"] == "sweep"]
    for length in {row["length"] for row in sweep}:
        assert {row["attention_type"] for row in sweep if row["length"] == length} == set(ALL_TYPES)
    dropout = [row for row in results["attention"] if row["run"] == "dropout"]
    assert {row["attention_type"] for row in dropout} == {"torch SDPA", "softmax", "bn", "sh", "bn_sh"}
    assert all(row["dropout"] == 0.1 and row["speedup_vs_torch_sdpa"] > 0 for row in dropout)
    assert {row["attention_type"] for row in results["timeseries"]} == set(ALL_TYPES)
    for row in results["attention"]:
        assert row["forward_ms"] > 0 and row["forward_backward_peak_mb"] > 0 and row["forward_gflop"] > 0
    for row in results["vit"] + results["timeseries"] + results["stock"] + results["uea"]:
        assert row["step_ms"] > 0 and row["peak_mb"] > 0
    uea = {(row["attention_type"], row["path"]): row for row in results["uea"]}
    assert set(uea) == {(t, path) for t in ("softmax", "bn", "sh", "bn_sh")
                        for path in ("fused dropout", "PyTorch SDPA dropout (before)")}
    assert all(uea[t, "PyTorch SDPA dropout (before)"]["speedup_vs_before"] == 1 for t, _ in uea)


@pytest.mark.slow  # the smoke run
def test_smoke_run_times_stock_models_under_every_registered_attention(smoke_run):
    output, _ = smoke_run
    results = json.loads((output / "results.json").read_text())
    cases = {(row["model"], row["size"]) for row in results["stock"]}
    assert {model for model, _ in cases} == {"ViTForImageClassification", "BertForSequenceClassification"}
    for model, size in cases:
        rows = [row for row in results["stock"] if (row["model"], row["size"]) == (model, size)]
        assert {row["attn_implementation"] for row in rows} == {"sdpa", *REGISTERED_ATTENTIONS}
        assert all(row["vs_sdpa"] > 0 for row in rows)
        assert next(row for row in rows if row["attn_implementation"] == "sdpa")["vs_sdpa"] == 1.0
    names = {target["name"] for target in results["targets"]}
    assert any("stock BertForSequenceClassification" in name and "primaldual_bn /" in name for name in names)


@pytest.mark.parametrize("clock, threads, message", [("wall", 1, "--threads"), ("cpu", None, "--clock cpu")])
def test_cpu_settings_are_refused_on_cuda(clock, threads, message, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match=message):
        benchmark.check_device(benchmark.Settings(device="cuda"), clock, threads)


def test_cuda_without_a_gpu_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_:
        benchmark.main(["--smoke", "--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA device" in capsys.readouterr().err


@pytest.mark.slow  # a benchmark run
def test_bfloat16_runs_the_models_under_autocast_and_the_attention_in_bfloat16(tmp_path):
    settings = benchmark.Settings.smoke(dtype="bfloat16")
    rows = benchmark.benchmark_attention(settings, ["softmax", "bn_sh"], log=lambda _: None)
    assert all(row["forward_backward_ms"] > 0 for row in rows)
    inputs = benchmark._attention_inputs(2, 8, 16, 4, settings=settings)
    assert {x.dtype for x in inputs} == {torch.bfloat16}
    results = benchmark.run(tmp_path, smoke=True, sections=["stock", "vit"], attention_types=["bn", "sh"],
                            settings=settings, log=lambda _: None)
    assert results["machine"]["dtype"] == "bfloat16"
    assert all(row["step_ms"] > 0 for row in results["stock"] + results["vit"])


def test_the_models_compared_share_their_weights():
    settings = benchmark.Settings.smoke()
    models = benchmark.build_vit_models(32, 8, ["softmax", "bn"], settings)
    reference = models[benchmark.VIT_REFERENCE].eval()
    assert reference.config._attn_implementation == "sdpa"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(models["softmax"].eval()(pixels).logits, reference(pixels).logits,
                                   atol=1e-4, rtol=1e-4)
        stock = benchmark.build_stock_models(benchmark.stock_vit(settings, 32, 8), ["softmax", "bn"])
        assert stock["primaldual_bn"].config._attn_implementation == "primaldual_bn"
        assert stock["sdpa"].config._attn_implementation == "sdpa"
        torch.testing.assert_close(stock["primaldual_softmax"].eval()(pixels).logits,
                                   stock["sdpa"].eval()(pixels).logits, atol=1e-4, rtol=1e-4)


def test_benchmark_functions_return_rows():
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
    x = torch.ones(1024, 256)  # 1 MiB

    def two_temporaries():
        a = x * 2
        b = a + 1  # both live: 2 MiB
        del a
        return b.sum()

    peak = benchmark.peak_memory_bytes(two_temporaries)
    assert 2 * 2**20 <= peak < 2.1 * 2**20
