#!/usr/bin/env python
"""Publish a finished output folder to a Hub model repo.

The command lives in `hf_primaldual.cli.push_to_hub`, installed as ``hf-primaldual-push``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.push_to_hub import main

if __name__ == "__main__":
    sys.exit(main())
