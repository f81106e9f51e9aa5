"""Code run in a fresh interpreter where `hf_primaldual` cannot be imported, as on a machine without the package
(checkpoints then load from the code files saved beside the weights, with `trust_remote_code=True`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

# Runs first in the subprocess: makes `import hf_primaldual` fail as on a machine without the package.
WITHOUT_PACKAGE = textwrap.dedent(
    """
    import sys

    class _NoPackage:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_primaldual":
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, _NoPackage())
    try:
        import hf_primaldual
    except ModuleNotFoundError:
        pass
    else:
        raise SystemExit("hf_primaldual is importable: the test would prove nothing")
    """
)


def run_without_package(code: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PACKAGE + textwrap.dedent(code)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
