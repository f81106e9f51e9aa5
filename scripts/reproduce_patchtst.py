#!/usr/bin/env python
"""transformers' PatchTSTForClassification with softmax, Attention-BN and BN+SH on the UEA protocol (resumable):

    python scripts/reproduce_patchtst.py                      # six short sets x 3 seeds -> docs/results/patchtst_*
    python scripts/reproduce_patchtst.py --render_only        # the table and plot from the runs so far
"""

from hf_primaldual.patchtst_protocol import main

if __name__ == "__main__":
    raise SystemExit(main())
