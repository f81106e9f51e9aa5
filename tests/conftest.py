"""Shared test set-up, for every area's tests.

* The tests' own helpers live in `tests/helpers/` and import as `helpers.<module>` (pyproject's pytest
  `pythonpath` puts `tests/` on `sys.path`).
* `hub_server` / `hub_env`: one test Hub server (helpers/hub_server.py) for the whole session, and a client
  environment with empty caches per test; every test using them is marked `hub`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.hub_clients import HubEnv, patch_hub_in_process
from helpers.hub_server import HubServer


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """One test Hub server for the whole session (use ``hub_server.new_repo_id()`` per test)."""
    with HubServer() as hub:
        yield hub


@pytest.fixture
def hub_env(hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEnv]:
    """Client environment for ``hub_server`` with empty caches, applied to this process too."""
    from huggingface_hub.utils import close_session

    env = hub_server.env(tmp_path / "client")
    patch_hub_in_process(monkeypatch, env)
    yield HubEnv(hub=hub_server, env=env, home=Path(env["HF_HOME"]))
    hub_server.clear_faults()
    close_session()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the test Hub server says so with the `hub` marker (`-m "not hub"` leaves them out)."""
    for item in items:
        if "hub_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.hub)
