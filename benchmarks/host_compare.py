"""Our app on its two engines and on the legacy host, against Orthanc.

Usage::

    python benchmarks/host_compare.py [--rounds 3] [--workers N] [--quick]
        [--servers runtime,direct,legacy,orthanc] [--stow-count 300] [--seconds 8]
        [--concurrency 4] [--qido-studies 100] [--study-instances 40]

The four servers:

* ``runtime``: ``python -m functions_host`` with ``DICOM_HOST_ENGINE=runtime`` (the module's
  default, and what the tests use). The stand-in host routes each request as the Functions
  host does, invokes the function through Azure's Python runtime (azure-functions-runtime)
  and forwards the request over loopback to the runtime's own HTTP-streams server: one extra
  HTTP hop per request. It shows the path a request takes in Azure.
* ``direct``: ``python -m functions_host`` with ``DICOM_HOST_ENGINE=direct``, what ``make run``
  serves by default (``ENGINE`` in the Makefile). Same routing and the runtime's own
  function objects, but called in process (``functions_host/direct.py``): no hop.
* ``legacy``: the previous local host, which called the functions in-process from its own
  uvicorn server. It is no longer in the work tree; at run time ``git show`` extracts
  ``dicom_core/web/local_host.py`` and ``dicom_core/web/routing.py`` of commit 6ed7be3 into
  a temporary package ``legacy_host`` (``local_host.py`` + ``routing.py``). Only two lines
  are rewritten: its import of ``dicom_core.web.routing`` now names the sibling module, and
  its uvicorn factory string names ``legacy_host.local_host:create_app``. It needs no other
  compatibility tweak with today's code (it calls ``app.get_functions()`` once per process,
  which azure-functions 2.x requires); if one were ever needed it would be applied in
  :func:`extract_legacy_host` and printed at the start of a run.
* ``orthanc``: a fresh Orthanc with the DICOMweb plugin, started and stopped by
  ``benchmarks/orthanc.sh`` (which installs it from Debian if needed), as a known reference.

Why these four: ``make run``'s engine (``direct``) must stay ahead of Orthanc and near the
legacy host it replaced (ratios direct/orthanc and direct/legacy); the ``runtime`` engine
shows what Azure's path costs on top of it (ratio runtime/direct).

Ours all run the same app code on the same local backend (fresh temporary DATA_DIR,
``DICOM_LOG_LEVEL=WARNING``, cwd = repo root) with the same number of worker processes
(``--workers``, by default what ``make run`` uses: one per core, at most 4). Everything is on
loopback (127.0.0.1) only.

Each server run, on a freshly started server with empty storage, measures with one client
and one corpus for all servers:

1. STOW-RS instances/s at concurrency 1 and 4 (``benchmarks/stow.py``'s ``run_small``,
   its corpus of 512 x 512 CT slices, one instance per request);
2. then, after storing (untimed) a QIDO corpus (``benchmarks/search.py``'s studies of ten
   small instances) and one CT study (``benchmarks/corpus.py``), for ``--seconds`` each with
   ``--concurrency`` keep-alive clients after a warm-up:
   QIDO requests/s of a typical study search (OHIF's study list, a StudyDate range) and of a
   series search (``/studies/{uid}/series``); single-frame requests/s (multipart
   ``application/octet-stream``, ``transfer-syntax=*``); whole-study retrieve MB/s (multipart
   ``application/dicom``, ``transfer-syntax=*``).

Only correct answers count: a STOW answer must be 200 with one referenced and no failed
instance; a QIDO answer must list exactly the studies or series the corpus holds for the
query; a frame answer must be one part of exactly Rows x Columns x 2 bytes; a study answer
must have one Part 10 part ("DICM" after the preamble) per stored instance. Anything else is
counted and reported as an error, never as throughput. Rates count answers completed inside
the timed window. The server's CPU time (its process tree) per correct answer is printed
too: the difference between ``runtime`` and ``direct`` is the hop's CPU cost.

Why rounds: on a shared or virtual machine the CPU speed drifts by tens of percent from
minute to minute, so one run per server says more about the minute than the server. Each
round starts every server fresh, one after the other, with dirty pages flushed first
(``sync``) so that no server pays for another's write-back, and the order rotates by one
place every round (so that no server always runs first or last). The medians over rounds
are the figures to quote, with the ratios direct/legacy, runtime/direct and direct/orthanc
(each printed when both its servers ran). ``--quick`` (two rounds, small counts, short
phases; about 20 s per server and round) is a smoke run whose figures mean little. Counts
and durations are bounded; the script never asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import email.message
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import ct_instances  # noqa: E402
from benchmarks.retrieve import FRAMES_ANY, _header, _instance_path  # noqa: E402
from benchmarks.search import INCLUDE, StudySpec, datasets, part10, study_specs  # noqa: E402
from benchmarks.stow import (  # noqa: E402
    Level,
    Multipart,
    PhaseResult,
    RssSampler,
    StdlibPoster,
    prepare_corpora,
    run_small,
    tree_usage,
)
from benchmarks.stow_compare import wait_until_up  # noqa: E402

MB = 1_000_000
LEGACY_COMMIT = "6ed7be3"
LOOPBACK = "127.0.0.1"
SERVERS = ("runtime", "direct", "legacy", "orthanc")
#: (numerator, denominator, column head): the ratios of the summary, when both servers ran.
RATIOS = (
    ("direct", "legacy", "dir/legacy"),
    ("runtime", "direct", "rt/direct"),
    ("direct", "orthanc", "dir/orthanc"),
)
STUDY_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: The study search's date range: inside search.py's years (2015-2024), so the instances
#: that corpus.py dates today (STOW corpus, CT study) never match it.
DATE_RANGE = ("20170101", "20201231")
REQUEST_TIMEOUT = 60.0
START_TIMEOUT = 120.0
PROFILES = {
    "full": {
        "rounds": 3,
        "stow_count": 300,
        "seconds": 8.0,
        "warmup": 1.0,
        "qido_studies": 100,
        "study_instances": 40,
    },
    "quick": {
        "rounds": 2,
        "stow_count": 150,
        "seconds": 2.0,
        "warmup": 0.5,
        "qido_studies": 20,
        "study_instances": 12,
    },
}
#: name: (lower bound, upper bound); keeps every run bounded in count and time.
BOUNDS = {
    "rounds": (1, 15),
    "stow_count": (1, 2000),
    "seconds": (0.5, 60.0),
    "concurrency": (1, 32),
    "qido_studies": (1, 200),
    "study_instances": (1, 200),
    "workers": (1, 8),
}


def log(message: str) -> None:
    print(f"[host_compare] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ servers


@dataclass(frozen=True)
class Running:
    """A started server: its DICOMweb root and the PID whose process tree is its CPU."""

    name: str
    root: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def extract_legacy_host(target: Path) -> list[str]:
    """Write the legacy host as package ``legacy_host`` under ``target``.

    Returns what was changed beyond the two renaming rewrites (nothing so far), so that a
    run says so. A rewrite that does not apply exactly once stops the run: silently running
    something else than the old host would make the comparison meaningless.
    """

    def show(path: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{LEGACY_COMMIT}:{path}"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    local_host = show("dicom_core/web/local_host.py")
    routing = show("dicom_core/web/routing.py")
    rewrites = [
        ("from dicom_core.web.routing import", "from legacy_host.routing import"),
        ('"dicom_core.web.local_host:create_app"', '"legacy_host.local_host:create_app"'),
    ]
    for old, new in rewrites:
        if local_host.count(old) != 1:
            raise RuntimeError(f"old local_host.py: expected {old!r} once, found it otherwise")
        local_host = local_host.replace(old, new)
    package = target / "legacy_host"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'"""The local host of commit {LEGACY_COMMIT}, extracted by host_compare.py."""\n'
    )
    (package / "local_host.py").write_text(local_host)
    (package / "routing.py").write_text(routing)
    tweaks: list[str] = []  # compatibility tweaks beyond the rewrites: none needed
    return tweaks


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it and its workers), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def app_server(name: str, workers: int, legacy_dir: Path) -> Iterator[Running]:
    """One of ours, fresh: ``runtime`` or ``direct`` (python -m functions_host with that
    DICOM_HOST_ENGINE), or ``legacy`` (the host of commit 6ed7be3)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"host-compare-{name}-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        env = {
            **os.environ,
            "PORT": str(port),
            "DATA_DIR": str(data),
            "DICOM_STORAGE": "local",
            "DICOM_LOG_LEVEL": "WARNING",
            "DICOM_HOST": LOOPBACK,
            "DICOM_LOCAL_WORKERS": str(workers),
        }
        if name in ("runtime", "direct"):
            env["DICOM_HOST_ENGINE"] = name
            command = [sys.executable, "-m", "functions_host"]
        elif name == "legacy":
            env.pop("DICOM_HOST_ENGINE", None)
            paths = [str(legacy_dir), str(ROOT), os.environ.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
            command = [sys.executable, "-m", "legacy_host.local_host"]
        else:
            raise ValueError(f"not one of our servers: {name!r}")
        log_path = Path(scratch) / "server.log"
        with log_path.open("wb") as server_log:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            root = f"http://{LOOPBACK}:{port}/v2"
            began = time.monotonic()
            try:
                wait_until_up(f"{root}/studies?limit=1", timeout=START_TIMEOUT)
                if process.poll() is not None:
                    raise RuntimeError(f"exited with {process.returncode}")
            except RuntimeError as error:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} did not start ({error}); its log:\n{tail}") from None
            log(f"{name}: answering after {time.monotonic() - began:.1f} s")
            time.sleep(1)  # let every worker process finish its start-up too
            yield Running(name, root, process.pid)
        finally:
            _stop_group(process)


