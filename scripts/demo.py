#!/usr/bin/env python
"""Serve the demo app of a checkpoint (Gradio), or publish it as a Hugging Face Space.

The command lives in `hf_primaldual.cli.demo`, installed as ``hf-primaldual-demo``;
``--help`` lists its options.
"""

import sys

from hf_primaldual.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
