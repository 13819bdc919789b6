"""STOW-RS throughput and memory benchmark against any DICOMweb server.

Usage::

    python benchmarks/stow.py --url http://127.0.0.1:7071/v2 [--count 500]
        [--concurrency 1,4] [--large-mb 500] [--server-pid PID] [--orthanc]
        [--client stdlib|httpx] [--rows 512 --cols 512] [--workdir DIR]

``--url`` is the DICOMweb root: instances are POSTed to ``{url}/studies`` (PS3.18 10.5), so
the same script measures our server (``http://127.0.0.1:7071/v2``) and Orthanc
(``http://127.0.0.1:8042/dicom-web``, which ``--orthanc`` makes the default URL).

What it measures, and why that way:

* Small instances: ``--count`` CT slices of about 0.5 MB, one instance per request, sent by
  a pool of N threads, each with its own keep-alive connection (``http.client`` by default,
  ``--client httpx`` to cross-check). Every body is a complete ``multipart/related`` message
  encoded before the clock starts, so the client only writes bytes and reads short JSON
  answers. Client and server CPU are both printed, so a reader can tell whether the client,
  the server's CPU, or something else (fsync, a lock) was the limit. Each concurrency level gets
  its own corpus with fresh UIDs: resending the same instances would measure a server's
  conflict path (409) rather than its store path.
* One large instance (``--large-mb``): its body is generated from the file on disk in
  chunks with a ``Content-Length``, never read whole, because the point is to see whether
  the *server* holds the body in memory. The server's resident memory (process and
  children) is sampled every 50 ms while it uploads; baseline, peak and growth are printed.

Figures use MB = 10^6 bytes of request body. The script is bounded in time (a deadline per
phase and a timeout per request), counts non-2xx answers and transport failures as errors,
and exits non-zero only if it crashes. It never asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances, large_instance_file, write_corpus

try:
    import psutil

    HAVE_PSUTIL = True
except ImportError:  # the /proc reader below covers Linux without it
    HAVE_PSUTIL = False

MB = 1_000_000
DEFAULT_URL = "http://127.0.0.1:7071/v2"
SAMPLE_SECONDS = 0.05
UPLOAD_CHUNK = 1 << 20


# --------------------------------------------------------------------------- request bodies


@dataclass(frozen=True)
class Multipart:
    """One ``multipart/related; type="application/dicom"`` framing with a random boundary.

    Why random: the boundary must not occur inside any part; 32 random hex digits make that
    practically impossible for pixel data without scanning every body.
    """

    boundary: str = field(default_factory=lambda: "bench-" + secrets.token_hex(16))

    @property
    def content_type(self) -> str:
        """The request Content-Type, with the type parameter PS3.18 asks STOW clients for."""
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    @property
    def head(self) -> bytes:
        """Bytes before the instance: the opening delimiter and the part's header."""
        return f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()

    @property
    def tail(self) -> bytes:
        """Bytes after the instance: the closing delimiter."""
        return f"\r\n--{self.boundary}--\r\n".encode()

    def encode(self, instance: bytes) -> bytes:
        """Return a complete single-part request body."""
        return b"".join((self.head, instance, self.tail))


