"""transformers' PatchTSTForClassification with softmax, Attention-BN and BN+SH on the UEA protocol (resumable).

The command lives in `hf_primaldual.cli.reproduce_patchtst`, installed as ``hf-primaldual-reproduce-patchtst``;
``--help`` lists its options.
"""

import sys
from pathlib import Path

from hf_primaldual.cli.reproduce_patchtst import main

if __name__ == "__main__":
    # default paths under the repository, wherever the script is run from
    sys.exit(main(root=Path(__file__).resolve().parents[1]))
