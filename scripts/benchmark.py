#!/usr/bin/env python
"""Speed and memory of the primal-dual attention family: `experiments.benchmark` (``--help`` lists its options)."""

import sys

from experiments.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