@contextlib.contextmanager
def orthanc_server() -> Iterator[Running]:
    """A fresh Orthanc from ``orthanc.sh`` (empty storage); its output shown if it fails."""
    script = str(HERE / "orthanc.sh")
    # Generous: the first start may install the Debian packages.
    started = subprocess.run(
        ["bash", script, "start"], capture_output=True, text=True, timeout=900, check=False
    )
    if started.returncode != 0 or not started.stdout.split():
        raise RuntimeError(f"orthanc.sh start failed:\n{started.stderr[-3000:]}")
    try:
        port = os.environ.get("ORTHANC_HTTP_PORT", "8042")
        yield Running(
            "orthanc", f"http://{LOOPBACK}:{port}/dicom-web", int(started.stdout.split()[-1])
        )
    finally:
        subprocess.run(["bash", script, "stop"], capture_output=True, timeout=120, check=False)


# ------------------------------------------------------------------------------ checks

#: status, Content-Type, body -> what is wrong with the answer, or None if it is correct.
Check = Callable[[int, str, bytes], str | None]


def multipart_parts(content_type: str, body: bytes) -> list[memoryview] | None:
    """The parts of a multipart body (without their headers), or None if it is not one."""
    message = email.message.Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if message.get_content_type() != "multipart/related" or not isinstance(boundary, str):
        return None
    delimiter = b"--" + boundary.encode()
    view = memoryview(body)
    parts: list[memoryview] = []
    position = body.find(delimiter)
    while position >= 0:
        position += len(delimiter)
        if body.startswith(b"--", position):
            return parts  # the close delimiter
        header_end = body.find(b"\r\n\r\n", position)
        if header_end < 0:
            return None
        start = header_end + 4
        position = body.find(b"\r\n" + delimiter, start)
        if position < 0:
            return None
        parts.append(view[start:position])
        position += 2
    return None


