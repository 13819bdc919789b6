"""Shared fixtures: a real server process (the local host, exactly as `make run` starts it).

The session ``server`` runs once per storage backend (test ids ``[local]`` and ``[azure]``):
``local`` is SQLite and files, ``azure`` is Cosmos DB, Blob Storage and Storage queues on the
real emulators (Azurite and the Cosmos DB server, started once per session by ``emulators``).
``DICOM_TEST_BACKENDS=local`` (or ``azure``) runs one of them only. Tests that reach into one
backend's stores directly are marked ``local_backend`` or ``azure_backend`` and run there only.

Only fixtures and hooks live here; the server process itself is plain code in
``tests.support.server``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.server import BACKENDS, Server, backend_server

if TYPE_CHECKING:
    from tools.emulators.launcher import Emulators


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulators]:
    """Azurite and the Cosmos DB server, in memory on free loopback ports, for the session."""
    from tools.emulators.launcher import Emulators

    running = Emulators(tmp_path_factory.mktemp("emulators")).start()
    yield running
    running.stop()


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    with backend_server("server", backend, tmp_path_factory, request) as running:
        yield running


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``local_backend`` (``azure_backend``) reach into that backend's stores
    directly: they run on that backend only."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        other = {"local": "azure_backend", "azure": "local_backend"}.get(str(backend))
        (dropped if other and item.get_closest_marker(other) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
