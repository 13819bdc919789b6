"""The local host's worker processes end with their main process: after a SIGKILL of the main
process (which cannot stop them itself) none is left serving the port (serve.die_with_parent).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.support.server import start_server

# A hang guard, not a timing claim: uvicorn's graceful stop takes up to 5 s after the signal.
GONE_WITHIN = 30.0


def workers_of(main: psutil.Process, count: int) -> list[psutil.Process]:
    """The ``count`` serving processes uvicorn spawned (waiting until each has started)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = main.children(recursive=True)
        if len(children) >= count:
            return children
        time.sleep(0.2)
    raise AssertionError(f"expected {count} worker processes, found {main.children()}")


def refuses_connections(url: str) -> bool:
    address = urlsplit(url)
    try:
        with socket.create_connection((address.hostname, address.port), timeout=5):
            return False
    except OSError:
        return True


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_workers_end_when_the_main_process_is_killed(tmp_path: Path) -> None:
    server = start_server(tmp_path, DICOM_LOCAL_WORKERS="2")
    main = psutil.Process(server.process.pid)
    workers: list[psutil.Process] = []
    try:
        workers = workers_of(main, 2)
        # Both workers are up and serving before the main process goes.
        for _ in range(4):
            assert (
                httpx.get(server.url + "/v2/studies?PatientID=none", timeout=30).status_code == 204
            )
        os.kill(main.pid, signal.SIGKILL)
        server.process.wait(timeout=GONE_WITHIN)
        gone, alive = psutil.wait_procs(workers, timeout=GONE_WITHIN)
        assert alive == [], f"orphaned workers still running: {alive}"
        assert refuses_connections(server.url)
    finally:
        for process in workers:  # only the processes this test started, by their PIDs
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
