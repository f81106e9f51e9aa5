"""The CPU kernel's build cache shared by several checkouts and versions of the package on one machine.

torch's ``cpp_extension.load`` keeps one build per name and lets ninja rebuild it whenever the compile command
changes, and the command names the source's path. So the build must be named by what it compiles and compile a
path that does not depend on the checkout: then two checkouts of one version share a build, and two versions keep
one build each instead of rebuilding over each other at every start. Checked here on what ``load`` is asked for
(building takes a minute); ``test_cpu_dropout_kernel.py`` runs the real build.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch.utils.cpp_extension
from filelock import FileLock, Timeout

from hf_primaldual import cpu_attention


@pytest.fixture
def load_requests(monkeypatch, tmp_path):
    """Every ``load`` call's arguments, with the build itself skipped and the extensions directory in tmp_path."""
    requests: list[dict] = []

    def fake_load(**kwargs):
        requests.append(kwargs)
        return object()

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.delenv(cpu_attention.ENVIRONMENT_SWITCH, raising=False)
    return requests


def _start_from(checkout_source: Path, monkeypatch) -> None:
    """What a fresh process of the checkout whose kernel source is ``checkout_source`` does on its first call."""
    monkeypatch.setattr(cpu_attention, "SOURCE", checkout_source)
    monkeypatch.setattr(cpu_attention, "_tried", False)
    monkeypatch.setattr(cpu_attention, "_extension", None)
    assert cpu_attention.kernel_available()


def _checkout(root: Path, extra_source: str = "") -> Path:
    source = root / "csrc" / cpu_attention.SOURCE.name
    source.parent.mkdir(parents=True)
    shutil.copyfile(cpu_attention.SOURCE, source)
    if extra_source:
        with source.open("a") as handle:
            handle.write(extra_source)
    return source


def test_two_checkouts_of_one_version_ask_for_the_same_build(load_requests, monkeypatch, tmp_path):
    for checkout in ("first", "second"):
        _start_from(_checkout(tmp_path / checkout), monkeypatch)
    first, second = load_requests
    assert first == second  # same name, flags, folder and source path: ninja finds the first build up to date
    assert Path(first["sources"][0]).parent == Path(first["build_directory"])
    assert Path(first["sources"][0]).read_bytes() == cpu_attention.SOURCE.read_bytes()
    assert Path(first["build_directory"]).parent == tmp_path / "extensions"


def test_two_versions_keep_one_build_each(load_requests, monkeypatch, tmp_path):
    old = _checkout(tmp_path / "old")
    new = _checkout(tmp_path / "new", extra_source="\n// a later version of the kernel\n")
    for source in (old, new, old):
        _start_from(source, monkeypatch)
    first, second, third = load_requests
    assert first["name"] != second["name"]
    assert first["build_directory"] != second["build_directory"]
    assert third == first  # the old version comes back to its own build, untouched by the new one's
    assert Path(first["sources"][0]).read_bytes() == old.read_bytes()
    assert Path(second["sources"][0]).read_bytes() == new.read_bytes()


def test_the_build_is_named_by_the_flags_and_the_torch_version(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_attention, "SOURCE", _checkout(tmp_path / "checkout"))
    name, flags = cpu_attention.build_name()
    assert cpu_attention.build_name() == (name, flags)
    with monkeypatch.context() as portable:
        portable.setattr(cpu_attention, "_capability", lambda: ("default", ["-DCPU_CAPABILITY=DEFAULT"]))
        portable_name, portable_flags = cpu_attention.build_name()
    assert portable_flags != flags
    assert portable_name.startswith("hf_primaldual_flash_attention_cpu_default_") and portable_name != name
    monkeypatch.setattr(cpu_attention.torch, "__version__", "0.0.0-another")
    assert cpu_attention.build_name()[0] != name


def test_two_environments_keep_one_build_each(monkeypatch, tmp_path):
    """A virtual environment has its own torch: the compile command names its headers, so it is another build."""
    monkeypatch.setattr(cpu_attention, "SOURCE", _checkout(tmp_path / "checkout"))
    name = cpu_attention.build_name()[0]
    venv_torch = tmp_path / "venv" / "lib" / "site-packages" / "torch"
    monkeypatch.setattr(torch.utils.cpp_extension, "include_paths", lambda *_: [str(venv_torch / "include")])
    monkeypatch.setattr(torch.utils.cpp_extension, "library_paths", lambda *_: [str(venv_torch / "lib")])
    assert cpu_attention.build_name()[0] != name


def test_a_build_killed_before_it_ended_does_not_hang_the_next_start(monkeypatch, tmp_path):
    """torch's builder waits for as long as its lock file exists; a killed build leaves the file behind."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setattr(cpu_attention, "SOURCE", _checkout(tmp_path / "checkout"))
    directory = cpu_attention.build_directory(cpu_attention.build_name()[0])
    directory.mkdir(parents=True)
    (directory / "lock").touch()  # what a build killed with SIGKILL leaves
    seen: dict[str, bool] = {}

    def fake_load(**kwargs):
        seen["torch lock left"] = (directory / "lock").exists()
        try:  # another process starting now must wait: the build lock is held
            FileLock(directory / "build.lock", is_singleton=False).acquire(timeout=0)
            seen["build lock free"] = True
        except Timeout:
            seen["build lock free"] = False
        return object()

    monkeypatch.setattr(torch.utils.cpp_extension, "load", fake_load)
    _start_from(cpu_attention.SOURCE, monkeypatch)
    assert seen == {"torch lock left": False, "build lock free": False}
    FileLock(directory / "build.lock").acquire(timeout=0)  # released once the load is over
