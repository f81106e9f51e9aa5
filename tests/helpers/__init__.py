"""The tests' own helpers (not part of hf_primaldual): the test Hub server and its client helpers, olah, the
float64 attention references, transformers' common tests, and the paths every area uses.

`tests/conftest.py` puts `tests/` on `sys.path`, so test modules import them as `helpers.<module>`."""

from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = TESTS_DIR.parent
FIXTURES = TESTS_DIR / "fixtures"
# The shared data folder beside the repository (full datasets, when present).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
