"""The package as a user installs it: a wheel built from the tree, installed into a fresh virtual environment and
used from a folder outside the repository.

The wheel is built once per module with ``pip wheel`` from a copy of the tree (so the build leaves nothing in the
checkout and two runs cannot share a ``build/`` folder): without build isolation (offline) when this interpreter
has the build requirements of pyproject.toml, else in isolation as ``pip install`` builds (a fresh venv's bundled
setuptools is older than the build asks for). It is installed with ``--no-deps`` into a new venv that sees the
site-packages of the interpreter running the tests (a ``.pth`` file adds them as site directories, after the venv's
own): torch, transformers and the other dependencies come from the running interpreter, whether that is a venv or
not (``--system-site-packages`` would reach the base interpreter instead, without what a venv installed), the
package itself only from the wheel. The checks: the package imports from the venv, not the
repository; every module and data file of the tree is in the wheel (the package list in pyproject.toml is written
out, not discovered); both model cards render from the installed templates; the shipped JapaneseVowels loads; each
console script answers ``--help``. A last test covers a checkout that is only on ``sys.path``, not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from helpers import REPO_ROOT as REPO

pytestmark = [pytest.mark.install, pytest.mark.slow]  # builds the wheel, installs it into a venv

#: The commands the README lists; the wheel must install exactly these.
CONSOLE_SCRIPTS = {
    "hf-primaldual-train-timeseries",
    "hf-primaldual-train-image",
    "hf-primaldual-evaluate",
    "hf-primaldual-push",
    "hf-primaldual-convert",
    "hf-primaldual-demo",
}
#: What the build must not see: git's and the tools' folders, run outputs, earlier builds.
NOT_COPIED = shutil.ignore_patterns(
    ".git", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache", ".venv",
    ".benchmarks", "trainer_output",
)

# In the venv, one interpreter (each costs ~5 s of importing torch and transformers): a card of each family, the
# shipped data set, and every console script's entry point called as its generated script calls it; one JSON line.
CHECK = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from importlib.metadata import distribution

    import hf_primaldual
    from hf_primaldual import PrimalDualTimeSeriesConfig, PrimalDualViTConfig
    from hf_primaldual.data.uea import load_uea
    from hf_primaldual.hub import MODEL_CARD_TEMPLATES, EvaluationRow, render_model_card

    def card(family, config, task_type):
        return str(render_model_card(
            family, model_name="installed-model", config=config, dataset_name="JapaneseVowels",
            dataset_description="the shipped set", hyperparameters={"learning_rate": 0.001},
            results=[EvaluationRow("test", "accuracy", 0.9876)], task_type=task_type,
        ))

    def help_of(entry_point):
        sys.argv = [entry_point.name, "--help"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            try:
                code = entry_point.load()()
            except SystemExit as exit_:
                code = exit_.code
        return {"code": code, "usage": out.getvalue().startswith("usage:")}

    splits = load_uea("JapaneseVowels")
    scripts = [ep for ep in distribution("hf-primaldual").entry_points if ep.group == "console_scripts"]
    print(json.dumps({
        "package": hf_primaldual.__file__,
        "templates": str(MODEL_CARD_TEMPLATES),
        "timeseries_card": card("primaldual-timeseries", PrimalDualTimeSeriesConfig(
            num_input_channels=12, max_sequence_length=29, num_labels=9, attention_type="bn"),
            "time-series-classification"),
        "vit_card": card("primaldual-vit", PrimalDualViTConfig(attention_type="bn_sh"), "image-classification"),
        "splits": {name: len(split) for name, split in splits.items()},
        "labels": splits["train"].features["label"].names,
        "help": {ep.name: help_of(ep) for ep in scripts},
    }))
    """
)


def build_requirements_installed() -> bool:
    """Whether this interpreter has every build requirement of pyproject.toml (then the wheel builds offline)."""
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    for requirement in map(Requirement, requires):
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            return False
        if not requirement.specifier.contains(installed, prereleases=True):
            return False
    return True


