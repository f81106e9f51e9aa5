"""The training scripts run as a user runs them, in a fresh interpreter, alone or under `accelerate launch`
(CPU: gloo), for the training and scale-out tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from helpers import REPO_ROOT

#: Offline (nothing is fetched), no progress bars in the captured output.
SCRIPT_ENV = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
FSDP_ON_CPU = Path(__file__).with_name("fsdp_on_cpu.py")


def accelerate_launch(*options: str, port: int | None = None) -> list[str]:
    """`accelerate launch` without a config file (without a GPU, a multi-process launch is MULTI_CPU with gloo),
    with ``options``, its processes meeting on ``port``: by default a free one, as Accelerate's own default (29500)
    collides with a launch on another test worker."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_cpu_threads_per_process", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port or free_port()),
            *options]


def script_command(script: str, *args: str, launcher: list[str] | None = None) -> list[str]:
    return [*(launcher or [sys.executable]), str(REPO_ROOT / "scripts" / script), *args]


def start_script(script: str, *args: str, launcher: list[str] | None = None) -> subprocess.Popen:
    """``scripts/<script> args`` started (under ``launcher``, e.g. `accelerate_launch`), output captured."""
    return subprocess.Popen(
        script_command(script, *args, launcher=launcher), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **SCRIPT_ENV}, cwd=REPO_ROOT,
    )


def finish(process: subprocess.Popen, timeout: int = 400) -> tuple[int, str, str]:
    """Wait for ``process``: its exit code, stdout and stderr (killed on timeout)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"{process.args} ran past {timeout} s:\n{stdout[-3000:]}{stderr[-5000:]}") from None
    return process.returncode, stdout, stderr


def summary(stdout: str) -> dict | None:
    """The JSON summary line a training script prints at the end (None when it printed none)."""
    return next((json.loads(line) for line in stdout.splitlines()[::-1] if line.startswith("{\"")), None)


def run_script(script: str, *args: str, launcher: list[str] | None = None, timeout: int = 400) -> dict:
    """Run a training script to the end; its summary line (the run must succeed and print one)."""
    code, stdout, stderr = finish(start_script(script, *args, launcher=launcher), timeout)
    assert code == 0, stdout[-3000:] + stderr[-5000:]
    found = summary(stdout)
    assert found is not None, stdout[-3000:] + stderr[-3000:]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
