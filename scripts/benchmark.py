#!/usr/bin/env python
"""Speed and memory of the primal-dual attention family: ``python -m hf_primaldual.benchmark`` (its doc and
``--help`` say what it measures and how)."""

from __future__ import annotations

import sys
from pathlib import Path

# scripts/evaluate.py shares its name with the `evaluate` library: keep this folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from hf_primaldual.benchmark import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(prog="python scripts/benchmark.py"))
