#!/usr/bin/env python
"""Reproduce the paper's image claim at CPU scale.

The command lives in `hf_primaldual.cli.reproduce_images`, installed as ``hf-primaldual-reproduce-images``;
``--help`` lists its options.
"""

import sys
from pathlib import Path

from hf_primaldual.cli.reproduce_images import main

if __name__ == "__main__":
    # default paths under the repository, wherever the script is run from
    sys.exit(main(root=Path(__file__).resolve().parents[1]))
