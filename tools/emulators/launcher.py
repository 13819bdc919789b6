"""Start Azurite and the Cosmos DB server on loopback, for the tests and ``make run-azure``.

Both are npm packages pinned in ``tools/emulators/package.json`` (``npm ci`` installs them; the
Makefile does it when ``node_modules`` is missing). Both keep everything in memory and listen
on free loopback ports, so several runs can share a machine.

    python tools/emulators/launcher.py run -- COMMAND...

starts both, runs COMMAND with the settings of the azure backend in its environment
(``DICOM_STORAGE=azure``, ``AzureWebJobsStorage``, ``DICOM_COSMOS_CONNECTION``) and stops both
when COMMAND ends (or on Ctrl-C). The test fixtures use ``Emulators`` directly; it can also
stop and restart either server on the same ports, to test outages.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODE_MODULES = HERE / "node_modules"

# The keys the emulators ship with, published in their documentation: not secrets.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
COSMOS_KEY = (
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
)
# Extra Azurite accounts, so that every server process of a test run gets its own blobs and
# queues (queue names are fixed by the function app, so accounts are what keeps them apart).
EXTRA_ACCOUNTS = 12

_AZURITE_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at \S+:(\d+)"
)


def ensure_installed() -> None:
    """``npm ci`` the pinned emulators unless they are installed already."""
    if (NODE_MODULES / ".bin" / "azurite").exists() and (
        NODE_MODULES / "@vercel" / "cosmosdb-server"
    ).exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is needed to install Azurite and the Cosmos DB server")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(HERE)], check=True)


def _account_key(name: str) -> str:
    return base64.b64encode(f"dicomweb-{name}-key".encode()).decode()


@dataclass
class _Process:
    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(
        self, ready: re.Pattern[str], expected: int, timeout: float = 30
    ) -> list[re.Match[str]]:
        """Start and wait until ``expected`` lines of its output match ``ready``."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the reader thread below
        self.process = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        found: list[re.Match[str]] = []
        done = threading.Event()
        stream = self.process.stdout
        assert stream is not None

        def pump() -> None:
            # Keeps reading after startup, so a chatty server never blocks on a full pipe.
            for raw in stream:
                log.write(raw)
                log.flush()
                match = ready.search(raw.decode(errors="replace"))
                if match and not done.is_set():
                    found.append(match)
                    if len(found) >= expected:
                        done.set()
            log.close()
            stream.close()
            done.set()

        threading.Thread(target=pump, name=f"{self.name}-output", daemon=True).start()
        if not done.wait(timeout) or len(found) < expected:
            self.stop()
            raise RuntimeError(f"{self.name} did not start:\n{self.log_path.read_text()[-4000:]}")
        return found

    def signal(self, signum: int) -> None:
        """Send a signal to the server's process group (SIGSTOP/SIGCONT freeze and thaw it)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self, *, abrupt: bool = False) -> None:
        """Stop the server (SIGKILL when ``abrupt``, like a crash); waits until it is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL if abrupt else signal.SIGTERM)
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@dataclass
class Emulators:
    """Azurite (Blob, Queue, Table) and the Cosmos DB server, in memory, on loopback."""

    workdir: Path
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    cosmos_port: int = 0
    _azurite: _Process | None = None
    _cosmos: _Process | None = None
    _next_account: int = 0
    accounts: list[str] = field(default_factory=list)

    def start(self) -> Emulators:
        ensure_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.accounts = [f"dicomtest{i}" for i in range(EXTRA_ACCOUNTS)]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=self._guard(self.start_azurite, errors)),
            threading.Thread(target=self._guard(self.start_cosmos, errors)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise errors[0]
        return self

    @staticmethod
    def _guard(fn: Callable[[], None], errors: list[BaseException]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # handed to the starting thread
                errors.append(exc)

        return run

    def start_azurite(self) -> None:
        """Start Azurite (again, on the same ports if it ran before)."""
        accounts = ";".join(
            f"{name}:{key}"
            for name, key in [
                (AZURITE_ACCOUNT, AZURITE_KEY),
                *((a, _account_key(a)) for a in self.accounts),
            ]
        )
        args = [
            str(NODE_MODULES / ".bin" / "azurite"),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
            # Azurite reports usage to Microsoft unless told not to; with no route out it leaves
            # its unsent reports under /tmp, one directory per start.
            "--disableTelemetry",
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
        ]  # fmt: skip
        self._azurite = _Process(
            "azurite",
            args,
            {**os.environ, "AZURITE_ACCOUNTS": accounts},
            self.workdir,
            self.workdir / "azurite.log",
        )
        for match in self._azurite.start(_AZURITE_LISTENING, expected=3):
            port = int(match.group(2))
            if match.group(1) == "Blob":
                self.blob_port = port
            elif match.group(1) == "Queue":
                self.queue_port = port
            else:
                self.table_port = port

    def start_cosmos(self) -> None:
        """Start the Cosmos DB server (again, on the same port if it ran before; empty)."""
        self._cosmos = _Process(
            "cosmos",
            ["node", str(HERE / "cosmos.js"), "--port", str(self.cosmos_port)],
            dict(os.environ),
            self.workdir,
            self.workdir / "cosmos.log",
        )
        [match] = self._cosmos.start(re.compile(r"COSMOS_READY https://[^:]+:(\d+)"), expected=1)
        self.cosmos_port = int(match.group(1))

    def pause_azurite(self) -> None:
        """Freeze Azurite (requests hang, as on a network stall) until ``resume_azurite``."""
        if self._azurite is not None:
            self._azurite.signal(signal.SIGSTOP)

    def resume_azurite(self) -> None:
        if self._azurite is not None:
            self._azurite.signal(signal.SIGCONT)

    def pause_cosmos(self) -> None:
        """Freeze the Cosmos DB server (requests hang) until ``resume_cosmos``."""
        if self._cosmos is not None:
            self._cosmos.signal(signal.SIGSTOP)

    def resume_cosmos(self) -> None:
        if self._cosmos is not None:
            self._cosmos.signal(signal.SIGCONT)

    def stop_azurite(self, *, abrupt: bool = True) -> None:
        if self._azurite is not None:
            self._azurite.stop(abrupt=abrupt)

    def stop_cosmos(self, *, abrupt: bool = True) -> None:
        if self._cosmos is not None:
            self._cosmos.stop(abrupt=abrupt)

    def stop(self) -> None:
        self.stop_azurite(abrupt=False)
        self.stop_cosmos(abrupt=False)

    # -- settings for the app ---------------------------------------------------------------

    def storage_connection(self, account: str = AZURITE_ACCOUNT) -> str:
        key = AZURITE_KEY if account == AZURITE_ACCOUNT else _account_key(account)
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            f"BlobEndpoint={base}:{self.blob_port}/{account};"
            f"QueueEndpoint={base}:{self.queue_port}/{account};"
            f"TableEndpoint={base}:{self.table_port}/{account};"
        )

    def cosmos_connection(self) -> str:
        return f"AccountEndpoint=https://127.0.0.1:{self.cosmos_port}/;AccountKey={COSMOS_KEY};"

    def take_account(self) -> str:
        """An Azurite account no other server of this run uses (cycling when all are taken)."""
        account = self.accounts[self._next_account % len(self.accounts)]
        self._next_account += 1
        return account

    def environment(
        self, *, database: str = "dicom", account: str = AZURITE_ACCOUNT
    ) -> dict[str, str]:
        """The app settings of the azure backend on these emulators."""
        return {
            "DICOM_STORAGE": "azure",
            "AzureWebJobsStorage": self.storage_connection(account),
            "DICOM_COSMOS_CONNECTION": self.cosmos_connection(),
            "DICOM_COSMOS_DATABASE": database,
        }


@contextlib.contextmanager
def running(workdir: Path | None = None) -> Iterator[Emulators]:
    with tempfile.TemporaryDirectory(prefix="dicom-emulators-") as tmp:
        emulators = Emulators(workdir or Path(tmp)).start()
        try:
            yield emulators
        finally:
            emulators.stop()


def _run(command: Sequence[str]) -> int:
    with running() as emulators:
        print(
            f"Azurite on 127.0.0.1:{emulators.blob_port} (blob), :{emulators.queue_port} (queue);"
            f" Cosmos DB server on https://127.0.0.1:{emulators.cosmos_port}",
            flush=True,
        )
        child = subprocess.Popen(list(command), env={**os.environ, **emulators.environment()})
        # Ctrl-C reaches the child through the terminal; SIGTERM (make, CI) is passed on.
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue  # the child got it too; wait for it to finish shutting down


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run" and argv[1] == "--" and len(argv) > 2:
        return _run(argv[2:])
    if argv == ["install"]:
        ensure_installed()
        return 0
    print("usage: launcher.py run -- COMMAND... | launcher.py install", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
