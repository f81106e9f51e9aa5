#!/usr/bin/env python
"""transformers' PatchTST under the primal-dual attentions on the UEA grid: `experiments.reproduce_patchtst` (``--help`` lists its options)."""

import sys

from experiments.reproduce_patchtst import main

if __name__ == "__main__":
    sys.exit(main())
