#!/usr/bin/env python
"""The GPU session: the SCP grid cells, the CUDA benchmark and peak memory on a lent GPU: `experiments.gpu_session` (``--help`` lists its options)."""

import sys

from experiments.gpu_session import main

if __name__ == "__main__":
    sys.exit(main())
