"""transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), for the installed transformers.

The transformers wheel ships no tests. Its sdist on PyPI has `tests/test_modeling_common.py` and
`tests/test_configuration_common.py`, but not the modules those two import relatively (`tests/generation`,
`tests/exporters`, `tests/utils`). `load_common_tests()`:

1. downloads the sdist of exactly the installed version with
   `pip download --no-deps --no-binary :all: transformers==<transformers.__version__>` (PyPI, through pip's own
   configuration: index, proxy, certificates);
2. extracts only the two files (and the sdist's LICENSE: the code is Apache-2.0) into the cache, as the package
   `transformers_common_tests`, next to stubs of the three missing modules (see `STUBS`);
3. imports them and returns the two modules.

Cache: `~/.cache/hf_primaldual/transformers-tests/<version>/` (`$XDG_CACHE_HOME` is honoured; set
`HF_PRIMALDUAL_TRANSFORMERS_TESTS_CACHE` to use another folder). It is outside the repository on purpose: it
survives `git clean` and fresh clones, is shared by every checkout and worktree on the machine, can never be
committed or packaged by mistake, and a CI cache of `~/.cache` keeps it between runs. Keyed by version, so
upgrading transformers fetches that version's tests; a folder is only used once it is complete (written beside,
then renamed into place), so an interrupted download is simply redone. Once cached, no network is needed.

If the download fails (no network, a version that is not on PyPI such as a `.dev0` build, pip missing), the
error says why and what to do; the test module turns it into a failing test rather than a skip.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

PACKAGE = "transformers_common_tests"  # a unique top-level name: `tests` may be taken by a stray installed package
NEEDED = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")
COMPLETE_MARKER = "COMPLETE"

# Relative imports of the two files whose modules the sdist lacks, and what stands in for them.
STUBS = {
    # test_modeling_common.py: `from .generation.test_utils import GenerationTesterMixin`. The package's models
    # cannot generate; ModelTesterMixin only uses the class in an issubclass check that agrees with can_generate().
    "generation/test_utils.py": (
        '"""Stub: tests/generation is not in the transformers sdist."""\n\n\n'
        "class GenerationTesterMixin:\n    pass\n"
    ),
    # test_modeling_common.py: `from .exporters.test_export import ExportTesterMixin`, ModelTesterMixin's base.
    # Empty: its torch.export tests are not in the sdist, so they do not run here.
    "exporters/test_export.py": (
        '"""Stub: tests/exporters is not in the transformers sdist (its export tests do not run)."""\n\n\n'
        "class ExportTesterMixin:\n    pass\n"
    ),
    # test_configuration_common.py: `from .utils.test_configuration_utils import config_common_kwargs`, used by
    # ConfigTester.check_config_arguments_init. The values of transformers 5's tests/utils/test_configuration_utils.py
    # (GitHub), so that the check still checks something: each is a non-default value of a PreTrainedConfig field.
    "utils/test_configuration_utils.py": (
        '"""Stub: tests/utils is not in the transformers sdist; config_common_kwargs as in transformers 5."""\n\n'
        "config_common_kwargs = {\n"
        '    "return_dict": False,\n'
        '    "output_hidden_states": True,\n'
        '    "output_attentions": True,\n'
        '    "dtype": "float16",\n'
        '    "chunk_size_feed_forward": 5,\n'
        '    "architectures": ["BertModel"],\n'
        '    "id2label": {0: "label"},\n'
        '    "label2id": {"label": "0"},\n'
        '    "problem_type": "regression",\n'
        "}\n"
    ),
}


class TransformersTestsUnavailable(RuntimeError):
    """transformers' test files could not be obtained; the message says why and what to do."""


def cache_root() -> Path:
    override = os.environ.get("HF_PRIMALDUAL_TRANSFORMERS_TESTS_CACHE")
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hf_primaldual" / "transformers-tests"


def _download_sdist(version: str, into: Path) -> Path:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"transformers=={version}", "--dest", str(into), "--disable-pip-version-check",
    ]
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TransformersTestsUnavailable(
            f"Could not run `{' '.join(command[2:])}` to fetch transformers' test files: {error}"
        ) from error
    archives = sorted(into.glob("transformers-*.tar.gz"))
    if result.returncode != 0 or not archives:
        output = result.stdout.strip()[-3000:]
        raise TransformersTestsUnavailable(
            f"transformers' common model tests come from the sdist of the installed transformers {version}, and "
            f"`{' '.join(command[2:])}` failed (exit {result.returncode}):\n{output}\n"
            "Check that PyPI is reachable (pip's index, proxy and certificate settings apply) and that "
            f"transformers {version} is a released version; once fetched, the files are kept in "
            f"{cache_root() / version} and no network is needed."
        )
    return archives[0]


def _extract(archive: Path, version: str, target: Path) -> None:
    package = target / PACKAGE
    package.mkdir(parents=True)
    wanted = {f"transformers-{version}/{name}": name for name in NEEDED}
    wanted[f"transformers-{version}/LICENSE"] = "LICENSE"
    found = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile():
                # Read the bytes and write them ourselves: no path in the archive decides where anything goes.
                found[wanted[member.name]] = tar.extractfile(member).read()
    missing = [name for name in NEEDED if name not in found]
    if missing:
        raise TransformersTestsUnavailable(
            f"The transformers {version} sdist ({archive.name}) has no {', '.join(missing)}: transformers has moved "
            "its common tests; update tests/helpers/transformers_tests.py."
        )
    for name, data in found.items():
        (package / Path(name).name).write_bytes(data)
    # Empty on purpose: ConfigTester's module runs `direct_transformers_import` on this folder, which executes
    # this __init__.py under the name `transformers` and then returns the real, already imported transformers.
    (package / "__init__.py").write_text("")
    for relative, source in STUBS.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (target / COMPLETE_MARKER).write_text(f"{archive.name} sha256={digest}\nfiles: {', '.join(sorted(found))}\n")


def fetch(version: str | None = None) -> Path:
    """The cache folder holding `transformers_common_tests/` for `version` (default: the installed one)."""
    version = version or transformers.__version__
    target = cache_root() / version
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{version}-", dir=target.parent) as scratch:
        scratch = Path(scratch)
        archive = _download_sdist(version, scratch / "download")
        staged = scratch / "staged"
        _extract(archive, version, staged)
        if target.exists() and not (target / COMPLETE_MARKER).is_file():
            shutil.rmtree(target)  # left by an interrupted older layout
        try:
            staged.rename(target)
        except OSError:
            if not (target / COMPLETE_MARKER).is_file():  # not a concurrent run that finished first
                raise
    return target


@functools.cache
def load_common_tests() -> tuple[ModuleType, ModuleType]:
    """(test_modeling_common, test_configuration_common) of the installed transformers, fetched if needed."""
    folder = str(fetch())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
        configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    except ImportError as error:
        raise TransformersTestsUnavailable(
            f"transformers' test files (in {folder}) do not import: {error!r}. A test dependency may be missing "
            "(`pip install -c constraints.txt -e '.[dev]'`), or the sdist needs another stub in "
            "tests/helpers/transformers_tests.py."
        ) from error
    return modeling, configuration
