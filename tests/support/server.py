"""A real server process for end-to-end tests: the local host, exactly as `make run` starts it.

Plain code, not fixtures: ``tests/conftest.py`` builds the session's ``server`` from
``backend_server``, and tests that need a server with settings of their own call
``start_server``/``stop_server`` (or ``backend_server``) themselves.

``BACKENDS`` is the storage backends the session runs on: both by default,
``DICOM_TEST_BACKENDS=local`` (or ``azure``) for one of them only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from dicom_core.settings import AzureSettings

if TYPE_CHECKING:
    from tests.support.azure_backdoor import RemoteFile
    from tools.emulators.launcher import Emulators

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [
    name
    for name in os.environ.get("DICOM_TEST_BACKENDS", "local,azure").split(",")
    if name.strip() in {"local", "azure"}
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running server process, where it listens and where it keeps its data."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    backend: str = "local"
    env: dict[str, str] = field(default_factory=dict)
    """The settings the server was started with (beyond the defaults)."""

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)  # type: ignore[arg-type]

    @property
    def azure(self) -> AzureSettings:
        """The azure backend's settings of this server (its account, database, container)."""
        return AzureSettings.from_mapping(self.env)

    def stored_files(self) -> list[Path] | list[RemoteFile]:
        if self.backend == "azure":
            from tests.support.azure_backdoor import blob_files

            return blob_files(self.azure)
        blobs = self.data_dir / "blobs"
        return sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []

    def staged_files(self) -> list[Path]:
        staging = self.data_dir / "staging"
        return sorted(staging.glob("*")) if staging.exists() else []


def start_server(tmp: Path, *, app_dir: Path = ROOT, **env: str) -> Server:
    """The app in ``app_dir`` (this project's by default) behind the runtime-driven host, as
    ``make run`` starts it."""
    port = free_port()
    data_dir = tmp / "data"
    log_path = tmp / "server.log"
    environment = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "DICOM_STORAGE": "local",
        # One process, so the PID the tests watch (memory, signals) is the one serving.
        "DICOM_LOCAL_WORKERS": "1",
        # Every end-to-end test goes through azure-functions-runtime, as Azure does.
        "DICOM_HOST_ENGINE": "runtime",
        # The host package and dicom_core come from this project whatever the app folder.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **env,
    }
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "functions_host"],
            cwd=app_dir,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
        try:
            httpx.get(url + "/", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
    return Server(
        url=url,
        data_dir=data_dir,
        process=process,
        log_path=log_path,
        backend=environment["DICOM_STORAGE"],
        env=dict(env),
    )


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


def azure_environment(emulators: Emulators) -> dict[str, str]:
    """Settings of the azure backend on the emulators, with an account and database of its own.

    Each server gets its own Azurite account (queue names are fixed by the function app) and
    its own Cosmos database, so servers of one session never see each other's data.
    """
    return {
        **emulators.environment(
            database=f"dicom-{uuid.uuid4().hex[:12]}", account=emulators.take_account()
        ),
        # Deleted files go at once, so tests can check that nothing is left behind; the
        # retrieve-during-delete tests set a delay of their own.
        "DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS": "0",
    }


@contextlib.contextmanager
def backend_server(
    name: str,
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
    **settings: str,
) -> Iterator[Server]:
    """A server of its own on ``backend``: its own data directory, on azure its own database;
    ``settings`` are more of its environment."""
    env = azure_environment(request.getfixturevalue("emulators")) if backend == "azure" else {}
    running = start_server(tmp_path_factory.mktemp(f"{name}-{backend}"), **env, **settings)
    try:
        yield running
    finally:
        stop_server(running)
