#!/usr/bin/env python
"""Reproduce the paper's UEA experiment.

The command lives in `hf_primaldual.cli.reproduce_uea`, installed as ``hf-primaldual-reproduce-uea``;
``--help`` lists its options.
"""

import sys
from pathlib import Path

from hf_primaldual.cli.reproduce_uea import main

if __name__ == "__main__":
    # default paths under the repository, wherever the script is run from
    sys.exit(main(root=Path(__file__).resolve().parents[1]))