def qido_check(expected: int, uid_tag: str) -> Check:
    """A DICOM JSON list of exactly ``expected`` results, each with ``uid_tag``."""

    def check(status: int, content_type: str, body: bytes) -> str | None:
        if status == 204 and expected == 0:
            return None  # "no match" may come as 204 without a body
        if status != 200:
            return f"status {status}"
        try:
            results = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if not isinstance(results, list) or len(results) != expected:
            found = len(results) if isinstance(results, list) else type(results).__name__
            return f"{found} results, expected {expected}"
        if not all(isinstance(r, dict) and uid_tag in r for r in results):
            return f"a result without {uid_tag}"
        return None

    return check


def multipart_check(parts_problem: Callable[[list[memoryview]], str | None]) -> Check:
    """A 200 multipart answer whose parts ``parts_problem`` finds nothing wrong with."""

    def check(status: int, content_type: str, body: bytes) -> str | None:
        if status != 200:
            return f"status {status}"
        parts = multipart_parts(content_type, body)
        if parts is None:
            return f"not a multipart answer ({content_type})"
        return parts_problem(parts)

    return check


def frame_check(frame_bytes: int) -> Check:
    """One multipart part of exactly ``frame_bytes`` bytes."""

    def problem(parts: list[memoryview]) -> str | None:
        if len(parts) != 1 or len(parts[0]) != frame_bytes:
            return f"parts of {[len(p) for p in parts]} bytes, expected one of {frame_bytes}"
        return None

    return multipart_check(problem)


