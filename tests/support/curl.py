"""Running the spec documents' curl commands as written, against a server of their own.

The curl tutorial and the ingest-and-query guide are what users copy and paste, so their
requests are replayed through real curl in a shell: placeholders filled, nothing else changed
but the flags that report the status code and keep the body.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, start_server, stop_server
from tests.support.tutorial_files import make_tutorial_files

_OUTPUT = re.compile(r"--output\s+\"?([^\"\s]+)")


@contextlib.contextmanager
def tutorial_server(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[tuple[Server, Path]]:
    """A local server, and a directory holding the tutorial's three files (not yet stored)."""
    if shutil.which("curl") is None:
        pytest.fail("curl is required for the tutorial tests (apt-get install curl)")
    tmp = tmp_path_factory.mktemp(name)
    files = tmp / "dcms"
    make_tutorial_files(files)
    server = start_server(tmp)
    try:
        yield server, files
    finally:
        stop_server(server)


def fill(command: str, server: Server, *, version: str = "2", files: Path | None = None) -> str:
    """The tutorial's placeholders replaced: service URL, API version, token, file directory."""
    filled = (
        command.replace("{Service URL}", server.url)
        .replace("{version}", version)
        .replace("{token value}", "token")
    )
    return filled if files is None else filled.replace("{path-to-dicoms}", str(files))


def run_curl(command: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run ``command`` in bash in ``cwd``; return the status code and the response body.

    A command that names its own ``--output`` file keeps it; otherwise the body goes to
    body.out.
    """
    named = _OUTPUT.search(command)
    observed = command + (' -s -w "%{http_code}"' if named else ' -s -o body.out -w "%{http_code}"')
    done = subprocess.run(
        ["bash", "-c", observed], cwd=cwd, capture_output=True, timeout=60, check=True, env=env
    )
    body = cwd / (named.group(1) if named else "body.out")
    return int(done.stdout.decode()[-3:]), body.read_bytes()
