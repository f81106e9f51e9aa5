#!/usr/bin/env python
"""Train a PrimalDualTimeSeries classifier on a UEA problem.

The command lives in `hf_primaldual.cli.train_timeseries`, installed as ``hf-primaldual-train-timeseries``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.train_timeseries import main

if __name__ == "__main__":
    sys.exit(main())
