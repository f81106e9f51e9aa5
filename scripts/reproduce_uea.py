#!/usr/bin/env python
"""Reproduce the paper's UEA experiment: `experiments.reproduce_uea` (``--help`` lists its options)."""

import sys

from experiments.reproduce_uea import main

if __name__ == "__main__":
    sys.exit(main())