def study_check(instances: int) -> Check:
    """One Part 10 part (preamble, then "DICM") per stored instance."""

    def problem(parts: list[memoryview]) -> str | None:
        if len(parts) != instances:
            return f"{len(parts)} parts, expected {instances}"
        if not all(bytes(p[128:132]) == b"DICM" for p in parts):
            return "a part that is not a Part 10 file"
        return None

    return multipart_check(problem)


class CheckedStowPoster(StdlibPoster):
    """``stow.py``'s client, but a stored instance counts only if the answer says so:
    status 200, one Referenced SOP (0008,1199) item and no Failed SOP (0008,1198) item."""

    def post(self, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[str, str]:
        try:
            self._connection.request("POST", self._path, body=body, headers=headers)
            response = self._connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._connection.close()
            return type(error).__name__, str(error)
        text = data.decode("utf-8", errors="replace")
        if response.status != 200:
            return str(response.status), text
        try:
            answer = json.loads(data)
            stored = answer.get("00081199", {}).get("Value", [])
            failed = answer.get("00081198", {}).get("Value", [])
        except (ValueError, AttributeError):
            return "200-not-json", text
        if len(stored) != 1 or failed:
            return "200-not-stored", text
        return "200", ""


# ------------------------------------------------------------------------------ corpus


@dataclass
class Corpus:
    """Everything the runs send, made once so that every server gets the same bytes."""

    stow_levels: list[Level]
    stow_multipart: Multipart
    qido_studies: list[StudySpec]
    qido_bodies: list[list[bytes]]  # one list of Part 10 instances per study
    ct_instances: list[bytes]
    ct_paths: list[str] = field(default_factory=list)
    ct_study: str = ""
    frame_bytes: int = 0


def make_corpus(workdir: Path, stow_count: int, qido_studies: int, study_instances: int) -> Corpus:
    multipart = Multipart()
    levels, _ = prepare_corpora(
        workdir,
        argparse.Namespace(levels=[1, 4], count=stow_count, rows=512, cols=512, large_mb=0),
        multipart,
    )
    specs = study_specs(qido_studies * 10)  # search.py: ten instances per study
    bodies = [[part10(ds) for ds in datasets(spec)] for spec in specs]
    ct = list(ct_instances(study_instances, seed=5))
    headers = [_header(data) for data in ct]
    return Corpus(
        stow_levels=levels,
        stow_multipart=multipart,
        qido_studies=specs,
        qido_bodies=bodies,
        ct_instances=ct,
        ct_paths=[_instance_path(h) for h in headers],
        ct_study=f"/studies/{headers[0].StudyInstanceUID}",
        frame_bytes=int(headers[0].Rows) * int(headers[0].Columns) * 2,
    )


def store(root: str, groups: Sequence[Sequence[bytes]]) -> None:
    """STOW each group of instances as one multipart request; anything but 200 stops."""
    port, prefix = root_parts(root)
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=300)
    path = prefix + "/studies"
    try:
        for group in groups:
            framing = Multipart()
            body = framing.head + (b"\r\n" + framing.head).join(group) + framing.tail
            conn.request(
                "POST",
                path,
                body=body,
                headers={"Content-Type": framing.content_type, "Accept": "application/dicom+json"},
            )
            response = conn.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"storing failed with {response.status}: {answer[:300]!r}")
    finally:
        conn.close()


