#!/usr/bin/env python
"""Reproduce the paper's image experiment at this machine's budget: `experiments.reproduce_images` (``--help`` lists its options)."""

import sys

from experiments.reproduce_images import main

if __name__ == "__main__":
    sys.exit(main())
