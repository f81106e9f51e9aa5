#!/usr/bin/env python
"""Accuracy and confusion matrix of a checkpoint folder or Hub id on a dataset split.

The command lives in `hf_primaldual.cli.evaluate_checkpoint`, installed as ``hf-primaldual-evaluate``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.evaluate_checkpoint import main

if __name__ == "__main__":
    sys.exit(main())
