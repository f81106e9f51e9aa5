#!/usr/bin/env python
"""Train (or fine-tune) a PrimalDualViT image classifier.

The command lives in `hf_primaldual.cli.train_image`, installed as ``hf-primaldual-train-image``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.train_image import main

if __name__ == "__main__":
    sys.exit(main())
