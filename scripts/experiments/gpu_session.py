"""Everything this project wants from a few minutes of a lent GPU, as one prepared command.

    python scripts/gpu_session.py --output_dir "$OUT"            # on the GPU machine (at most ~10 minutes)
    python scripts/gpu_session.py --smoke --output_dir /tmp/gpu  # the same code on a CPU, tiny, in seconds

1. The SelfRegulationSCP1/SCP2 grid of the UEA protocol (`scripts/reproduce_uea.py`: 100 epochs, every type, the
   given seeds), several runs side by side on the one GPU (one process per set x type), float32 as the CPU cells,
   each run appended to ``<output_dir>/uea_runs.jsonl`` (merge its lines into docs/results/uea_runs.jsonl, then
   ``python scripts/reproduce_uea.py --render_only``).
2. The GPU benchmark (`experiments.benchmark --device cuda`): the ViT train step at DeiT-tiny 224 px against
   transformers' ViT, the attention sweep to N = 16384, the stock-model section, CUDA peak memory, into
   ``<output_dir>/benchmark`` (copy to docs/benchmark/gpu for docs/PERFORMANCE.md).

Every child's output goes to ``<output_dir>/logs``; a summary of what finished is printed and written to
``<output_dir>/gpu_session.json``. Runs still going at ``--budget_s`` are stopped (their checkpoints resume them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import REPO
from .analysis import read_runs

SCP_SETS = ["SelfRegulationSCP1", "SelfRegulationSCP2"]
TYPES = ["softmax", "linear", "bn", "sh", "bn_sh"]


def grid_commands(args: argparse.Namespace) -> list[list[str]]:
    """One reproduce_uea process per (set, type): they share the GPU."""
    datasets, extra = (["JapaneseVowels"], ["--", "--hidden_size", "16", "--num_hidden_layers", "1",
                                            "--intermediate_size", "32"]) if args.smoke else (SCP_SETS, [])
    data_dir = REPO / "hf_primaldual" / "resources" if args.smoke else args.data_dir
    return [
        [sys.executable, str(REPO / "scripts" / "reproduce_uea.py"), "--datasets", dataset, "--types", attention_type,
         "--seeds", *map(str, args.seeds), "--epochs", str(1 if args.smoke else 100), "--data_dir", str(data_dir),
         "--results", str(args.output_dir / "uea_runs.jsonl"), "--report_dir", str(args.output_dir / "report"),
         "--work_dir", str(args.output_dir / "work"), *extra]
        for dataset in datasets for attention_type in (TYPES[:2] if args.smoke else TYPES)
    ]


def benchmark_command(args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--output_dir", str(args.output_dir / "benchmark")]
    if args.smoke:
        return [*command, "--smoke", "--sections", "attention"]
    return [*command, "--device", "cuda", "--sections", "vit", "stock", "attention", "--max_length", "16384"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--data_dir", type=Path, default=REPO.parent / "shared" / "data" / "uea")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget_s", type=float, default=540.0, help="stop what still runs after this long")
    parser.add_argument("--smoke", action="store_true", help="tiny settings on any device, for CI")
    args = parser.parse_args(argv)
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            parser.error("no CUDA device: run on the GPU machine, or pass --smoke for the CPU check")
    logs = args.output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    started = time.time()
    jobs = []
    # The benchmark first among equals: it times, so it gets the GPU while the grid's processes start up.
    for index, command in enumerate([benchmark_command(args), *grid_commands(args)]):
        name = "benchmark" if index == 0 else f"grid-{index}"
        log = (logs / f"{name}.log").open("w")
        jobs.append((name, command, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                     cwd=REPO), log))
    summary = {}
    for name, command, process, log in jobs:
        try:
            code = process.wait(timeout=max(1.0, args.budget_s - (time.time() - started)))
        except subprocess.TimeoutExpired:
            process.terminate()
            code = process.wait()
        log.close()
        summary[name] = {"command": command[1:], "returncode": code}
    runs_file = args.output_dir / "uea_runs.jsonl"
    runs = read_runs(runs_file)
    report = {"wall_s": round(time.time() - started, 1), "jobs": summary, "finished_runs": len(runs)}
    (args.output_dir / "gpu_session.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"wall_s": report["wall_s"], "finished_runs": len(runs),
                      "failed": [name for name, job in summary.items() if job["returncode"] != 0]}))
    return 0 if all(job["returncode"] == 0 for job in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
