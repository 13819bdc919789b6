"""While the local host drains after a stop, a new connection is refused, not taken in and
then reset.

A probe sent SIGTERM to the main process during load: connections made while the workers
finished their last requests completed the handshake, sent a whole STOW body, and were reset
when the host exited. A client cannot tell that from a crash in the middle of a store. The
main process now closes its copy of the listening socket as it stops the workers
(supervisor.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support.server import start_server

# Hang guards, not timing claims.
ANSWER_WITHIN = 20.0
GONE_WITHIN = 60.0
REQUEST = b"GET /v2/studies?PatientID=none HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def attempt(host: str, port: int) -> str:
    """One request on a new connection: 'answered', 'refused' (at connect) or what else."""
    try:
        connection = socket.create_connection((host, port), timeout=ANSWER_WITHIN)
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"connect failed: {type(exc).__name__}"
    with connection:
        try:
            connection.sendall(REQUEST)
            head = connection.recv(64)
        except OSError as exc:
            return f"taken in, then {type(exc).__name__}"
    return "answered" if head.startswith(b"HTTP/1.1 ") else f"taken in, then {head!r}"


def listens(process: psutil.Process, port: int) -> bool:
    """Whether ``process`` holds a listening socket on ``port``."""
    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for c in process.net_connections(kind="tcp")
        )
    except psutil.NoSuchProcess:
        return False


def alive(process: psutil.Process) -> bool:
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def slow_upload(host: str, port: int, stop: threading.Event) -> None:
    """A STOW whose body trickles in: the worker holding it drains for the graceful timeout."""
    with contextlib.suppress(OSError), socket.create_connection((host, port)) as connection:
        connection.sendall(
            b"POST /v2/studies HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/dicom\r\nContent-Length: 100000000\r\n\r\n"
        )
        while not stop.wait(0.1):
            connection.sendall(bytes(1024))


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="POSIX signals")
def test_connections_made_while_the_host_drains_are_refused(tmp_path: Path) -> None:
    server = start_server(tmp_path, DICOM_LOCAL_WORKERS="2")
    address = urlsplit(server.url)
    host, port = str(address.hostname), int(address.port or 80)
    main = psutil.Process(server.process.pid)
    stop = threading.Event()
    uploader = threading.Thread(target=slow_upload, args=(host, port, stop), daemon=True)
    try:
        assert attempt(host, port) == "answered"
        uploader.start()
        time.sleep(0.5)  # the upload is in a worker, keeping it busy through the drain
        workers = [child for child in main.children(recursive=True) if listens(child, port)]
        assert workers, "no worker process listens on the port"
        os.kill(main.pid, signal.SIGTERM)
        deadline = time.monotonic() + GONE_WITHIN
        while listens(main, port) and time.monotonic() < deadline:
            time.sleep(0.02)
        # The main process let go of the socket while the workers still drain (the upload
        # holds one for the graceful timeout); before, it held the socket until they had gone.
        assert any(alive(worker) for worker in workers), "the socket was held to the end"

        # The workers serve on until the supervisor tells them, then close their listeners;
        # a connection caught in that instant may be reset (supervisor.py), so the test
        # waits for the first refusal before it judges.
        while attempt(host, port) != "refused" and time.monotonic() < deadline:
            time.sleep(0.02)
        outcomes = []
        for _ in range(20):
            outcomes.append(attempt(host, port))
            time.sleep(0.05)
        assert set(outcomes) == {"refused"}, outcomes
        assert any(alive(worker) for worker in workers), "refused only once the drain was over"
        stop.set()  # the upload ends, the drain with it, and the host must exit on its own
        assert server.process.wait(timeout=GONE_WITHIN) == 0
    finally:
        stop.set()
        uploader.join(timeout=10)
        for process in main.children(recursive=True) if main.is_running() else []:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        try:
            server.process.wait(timeout=GONE_WITHIN)  # the drain ends with the upload's
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=GONE_WITHIN)
