#!/usr/bin/env python
"""The conversion study (softmax models switched to Attention-BN / -SH / BN+SH): `experiments.conversion_study`
(``--help`` lists its options)."""

import sys

from experiments.conversion_study import main

if __name__ == "__main__":
    sys.exit(main())
