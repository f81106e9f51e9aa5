"""Helpers to run the real Hub clients against the local test Hub server (``helpers.hub_server``).

The fixtures that use them live in ``tests/conftest.py``, so that one session server serves every module:

``hub_server`` (session scope)
    A running :class:`helpers.hub_server.HubServer`.  Shared by the whole session, so each test should
    use fresh repo ids: ``hub_server.new_repo_id("tiny")`` -> ``"user/tiny-7"``.
``hub_env`` (function scope) -> :class:`HubEnv`
    Fresh, empty ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_MODULES_CACHE`` under ``tmp_path``; sets
    the variables of ``HubServer.env`` in ``os.environ`` and patches the in-process copies that
    ``huggingface_hub`` took at import time (see :func:`patch_hub_in_process`), so that plain
    ``HfApi()``, ``hf_hub_download(...)``, ``push_to_hub(...)`` and ``from_pretrained(...)`` in
    the test process talk to the test server.  ``hub_env.run(code)`` runs ``code`` in a fresh
    interpreter with the same environment.

How to point the clients at the server (checked with huggingface_hub 2.4.0, transformers 5.23):

* Subprocess (most faithful, recommended for loading): ``run_client(code, env)`` starts
  ``python -c code`` with ``env`` from ``HubServer.env()`` (``HF_ENDPOINT``, ``HF_TOKEN``,
  ``HF_HUB_DISABLE_XET=1``, empty caches...) and without ``HF_HUB_OFFLINE`` & co.  Nothing is
  imported before the variables are set, so every module-level constant is right.
* In process: ``huggingface_hub.constants`` reads ``HF_ENDPOINT``, ``HF_HUB_DISABLE_XET``, the
  cache paths and ``HF_HUB_OFFLINE`` once, at import; the module-level ``huggingface_hub.api``
  (behind ``huggingface_hub.create_repo``, ``upload_folder``...) and transformers'
  ``transformers.utils.hub._hf_api`` keep the endpoint they were built with.  Setting the
  environment is therefore not enough: :func:`patch_hub_in_process` patches
  ``constants.ENDPOINT``, ``constants.HUGGINGFACE_CO_URL_TEMPLATE``, the cache paths,
  ``constants.HF_HUB_DISABLE_XET`` / ``HF_HUB_OFFLINE``, ``huggingface_hub.hf_api.api.endpoint``
  and resets transformers' cached ``HfApi``.  ``HF_TOKEN`` is read at each call.  Passing
  ``endpoint=`` / ``token=`` / ``cache_dir=`` explicitly (``HfApi(endpoint=hub.endpoint,
  token=hub.token)``, ``hf_hub_download(..., endpoint=..., cache_dir=...)``) also works without
  any patching, except that uploads need ``constants.HF_HUB_DISABLE_XET = True``.

Example (push in process, load in a fresh interpreter with an empty cache)::

    def test_roundtrip(hub_env, tmp_path):
        repo_id = hub_env.hub.new_repo_id("tiny")
        model.push_to_hub(repo_id)  # in process, thanks to hub_env
        out = run_client_json(f'''
            import json, torch, transformers
            m = transformers.AutoModel.from_pretrained({repo_id!r})
            print(json.dumps(m(torch.ones(1, 4, dtype=torch.long)).last_hidden_state.tolist()))
        ''', hub_env.hub.env(tmp_path / "loader"))
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from . import REPO_ROOT
from .hub_server import UNSET_ENV_VARS, HubServer

__all__ = [
    "HubEnv",
    "client_environ",
    "load_script",
    "patch_hub_in_process",
    "run_client",
    "run_client_json",
]


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, to call its ``main`` in the test process (a second interpreter costs
    ~10 s of imports)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def client_environ(env: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment of a client process: ``base`` (default ``os.environ``) without
    ``UNSET_ENV_VARS`` (``HF_HUB_OFFLINE``...), updated with ``env``, the repo root on ``PYTHONPATH``."""
    full = dict(os.environ if base is None else base)
    for name in UNSET_ENV_VARS:
        full.pop(name, None)
    full.update(env)
    pythonpath = [str(REPO_ROOT)] + [p for p in full.get("PYTHONPATH", "").split(os.pathsep) if p]
    full["PYTHONPATH"] = os.pathsep.join(pythonpath)
    full.setdefault("PYTHONUNBUFFERED", "1")
    full.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Outputs are compared bit for bit with the test process's own: a client with another thread count may reduce in
    # another order and change the last bits, so it runs with the test process's thread count.
    full["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return full


def run_client(
    code: str,
    env: Mapping[str, str],
    *,
    timeout: float = 180,
    check: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (dedented) with ``python -c`` in a fresh interpreter with the client environment
    ``env`` (from ``HubServer.env()``); stdout/stderr are captured as text.

    With ``check=True`` a non-zero exit raises ``AssertionError`` showing both streams.
    """
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=client_environ(env),
        cwd=str(cwd) if cwd is not None else str(REPO_ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"client process failed with exit code {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def run_client_json(code: str, env: Mapping[str, str], **kwargs: Any) -> Any:
    """``run_client`` and parse the last line of its stdout as JSON."""
    proc = run_client(code, env, **kwargs)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise AssertionError(f"client printed nothing\n--- stderr ---\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1])


def patch_hub_in_process(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    """Point the already imported ``huggingface_hub`` (and transformers) at ``env["HF_ENDPOINT"]``.

    Sets the variables of ``env`` in ``os.environ``, removes ``UNSET_ENV_VARS`` and patches the
    values huggingface_hub 2.x computed at import time.  Everything is undone by ``monkeypatch``.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    for name in UNSET_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    endpoint = env["HF_ENDPOINT"].rstrip("/")
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", env.get("HF_HUB_DISABLE_XET", "1") not in ("0", ""))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for const, var in (
        ("HF_HOME", "HF_HOME"),
        ("HF_HUB_CACHE", "HF_HUB_CACHE"),
        ("HF_XET_CACHE", "HF_XET_CACHE"),
        ("HF_ASSETS_CACHE", "HF_ASSETS_CACHE"),
        ("HF_TOKEN_PATH", "HF_TOKEN_PATH"),
        ("HF_STORED_TOKENS_PATH", "HF_STORED_TOKENS_PATH"),
    ):
        if var in env and hasattr(constants, const):
            monkeypatch.setattr(constants, const, env[var])
    if "HF_HOME" in env:  # files huggingface_hub keeps in HF_HOME (paths computed at import)
        for const, name in (
            ("AGENT_HARNESSES_PATH", ".agent_harnesses.json"),
            ("CHECK_FOR_UPDATE_DONE_PATH", ".check_for_update_done"),
            ("CHECK_FOR_SKILL_UPDATE_DONE_PATH", ".check_for_skill_update_done"),
        ):
            if hasattr(constants, const):
                monkeypatch.setattr(constants, const, os.path.join(env["HF_HOME"], name))
    if "HF_HUB_CACHE" in env:
        from huggingface_hub.utils import _cache_manager

        monkeypatch.setattr(_cache_manager, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    # The module-level HfApi behind huggingface_hub.create_repo / upload_folder / model_info ...
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", endpoint)
    # transformers caches one HfApi (built with the endpoint of its first use) and the modules cache.
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None:
        monkeypatch.setattr(transformers_hub, "_hf_api", None, raising=False)
        if "HF_MODULES_CACHE" in env:
            monkeypatch.setattr(transformers_hub, "HF_MODULES_CACHE", env["HF_MODULES_CACHE"], raising=False)
    dynamic = sys.modules.get("transformers.dynamic_module_utils")
    if dynamic is not None and "HF_MODULES_CACHE" in env:
        monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", env["HF_MODULES_CACHE"], raising=False)
    # Do not reuse pooled connections to another server; closed again at teardown (see hub_env).
    close_session()


@dataclass
class HubEnv:
    """What ``hub_env`` yields: the server, the client environment and its fresh directories."""

    hub: HubServer
    env: dict[str, str]
    home: Path

    @property
    def endpoint(self) -> str:
        return self.hub.endpoint

    @property
    def token(self) -> str:
        return self.env.get("HF_TOKEN", "")

    @property
    def cache_dir(self) -> Path:
        return Path(self.env["HF_HUB_CACHE"])

    def run(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """``run_client(code, self.env)`` (note: it shares this test's cache directory)."""
        return run_client(code, self.env, **kwargs)
