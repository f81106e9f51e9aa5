"""The paper's experiments, run from a checkout (not part of the installed package): the benchmark, the
reproduction grids (UEA, images, PatchTST), their statistics and plots, the head-redundancy study and the GPU
session. The thin ``scripts/<name>.py`` are their commands; results go to the repository's ``docs/``.

Data comes from ``../shared/data`` beside the checkout unless a command is told otherwise.
"""

from pathlib import Path

#: The repository these experiments belong to: default paths (``docs/``, ``outputs/``, ``../shared``) are under it.
REPO = Path(__file__).resolve().parents[2]
