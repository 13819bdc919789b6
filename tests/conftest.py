"""Shared fixtures: a real server process (the local host, exactly as `make run` starts it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)  # type: ignore[arg-type]

    def stored_files(self) -> list[Path]:
        blobs = self.data_dir / "blobs"
        return sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []

    def staged_files(self) -> list[Path]:
        staging = self.data_dir / "staging"
        return sorted(staging.glob("*")) if staging.exists() else []


def start_server(tmp: Path, **env: str) -> Server:
    port = free_port()
    data_dir = tmp / "data"
    log_path = tmp / "server.log"
    environment = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(data_dir),
        "DICOM_STORAGE": "local",
        **env,
    }
    with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "dicom_core.web.local_host"],
            cwd=ROOT,
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
    return Server(url=url, data_dir=data_dir, process=process, log_path=log_path)


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGINT)
    try:
        return server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
