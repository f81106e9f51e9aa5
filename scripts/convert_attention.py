#!/usr/bin/env python
"""Write a transformers checkpoint (a local folder or a Hub model id) again so that it reloads with a primal-dual
attention: through the Auto classes with the package, through ``trust_remote_code=True`` without it.

    python scripts/convert_attention.py google/vit-base-patch16-224 bn_sh outputs/vit-base-bn-sh
    python scripts/convert_attention.py path/to/bert-checkpoint bn outputs/bert-bn --settings '{"bn_eps": 1e-6}'
    python scripts/convert_attention.py your-org/tiny-llama bn outputs/llama-bn --revision v1 --overwrite

The command lives in `hf_primaldual.conversion.main`, installed as ``hf-primaldual-convert``; ``--help`` lists its options. Exit status: 0 converted, 1 the
Hub could not be reached, 2 the arguments or the source are refused (the message says what to change); a refused
or failed conversion writes nothing.
"""

import sys

from hf_primaldual.conversion import main

if __name__ == "__main__":
    sys.exit(main())
