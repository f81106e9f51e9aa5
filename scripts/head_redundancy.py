#!/usr/bin/env python
"""Head redundancy of trained checkpoints.

The command lives in `hf_primaldual.cli.head_redundancy`, installed as ``hf-primaldual-head-redundancy``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.head_redundancy import main

if __name__ == "__main__":
    sys.exit(main())
