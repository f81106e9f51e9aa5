#!/usr/bin/env python
"""Head redundancy of trained checkpoints: `experiments.head_redundancy` (``--help`` lists its options)."""

import sys

from experiments.head_redundancy import main

if __name__ == "__main__":
    sys.exit(main())
