"""Shared test set-up: the tests' own helpers (reference_attention, hub servers) import as top-level modules."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
