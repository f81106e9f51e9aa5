#!/usr/bin/env python
"""Speed and memory of the primal-dual attention family: ``python -m hf_primaldual.benchmark`` (its doc and
``--help`` say what it measures and how)."""

from __future__ import annotations

from hf_primaldual.benchmark import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python scripts/benchmark.py"))