def running_site_packages() -> list[str]:
    """The site-packages of the interpreter running the tests: a venv's own (and its base's when the venv includes
    them), or the interpreter's when it is not a venv."""
    paths = [*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return [path for path in dict.fromkeys(paths) if Path(path).is_dir()]


@dataclass
class Installed:
    venv: Path
    python: Path
    bin: Path
    site_packages: Path
    source: Path  # the copy of the tree the wheel was built from
    workdir: Path  # outside the repository
    env: dict[str, str]


def run(command: list[str | Path], installed: Installed | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    if installed is not None:
        kwargs.setdefault("cwd", installed.workdir)
        kwargs.setdefault("env", installed.env)
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_COPIED)
    wheels = root / "wheels"
    offline = ["--no-build-isolation", "--no-index"] if build_requirements_installed() else []
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-q", "-w", wheels, source])
    (wheel,) = wheels.glob("hf_primaldual-*.whl")

    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    bin_dir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / ("python.exe" if os.name == "nt" else "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]))
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             env=env).stdout.strip())
    # The running interpreter's packages, as site directories (their .pth files run) after the venv's own.
    (site_packages / "running_interpreter.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in running_site_packages())
    )
    # without its own pip: the running interpreter's pip, seen through the .pth, installs into the venv; what that
    # interpreter has installed (the editable checkout) is not this venv's to replace
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel], env=env)
    workdir = root / "elsewhere"
    workdir.mkdir()
    return Installed(venv, python, bin_dir, site_packages, source, workdir, env)


@pytest.fixture(scope="module")
def checked(installed: Installed) -> dict:
    return json.loads(run([installed.python, "-c", CHECK], installed).stdout.splitlines()[-1])


def test_the_package_imports_from_the_venv_not_the_repository(installed: Installed, checked: dict) -> None:
    package = Path(checked["package"]).resolve()
    assert package == (installed.site_packages / "hf_primaldual" / "__init__.py").resolve()
    assert not package.is_relative_to(REPO)


def test_the_wheel_holds_every_module_and_data_file_of_the_tree(installed: Installed) -> None:
    def files(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}

    expected = files(installed.source / "hf_primaldual") | {f"model_cards/{name}"
                                                            for name in files(installed.source / "model_cards")}
    assert files(installed.site_packages / "hf_primaldual") == expected
    assert {"model_cards/primaldual-timeseries.md", "model_cards/primaldual-vit.md"} <= expected


def test_model_cards_render_from_the_installed_templates(installed: Installed, checked: dict) -> None:
    assert Path(checked["templates"]).resolve() == (installed.site_packages / "hf_primaldual" / "model_cards").resolve()
    for name, attention in (("timeseries_card", "bn"), ("vit_card", "bn_sh")):
        card = checked[name]
        assert card.startswith("---\n") and f"attention-{attention}" in card and "0.9876" in card, card[:2000]
        assert "installed-model" in card and "{{" not in card and "{%" not in card


def test_the_shipped_japanese_vowels_loads(checked: dict) -> None:
    assert checked["splits"] == {"train": 270, "test": 370}
    assert len(checked["labels"]) == 9


def test_each_console_script_answers_help(installed: Installed, checked: dict) -> None:
    assert set(checked["help"]) == CONSOLE_SCRIPTS
    for name, result in checked["help"].items():
        assert result == {"code": 0, "usage": True}, name
        assert (installed.bin / (f"{name}.exe" if os.name == "nt" else name)).is_file(), name
    # and one of the generated scripts as the user runs it
    result = run(["hf-primaldual-train-timeseries", "--help"], installed)
    assert result.stdout.startswith("usage: hf-primaldual-train-timeseries") and "--attention_type" in result.stdout
    assert not list(installed.workdir.iterdir())  # --help writes nothing


def test_a_checkout_only_on_sys_path_renders_cards_from_model_cards(tmp_path: Path) -> None:
    """Without an install (the repository on ``sys.path``, no wheel, no editable finder) there is no
    ``hf_primaldual.model_cards`` package: the templates are read from the top-level folder."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
        sys.path.insert(0, {str(REPO)!r})
        from hf_primaldual import PrimalDualViTConfig
        from hf_primaldual.hub import MODEL_CARD_TEMPLATES, render_model_card
        card = render_model_card("primaldual-vit", model_name="checkout-model", config=PrimalDualViTConfig(),
                                 dataset_name="d", dataset_description="d", hyperparameters={{}}, results=[],
                                 task_type="image-classification")
        print(json.dumps({{"templates": str(MODEL_CARD_TEMPLATES), "card": str(card)}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = json.loads(run([sys.executable, "-c", script], cwd=tmp_path, env=env).stdout.splitlines()[-1])
    assert Path(result["templates"]) == REPO / "model_cards"
    assert "checkout-model" in result["card"] and "attention-softmax" in result["card"]