# ------------------------------------------------------------------------------ load


@dataclass
class Load:
    """One timed GET phase: correct answers, wrong ones, and the server's CPU meanwhile."""

    good: int = 0
    bad: int = 0
    good_bytes: int = 0
    seconds: float = 0.0
    server_cpu: float | None = None
    first_problem: str = ""


def run_gets(
    running: Running,
    requests: Sequence[tuple[str, str, Check]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> Load:
    """``concurrency`` keep-alive clients cycle through ``requests`` (path, Accept, check).

    Counted are answers that complete inside the window [warm-up end, + ``seconds``); the
    server's CPU is read at both ends of that window.
    """
    parts = root_parts(running.root)
    load = Load(seconds=seconds)
    lock = threading.Lock()
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection(LOOPBACK, parts[0], timeout=REQUEST_TIMEOUT)
        index = slot * max(1, len(requests) // concurrency)
        good = bad = good_bytes = 0
        problem = ""
        while time.monotonic() < stop_at:
            path, accept, check = requests[index % len(requests)]
            index += 1
            try:
                conn.request("GET", parts[1] + path, headers={"Accept": accept})
                response = conn.getresponse()
                body = response.read()
                wrong = check(response.status, response.getheader("Content-Type", ""), body)
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                body, wrong = b"", f"{type(error).__name__}: {error}"
            done = time.monotonic()
            if not start_at <= done < stop_at:
                continue
            if wrong is None:
                good += 1
                good_bytes += len(body)
            else:
                bad += 1
                problem = problem or f"{path}: {wrong}"
        conn.close()
        with lock:
            load.good += good
            load.bad += bad
            load.good_bytes += good_bytes
            load.first_problem = load.first_problem or problem

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu0 = tree_usage(running.pid)[1]
    time.sleep(max(0.0, stop_at - time.monotonic()))
    cpu1 = tree_usage(running.pid)[1]
    for thread in threads:
        thread.join(REQUEST_TIMEOUT + 10)
    load.server_cpu = cpu1 - cpu0
    return load


def root_parts(root: str) -> tuple[int, str]:
    """(port, path prefix) of a loopback DICOMweb root such as http://127.0.0.1:7071/v2."""
    rest = root.removeprefix(f"http://{LOOPBACK}:")
    port, _, prefix = rest.partition("/")
    return int(port), "/" + prefix.rstrip("/")


# ------------------------------------------------------------------------------ one run

#: (key, unit): the rows of the table, in order.
ROWS = [
    ("STOW c=1", "inst/s"),
    ("STOW c=4", "inst/s"),
    ("QIDO study search", "req/s"),
    ("QIDO series search", "req/s"),
    ("frame (octet-stream)", "req/s"),
    ("whole study", "MB/s"),
]
#: Column heads of the per-round lines.
SHORT = {
    "STOW c=1": "STOW c=1",
    "STOW c=4": "STOW c=4",
    "QIDO study search": "QIDO stu",
    "QIDO series search": "QIDO ser",
    "frame (octet-stream)": "frame",
    "whole study": "study MB/s",
}


@dataclass
class RunFigures:
    rate: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, float] = field(default_factory=dict)  # server CPU per correct answer
    errors: dict[str, int] = field(default_factory=dict)


def matching(corpus: Corpus) -> int:
    """How many QIDO corpus studies the study search's date range holds."""
    low, high = DATE_RANGE
    return sum(low <= spec.date <= high for spec in corpus.qido_studies)


def get_phases(corpus: Corpus) -> list[tuple[str, list[tuple[str, str, Check]]]]:
    low, high = DATE_RANGE
    study_query = (
        f"/studies?limit=101&offset=0&fuzzymatching=false&{INCLUDE}&StudyDate={low}-{high}"
    )
    json_accept = "application/dicom+json"
    return [
        (
            "QIDO study search",
            [(study_query, json_accept, qido_check(min(matching(corpus), 101), "0020000D"))],
        ),
        (
            "QIDO series search",
            [
                (
                    f"/studies/{spec.uid}/series",
                    json_accept,
                    qido_check(len(spec.series), "0020000E"),
                )
                for spec in corpus.qido_studies
            ],
        ),
        (
            "frame (octet-stream)",
            [
                (p + "/frames/1", FRAMES_ANY, frame_check(corpus.frame_bytes))
                for p in corpus.ct_paths
            ],
        ),
        ("whole study", [(corpus.ct_study, STUDY_ACCEPT, study_check(len(corpus.ct_instances)))]),
    ]


def measure(running: Running, corpus: Corpus, args: argparse.Namespace) -> RunFigures:
    """Every workload on one freshly started server."""
    figures = RunFigures()
    for level in corpus.stow_levels:
        key = f"STOW c={level.concurrency}"
        result: PhaseResult = run_small(
            f"{running.root}/studies",
            level.bodies,
            level.warmup,
            corpus.stow_multipart,
            level.concurrency,
            make_poster=CheckedStowPoster,
            request_timeout=REQUEST_TIMEOUT,
            time_limit=args.seconds * 15,
            sampler=lambda: RssSampler(running.pid),
        )
        stored = result.requests - result.errors
        figures.rate[key] = result.per_second
        figures.errors[key] = result.errors
        if stored and result.server_cpu is not None:
            figures.cpu_ms[key] = 1000 * result.server_cpu / stored
        if result.first_error:
            log(f"{running.name} {key}: {result.errors} errors, first: {result.first_error}")
    started = time.monotonic()
    store(running.root, corpus.qido_bodies)
    store(
        running.root,
        [corpus.ct_instances[i : i + 10] for i in range(0, len(corpus.ct_instances), 10)],
    )
    log(
        f"{running.name}: stored the QIDO and retrieve corpus in {time.monotonic() - started:.1f} s"
    )
    for key, requests in get_phases(corpus):
        load = run_gets(
            running,
            requests,
            concurrency=args.concurrency,
            seconds=args.seconds,
            warmup=args.warmup,
        )
        unit = dict(ROWS)[key]
        figures.rate[key] = (load.good_bytes / MB if unit == "MB/s" else load.good) / load.seconds
        figures.errors[key] = load.bad
        if load.good and load.server_cpu is not None:
            figures.cpu_ms[key] = 1000 * load.server_cpu / load.good
        if load.bad:
            log(f"{running.name} {key}: {load.bad} wrong answers, first: {load.first_problem}")
    return figures


# ------------------------------------------------------------------------------ output


def _cell(value: float | None, width: int = 10) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.1f}"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or not denominator:
        return f"{'-':>8}"
    return f"{numerator / denominator:8.2f}"


def print_round(number: int, name: str, figures: RunFigures) -> None:
    cells = " ".join(_cell(figures.rate.get(key)) for key, _ in ROWS)
    errors = sum(figures.errors.values())
    print(f"{number:<5} {name:<8} {cells}   errors {errors}", flush=True)


def median_of(runs: list[RunFigures], table: str, key: str) -> float | None:
    values = [getattr(run, table)[key] for run in runs if key in getattr(run, table)]
    return statistics.median(values) if values else None


def print_summary(results: dict[str, list[RunFigures]], servers: Sequence[str]) -> None:
    for table, title in (
        ("rate", "medians over rounds (correct answers only)"),
        ("cpu_ms", "server CPU per correct answer, ms (medians; its whole process tree)"),
    ):
        print(f"\n{title}")
        ratios = [(a, b, head) for a, b, head in RATIOS if a in servers and b in servers]
        header = f"{'workload':<22} {'unit':<7}" + "".join(f"{s:>11}" for s in servers)
        header += "".join(f"{head:>12}" for _, _, head in ratios)
        print(header)
        print("-" * len(header))
        for key, unit in ROWS:
            medians = {s: median_of(results[s], table, key) for s in servers}
            line = f"{key:<22} {unit if table == 'rate' else 'ms':<7}"
            line += "".join(" " + _cell(medians[s]) for s in servers)
            line += "".join("    " + _ratio(medians[a], medians[b]) for a, b, _ in ratios)
            print(line)
    errors = {s: sum(sum(run.errors.values()) for run in results[s]) for s in servers}
    print(
        "\nwrong answers or failed requests (all rounds): "
        + ", ".join(f"{s} {n}" for s, n in errors.items())
    )


# ------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 rounds, small counts, short phases"
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 3, --quick 2)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="worker processes of each of our servers (default: make run's, one per core, max 4)",
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help="subset, comma-separated")
    parser.add_argument("--stow-count", type=int, help="STOW instances per level (300; quick 150)")
    parser.add_argument("--seconds", type=float, help="timed seconds per GET phase (8; quick 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="clients of the GET phases")
    parser.add_argument("--qido-studies", type=int, help="QIDO corpus studies (100; quick 20)")
    parser.add_argument(
        "--study-instances", type=int, help="CT instances of the retrieved study (40; quick 12)"
    )
    args = parser.parse_args(argv)
    for name, value in PROFILES["quick" if args.quick else "full"].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    for name, (low, high) in BOUNDS.items():
        if not low <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be within {low} and {high}")
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not args.server_list or any(s not in SERVERS for s in args.server_list):
        parser.error(f"--servers takes names among {', '.join(SERVERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    servers: list[str] = args.server_list
    with tempfile.TemporaryDirectory(prefix="host-compare-") as scratch:
        legacy_dir = Path(scratch) / "legacy"
        if "legacy" in servers:
            tweaks = extract_legacy_host(legacy_dir)
            log(
                f"legacy = the local host of {LEGACY_COMMIT}, extracted to {legacy_dir}; "
                + ("tweaks: " + "; ".join(tweaks) if tweaks else "no compatibility tweak needed")
            )
        started = time.monotonic()
        corpus = make_corpus(
            Path(scratch) / "corpus", args.stow_count, args.qido_studies, args.study_instances
        )
        log(f"corpus made in {time.monotonic() - started:.1f} s")
        starters: dict[str, Callable[[], contextlib.AbstractContextManager[Running]]] = {
            "runtime": lambda: app_server("runtime", args.workers, legacy_dir),
            "direct": lambda: app_server("direct", args.workers, legacy_dir),
            "legacy": lambda: app_server("legacy", args.workers, legacy_dir),
            "orthanc": orthanc_server,
        }
        print(
            f"{args.rounds} round(s); our servers with {args.workers} worker process(es); "
            f"STOW {args.stow_count} instances per level; GET phases {args.seconds:g} s with "
            f"{args.concurrency} clients; QIDO corpus {args.qido_studies} studies "
            f"({matching(corpus)} in the searched date range); "
            f"retrieved study {args.study_instances} CT instances of "
            f"{len(corpus.ct_instances[0]) / MB:.2f} MB"
        )
        print(f"\n{'round':<5} {'server':<8} " + " ".join(f"{SHORT[key]:>10}" for key, _ in ROWS))
        results: dict[str, list[RunFigures]] = {s: [] for s in servers}
        for number in range(1, args.rounds + 1):
            shift = (number - 1) % len(servers)
            for name in servers[shift:] + servers[:shift]:
                os.sync()
                time.sleep(1)
                with starters[name]() as running:
                    figures = measure(running, corpus, args)
                results[name].append(figures)
                print_round(number, name, figures)
        print_summary(results, servers)
        print(
            f"(units: {', '.join(f'{k} {u}' for k, u in ROWS)}; the CT slices are "
            f"{corpus.frame_bytes} bytes of pixels each)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