def file_body(path: Path, multipart: Multipart, chunk: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    """Yield a single-part body whose part is read from ``path`` one chunk at a time."""
    yield multipart.head
    with path.open("rb") as fp:
        while data := fp.read(chunk):
            yield data
    yield multipart.tail


# ----------------------------------------------------------------------- server memory


def _proc_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, read from /proc (Linux without psutil)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if not Path(f"/proc/{current}").exists():
            continue
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def _proc_rss_and_cpu(pid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds (user + system) of one process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0, 0.0
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
            break
    # Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def tree_usage(pid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds of ``pid`` plus all its descendants.

    Why descendants: a server may hand requests to worker processes (an ASGI server with
    workers, the Functions host's language worker), and their memory and CPU are the
    server's too.
    """
    if not HAVE_PSUTIL:
        usages = [_proc_rss_and_cpu(p) for p in _proc_tree(pid)]
        return sum(u[0] for u in usages), sum(u[1] for u in usages)
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0.0
    rss, cpu = 0, 0.0
    for process in processes:
        try:
            with process.oneshot():
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return rss, cpu


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` plus all its descendants."""
    return tree_usage(pid)[0]


class RssSampler:
    """Sample a process tree's RSS every ``interval`` seconds in a background thread.

    Why sampling rather than reading VmHWM: the high-water mark covers the whole life of the
    process and ignores children; sampling gives the peak of *this* phase. The tree's CPU
    time over the phase is kept too: a server near 100% of both cores is CPU-bound, one far
    below it waits on disk (fsync) or on the client.
    """

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS) -> None:
        """Prepare to watch ``pid``; nothing is sampled until the ``with`` block starts."""
        self.pid = pid
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        """Take the baseline, then start sampling.

        The baseline is the median of a few readings, so that one transient allocation
        does not set it.
        """
        readings = []
        for _ in range(5):
            readings.append(tree_rss(self.pid))
            time.sleep(self.interval)
        self.baseline = int(statistics.median(readings))
        self.peak = self.baseline
        self.cpu_seconds = -tree_usage(self.pid)[1]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling, with one last reading so that a short phase still has a peak."""
        self._stop.set()
        self._thread.join()
        rss, cpu = tree_usage(self.pid)
        self.peak = max(self.peak, rss)
        self.cpu_seconds += cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss(self.pid))
            self.samples += 1

    @property
    def growth(self) -> int:
        """Peak minus baseline, in bytes."""
        return self.peak - self.baseline


def listening_pid(url: str) -> int | None:
    """Find the process listening on the URL's TCP port, when --server-pid is not given.

    Why: the server's PID changes every run; the port does not. Needs psutil and enough
    privilege to see other users' sockets, else the memory columns stay empty.
    """
    if not HAVE_PSUTIL:
        return None
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            return int(conn.pid) if conn.pid else None
    return None


# ----------------------------------------------------------------------------- running


@dataclass
class PhaseResult:
    """What one timed phase did; the table at the end is printed from these."""

    name: str
    concurrency: int
    requests: int = 0
    errors: int = 0
    body_bytes: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    rss_baseline: int | None = None
    rss_peak: int | None = None
    server_cpu: float | None = None
    first_error: str = ""

    @property
    def per_second(self) -> float:
        """Stored instances (2xx answers) per second; failures are not throughput."""
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        """Request body megabytes (10^6 bytes) of stored instances per second."""
        return self.body_bytes / MB / self.seconds if self.seconds else 0.0

    def record(self, status: str, size: int, detail: str = "") -> None:
        """Count one finished request; any non-2xx status or failure is an error."""
        self.requests += 1
        self.statuses[status] += 1
        if status.startswith("2"):
            self.body_bytes += size
        else:
            self.errors += 1
            if not self.first_error:
                self.first_error = f"{status}: {' '.join(detail.split())[:300]}"


class Poster(Protocol):
    """One client connection that POSTs bodies to one URL and reports (status, detail)."""

    def post(self, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[str, str]:
        """Send one request; a transport failure is reported as its exception's name."""
        ...

    def close(self) -> None:
        """Close the connection."""
        ...


class StdlibPoster:
    """A keep-alive ``http.client`` connection: the cheapest client Python has.

    Why the default: measured here on 0.5 MB STOW bodies against Orthanc, ``http.client``
    spent about 0.4 ms of client CPU per request and ``httpx.Client`` 1.0 to 1.3 ms. On a
    2-core machine the client's CPU is taken from the server, so the lighter client is the
    one that lets the server show its own limit.
    """

    def __init__(self, url: str, timeout: float) -> None:
        """Prepare a connection to ``url``; it opens on the first request."""
        parts = urlsplit(url)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        self._connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")

    def post(self, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[str, str]:
        """Send one request and read the whole answer, reconnecting after a failure."""
        try:
            self._connection.request("POST", self._path, body=body, headers=headers)
            response = self._connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            self._connection.close()  # http.client reopens it on the next request
            return type(error).__name__, str(error)
        if 200 <= response.status < 300:
            return str(response.status), ""
        return str(response.status), data.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


class HttpxPoster:
    """An ``httpx.Client`` with one keep-alive connection, for cross-checking the stdlib one."""

    def __init__(self, url: str, timeout: float) -> None:
        """Open a client whose connect timeout stays short whatever the request timeout."""
        self._url = url
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))

    def post(self, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[str, str]:
        """Send one request and read the whole answer."""
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return type(error).__name__, str(error)
        return str(response.status_code), "" if response.is_success else response.text

    def close(self) -> None:
        """Close the client and its connection."""
        self._client.close()


POSTERS: dict[str, Callable[[str, float], Poster]] = {
    "stdlib": StdlibPoster,
    "httpx": HttpxPoster,
}


def run_small(
    url: str,
    bodies: Sequence[bytes],
    warmup: Sequence[bytes],
    multipart: Multipart,
    concurrency: int,
    *,
    make_poster: Callable[[str, float], Poster],
    request_timeout: float,
    time_limit: float,
    sampler: Callable[[], RssSampler | None],
) -> PhaseResult:
    """POST every body once with ``concurrency`` threads and time it.

    Each thread owns a connection, so there is no shared connection pool to contend on, and
    first sends one warm-up body untimed so that connection set-up is not in the figure.
    Threads start together on a barrier; the clock runs from the barrier to the last answer.
    """
    result = PhaseResult(name="small instances", concurrency=concurrency)
    headers = {"Content-Type": multipart.content_type, "Accept": "application/dicom+json"}
    next_index = itertools.count().__next__  # atomic under the GIL: one body per call
    lock = threading.Lock()
    clock = {"t0": 0.0, "cpu0": 0.0, "deadline": float("inf")}

    def start_clock() -> None:
        # Runs once, when every thread has warmed up and reached the start line.
        clock["cpu0"], clock["t0"] = time.process_time(), time.perf_counter()
        clock["deadline"] = clock["t0"] + time_limit

    # The timeout only matters if a warm-up hangs; the barrier then breaks instead of waiting.
    start_line = threading.Barrier(concurrency, action=start_clock, timeout=request_timeout + 30)
    crashes: list[BaseException] = []

    def worker(slot: int) -> None:
        local = PhaseResult(name="", concurrency=concurrency)
        poster = make_poster(url, request_timeout)
        try:
            if slot < len(warmup):
                poster.post(warmup[slot], headers)
            start_line.wait()
            while time.perf_counter() < clock["deadline"]:
                index = next_index()
                if index >= len(bodies):
                    break
                status, detail = poster.post(bodies[index], headers)
                local.record(status, len(bodies[index]), detail)
        except BaseException as error:  # a bug, not a failed request: report it from main
            crashes.append(error)
            start_line.abort()  # release the other threads rather than leave them waiting
        finally:
            poster.close()
        with lock:
            result.requests += local.requests
            result.errors += local.errors
            result.body_bytes += local.body_bytes
            result.statuses.update(local.statuses)
            result.first_error = result.first_error or local.first_error

    with sampler() or contextlib.nullcontext() as probe:
        threads = [
            threading.Thread(target=worker, args=(slot,), name=f"stow-{slot}", daemon=True)
            for slot in range(concurrency)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result.seconds = time.perf_counter() - clock["t0"]
        result.client_cpu = time.process_time() - clock["cpu0"]
    if crashes:
        raise RuntimeError(f"a client thread crashed: {crashes[0]!r}") from crashes[0]
    if probe is not None:
        result.rss_baseline, result.rss_peak = probe.baseline, probe.peak
        result.server_cpu = probe.cpu_seconds
    return result


def run_large(
    url: str,
    path: Path,
    *,
    make_poster: Callable[[str, float], Poster],
    request_timeout: float,
    sampler: Callable[[], RssSampler | None],
) -> PhaseResult:
    """Stream one large instance from disk and watch the server's memory meanwhile."""
    multipart = Multipart()
    size = path.stat().st_size
    headers = {
        "Content-Type": multipart.content_type,
        "Accept": "application/dicom+json",
        # Explicit length: without it the client would send chunked transfer coding, which some
        # servers refuse, and a server could not preallocate or reject an oversize body early.
        "Content-Length": str(len(multipart.head) + size + len(multipart.tail)),
    }
    result = PhaseResult(name="large instance", concurrency=1)
    poster = make_poster(url, request_timeout)
    try:
        with sampler() or contextlib.nullcontext() as probe:
            cpu0, t0 = time.process_time(), time.perf_counter()
            status, detail = poster.post(file_body(path, multipart), headers)
            result.seconds = time.perf_counter() - t0
            result.client_cpu = time.process_time() - cpu0
    finally:
        poster.close()
    if probe is not None:
        result.rss_baseline, result.rss_peak = probe.baseline, probe.peak
        result.server_cpu = probe.cpu_seconds
    result.record(status, size, detail)
    return result


# ------------------------------------------------------------------------------ output


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / (1 << 20):,.0f} MiB"


def _share(cpu_seconds: float | None, wall_seconds: float) -> str:
    """CPU time as a percentage of one core over the phase (200% = both cores here)."""
    if cpu_seconds is None or not wall_seconds:
        return "n/a"
    return f"{100.0 * cpu_seconds / wall_seconds:.0f}%"


def print_phase(result: PhaseResult) -> None:
    """Print one phase's figures as soon as it ends, so an interrupted run still reports."""
    print(
        f"  {result.name}, concurrency {result.concurrency}: {result.requests} requests in "
        f"{result.seconds:.2f} s, stored {result.per_second:.1f} instances/s, "
        f"{result.mb_per_second:.1f} MB/s; errors {result.errors}; "
        f"statuses {dict(result.statuses)}; CPU (% of one core): "
        f"client {_share(result.client_cpu, result.seconds)}, "
        f"server {_share(result.server_cpu, result.seconds)}"
    )
    if result.rss_baseline is not None and result.rss_peak is not None:
        print(
            f"  server RSS: baseline {_mib(result.rss_baseline)}, peak {_mib(result.rss_peak)}, "
            f"growth {_mib(result.rss_peak - result.rss_baseline)}"
        )
    if result.first_error:
        print(f"  first error: {result.first_error}")
    sys.stdout.flush()


def print_table(results: Sequence[PhaseResult]) -> None:
    """Print the summary table."""
    header = (
        f"{'phase':<16} {'conc':>4} {'requests':>8} {'errors':>6} {'seconds':>8} "
        f"{'inst/s':>8} {'MB/s':>7} {'cli CPU':>7} {'srv CPU':>7} "
        f"{'RSS base':>10} {'RSS peak':>10} {'RSS growth':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        growth = None
        if r.rss_baseline is not None and r.rss_peak is not None:
            growth = r.rss_peak - r.rss_baseline
        print(
            f"{r.name:<16} {r.concurrency:>4} {r.requests:>8} {r.errors:>6} {r.seconds:>8.2f} "
            f"{r.per_second:>8.1f} {r.mb_per_second:>7.1f} "
            f"{_share(r.client_cpu, r.seconds):>7} {_share(r.server_cpu, r.seconds):>7} "
            f"{_mib(r.rss_baseline):>10} {_mib(r.rss_peak):>10} {_mib(growth):>10}"
        )
    print("(MB = 10^6 bytes of request body; CPU in % of one core, 2 cores = 200%)")


# -------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; --orthanc only changes the default URL."""
    parser = argparse.ArgumentParser(
        description="STOW-RS throughput and server-memory benchmark for a DICOMweb server."
    )
    parser.add_argument(
        "--url",
        help=f"DICOMweb root; instances go to {{url}}/studies (default {DEFAULT_URL}, "
        "or Orthanc's http://127.0.0.1:$ORTHANC_HTTP_PORT/dicom-web with --orthanc)",
    )
    parser.add_argument("--orthanc", action="store_true", help="default --url to Orthanc's")
    parser.add_argument("--count", type=int, default=500, help="instances per level")
    parser.add_argument(
        "--concurrency", default="1,4", help="comma-separated client counts (default 1,4)"
    )
    parser.add_argument(
        "--large-mb", type=float, default=500, help="size of the large instance, 0 to skip"
    )
    parser.add_argument(
        "--server-pid", type=int, help="server PID for memory figures (default: the listener)"
    )
    parser.add_argument("--rows", type=int, default=512, help="rows of each CT slice")
    parser.add_argument("--cols", type=int, default=512, help="columns of each CT slice")
    parser.add_argument(
        "--time-limit", type=float, default=300, help="seconds per phase before it stops"
    )
    parser.add_argument("--request-timeout", type=float, default=60, help="seconds")
    parser.add_argument("--large-timeout", type=float, default=900, help="seconds")
    parser.add_argument(
        "--client",
        choices=sorted(POSTERS),
        default="stdlib",
        help="HTTP client: stdlib http.client (least CPU, default) or httpx",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the corpus here instead of a deleted temp dir"
    )
    args = parser.parse_args(argv)
    if args.url is None:
        port = os.environ.get("ORTHANC_HTTP_PORT", "8042")
        args.url = f"http://127.0.0.1:{port}/dicom-web" if args.orthanc else DEFAULT_URL
    args.url = args.url.rstrip("/")
    try:
        args.levels = [int(level) for level in args.concurrency.split(",") if level.strip()]
    except ValueError:
        parser.error("--concurrency takes integers separated by commas, e.g. 1,4")
    if not args.levels or min(args.levels) < 1:
        parser.error("--concurrency levels must be at least 1")
    return args


@dataclass
class Level:
    """One concurrency level's pre-encoded bodies: warm-up ones (one per client) and timed ones.

    Why per level: every request must store a new instance; reusing warm-up or timed
    instances across levels would hit the server's duplicate path instead of its store path.
    """

    concurrency: int
    warmup: list[bytes]
    bodies: list[bytes]


def prepare_corpora(
    workdir: Path, args: argparse.Namespace, multipart: Multipart
) -> tuple[list[Level], Path | None]:
    """Write every corpus to disk and pre-encode the small bodies, all before any timing."""
    levels: list[Level] = []
    for position, concurrency in enumerate(args.levels):
        paths = write_corpus(
            workdir / f"level-{position}-c{concurrency}",
            ct_instances(args.count + concurrency, seed=position, rows=args.rows, cols=args.cols),
        )
        bodies = [multipart.encode(path.read_bytes()) for path in paths]
        levels.append(Level(concurrency, bodies[:concurrency], bodies[concurrency:]))
    large: Path | None = None
    if args.large_mb > 0:
        large = workdir / "large.dcm"
        large_instance_file(large, int(args.large_mb * MB))
    return levels, large


def main(argv: Sequence[str] | None = None) -> int:
    """Run every phase and print figures; returns 0 unless something crashed."""
    args = parse_args(argv)
    stow_url = f"{args.url}/studies"
    pid = args.server_pid or listening_pid(args.url)
    print(f"STOW-RS benchmark: POST {stow_url} with the {args.client} client")
    print(f"server PID for memory figures: {pid if pid else 'unknown (no memory figures)'}")

    def sampler() -> RssSampler | None:
        return RssSampler(pid) if pid else None

    multipart = Multipart()
    with tempfile.TemporaryDirectory(prefix="stow-bench-") as scratch:
        workdir = args.workdir or Path(scratch)
        t0 = time.perf_counter()
        levels, large = prepare_corpora(workdir, args, multipart)
        # The corpus just written would otherwise be written back by the kernel while the
        # clock runs, competing with the server's own syncs for the disk.
        os.sync()
        level_mb = sum(len(b) for b in levels[0].bodies) / MB
        print(
            f"corpus: {len(levels)} x {args.count} CT instances "
            f"({args.rows}x{args.cols}, {level_mb:.1f} MB per level)"
            + (f", large instance {large.stat().st_size / MB:.1f} MB" if large else "")
            + f", generated in {time.perf_counter() - t0:.1f} s into {workdir}"
        )
        sys.stdout.flush()
        results: list[PhaseResult] = []
        while levels:
            level = levels.pop(0)  # dropped once sent, to give the memory back
            result = run_small(
                stow_url,
                level.bodies,
                level.warmup,
                multipart,
                level.concurrency,
                make_poster=POSTERS[args.client],
                request_timeout=args.request_timeout,
                time_limit=args.time_limit,
                sampler=sampler,
            )
            print_phase(result)
            results.append(result)
        if large is not None:
            result = run_large(
                stow_url,
                large,
                make_poster=POSTERS[args.client],
                request_timeout=args.large_timeout,
                sampler=sampler,
            )
            print_phase(result)
            results.append(result)
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
