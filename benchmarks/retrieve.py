"""WADO-RS retrieve benchmark against any DICOMweb server (ours, Orthanc side by side).

Usage::

    python benchmarks/retrieve.py [--url http://127.0.0.1:7071/v2] [--orthanc [URL]]
        [--concurrency 4] [--seconds 5] [--series-size 500] [--ct-count 40]

``--url`` is our DICOMweb root; ``--orthanc`` adds a second server (by default
``http://127.0.0.1:8042/dicom-web``, as ``benchmarks/orthanc.sh start`` runs it) and every
phase is measured on both, one after the other, with the same data and the same client.

What it measures, and why that way:

* Series metadata of a 500-instance series (what OHIF fetches first). Instances are small
  (64 x 64), because metadata does not depend on pixels and the store takes seconds.
* Frames per second: one frame per request (OHIF's shape, Accept
  ``multipart/related; type=application/octet-stream; transfer-syntax=*``) from
  - 512 x 512 CT instances as stored,
  - a 100-frame, 52 MB instance as stored (random frames, so the server cannot win by
    reading one file sequentially),
  - JPEG 2000 lossless CT instances transcoded to Explicit VR Little Endian,
  - JPEG lossless (process 14, selection value 1) CT instances, likewise,
  - a 120-frame JPEG baseline instance (pydicom's ``color3d_jpeg_baseline.dcm``) transcoded
    to Explicit VR Little Endian: each request must decode one frame, not the file.
* Whole instances as stored (``application/dicom; transfer-syntax=*``): MB/s.
* A whole series of ``--whole-series`` 512 x 512 CT instances (263 MB for 500) as one
  multipart answer, as a viewer prefetching a series or a research export asks for it. An
  answer counts only with every part in it. The same bytes served by a minimal HTTP server in
  this process (``loopback``: a thread per connection handing one prepared body to the
  kernel) are the ceiling:
  what the client and the loopback interface can move on this machine.
* Rendered JPEG (``/rendered``, quality 90) of CT instances: latency percentiles.

Each phase runs ``--seconds`` with ``--concurrency`` threads, each with its own keep-alive
connection (``http.client``), after a short warm-up. Every answer is checked for status 200
and counted as an error otherwise. Client and server share the machine, so figures are
relative: read ours next to Orthanc's. The script never asserts on time.
"""

from __future__ import annotations

import argparse
import http.client
import io
import random
import socketserver
import statistics
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import imagecodecs
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances, large_instance_file
from benchmarks.stow import Multipart

MB = 1_000_000
DEFAULT_URL = "http://127.0.0.1:7071/v2"
ORTHANC_URL = "http://127.0.0.1:8042/dicom-web"
FRAMES_ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*"
FRAMES_LE = (
    'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'
)


# --------------------------------------------------------------------------- the corpus


@dataclass
class Corpus:
    """Instance paths (relative to a DICOMweb root) for each phase, on one server."""

    series_metadata: str = ""
    ct: list[str] = field(default_factory=list)
    large: str = ""
    large_frames: int = 0
    j2k: list[str] = field(default_factory=list)
    jpeg_lossless: list[str] = field(default_factory=list)
    jpeg: str = ""
    jpeg_frames: int = 0
    whole_series: str = ""
    whole_series_parts: int = 0
    whole_series_bytes: bytes = b""


def _instance_path(ds: pydicom.Dataset) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _header(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def _to_j2k(data: bytes) -> bytes:
    """A CT instance re-encoded as JPEG 2000 lossless, with a fresh SOP Instance UID."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.compress(JPEG2000Lossless, generate_instance_uid=True)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _to_jpeg_lossless(data: bytes) -> bytes:
    """A CT instance re-encoded as JPEG lossless SV1 (libjpeg-turbo, via imagecodecs, since
    pydicom cannot encode it), with a fresh SOP Instance UID."""
    ds = pydicom.dcmread(io.BytesIO(data))
    codestream = imagecodecs.jpeg8_encode(
        ds.pixel_array, lossless=True, predictor=1, bitspersample=int(ds.BitsStored)
    )
    ds.PixelData = encapsulate([bytes(codestream)])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _jpeg_instance() -> bytes:
    """pydicom's 120-frame JPEG baseline sample, with fresh UIDs so reruns store anew."""
    path = get_testdata_file("color3d_jpeg_baseline.dcm")
    assert isinstance(path, str), "pydicom's test file color3d_jpeg_baseline.dcm is missing"
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = ds.get("PatientID") or "BENCH-JPEG"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class Uploader:
    """STOW-RS, one instance per request, multipart/related (what every server accepts)."""

    def __init__(self, root: str) -> None:
        parts = urlsplit(root)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/")

    def store(self, instances: Sequence[bytes]) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        for data in instances:
            framing = Multipart()
            body = framing.encode(data)
            conn.request(
                "POST",
                self.prefix + "/studies",
                body=body,
                headers={"Content-Type": framing.content_type, "Accept": "application/dicom+json"},
            )
            response = conn.getresponse()
            answer = response.read()
            if response.status not in (200, 202):
                raise RuntimeError(f"store failed with {response.status}: {answer[:300]!r}")
        conn.close()

    def store_file(self, path: Path) -> None:
        self.store([path.read_bytes()])


def build_corpus(
    uploaders: Sequence[Uploader],
    workdir: Path,
    series_size: int,
    ct_count: int,
    whole_series: int = 0,
) -> Corpus:
    """Make every instance once, store it on each server, and return the paths."""
    corpus = Corpus()
    log("making and storing the corpus")
    series = list(ct_instances(series_size, rows=64, cols=64, series_per_study=1, seed=3))
    first = _header(series[0])
    corpus.series_metadata = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
    ct = list(ct_instances(ct_count, series_per_study=1, seed=5))
    corpus.ct = [_instance_path(_header(data)) for data in ct]
    j2k = [_to_j2k(data) for data in ct[: max(ct_count // 2, 1)]]
    corpus.j2k = [_instance_path(_header(data)) for data in j2k]
    lossless = [_to_jpeg_lossless(data) for data in ct[: max(ct_count // 2, 1)]]
    corpus.jpeg_lossless = [_instance_path(_header(data)) for data in lossless]
    jpeg = _jpeg_instance()
    jpeg_header = _header(jpeg)
    corpus.jpeg = _instance_path(jpeg_header)
    corpus.jpeg_frames = int(jpeg_header.NumberOfFrames)
    large_path = workdir / "large-100-frames.dcm"
    large_instance_file(large_path, 100 * 512 * 512 * 2)
    large_header = pydicom.dcmread(large_path, stop_before_pixels=True)
    corpus.large = _instance_path(large_header)
    corpus.large_frames = int(large_header.NumberOfFrames)
    whole = (
        list(
            ct_instances(whole_series, series_per_study=1, instances_per_study=whole_series, seed=7)
        )
        if whole_series
        else []
    )
    if whole:
        whole_header = _header(whole[0])
        corpus.whole_series = (
            f"/studies/{whole_header.StudyInstanceUID}/series/{whole_header.SeriesInstanceUID}"
        )
        corpus.whole_series_parts = len(whole)
        corpus.whole_series_bytes = loopback_body(whole)
    for uploader in uploaders:
        started = time.monotonic()
        uploader.store(whole)
        uploader.store(series)
        uploader.store(ct)
        uploader.store(j2k)
        uploader.store(lossless)
        uploader.store([jpeg])
        uploader.store_file(large_path)
        log(
            f"stored on {uploader.host}:{uploader.port}{uploader.prefix} in"
            f" {time.monotonic() - started:.1f} s"
        )
    return corpus


LOOPBACK_BOUNDARY = "loopback-ceiling-boundary"


def loopback_body(instances: Sequence[bytes]) -> bytes:
    """The multipart body the loopback server answers with: the series, as a server would."""
    parts = [
        f"--{LOOPBACK_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + b"\r\n"
        for data in instances
    ]
    return b"".join(parts) + f"--{LOOPBACK_BOUNDARY}--\r\n".encode()


class LoopbackServer:
    """The ceiling: a minimal HTTP/1.1 server on loopback that answers every GET with one
    prepared body (Content-Length, keep-alive). A thread per connection hands the body to the
    kernel with ``sendall`` of a memoryview: no file reads, no copies in Python, no parsing
    beyond finding the end of the request head. What is left is the client and the loopback
    interface."""

    def __init__(self, body: bytes) -> None:
        self.body = memoryview(body)
        self.head = (
            'HTTP/1.1 200 OK\r\nContent-Type: multipart/related; type="application/dicom";'
            f" boundary={LOOPBACK_BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        server = self

        class Answer(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                pending = b""
                while True:
                    data = self.request.recv(65536)
                    if not data:
                        return
                    pending += data
                    while b"\r\n\r\n" in pending:
                        _, pending = pending.split(b"\r\n\r\n", 1)
                        self.request.sendall(server.head)
                        self.request.sendall(server.body)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicom-web"


# --------------------------------------------------------------------------- the load


@dataclass
class Result:
    server: str
    phase: str
    requests: int
    errors: int
    seconds: float
    body_bytes: int
    latencies: list[float]
    unit: str = "req"

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def run_phase(
    server: str,
    phase: str,
    root: str,
    requests: Callable[[random.Random], Iterator[tuple[str, str]]],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 0.5,
    check: Callable[[], BodyCheck] | None = None,
) -> Result:
    """Run ``concurrency`` clients for ``seconds``; each GETs what ``requests`` yields.

    An answer counts as an error unless its status is 200 and ``check`` (if any) accepts its
    body. With ``check`` the body is read in 1 MiB chunks and fed to it, never held whole,
    as a client that stores or forwards a large answer would read it."""
    parts = urlsplit(root)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prefix = parts.path.rstrip("/")
    lock = threading.Lock()
    totals = {"requests": 0, "errors": 0, "bytes": 0}
    latencies: list[float] = []
    first_error: list[str] = []
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds

    def client(seed: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=120)
        mine = {"requests": 0, "errors": 0, "bytes": 0}
        my_latencies: list[float] = []
        for path, accept in requests(random.Random(seed)):
            now = time.monotonic()
            if now >= stop_at:
                break
            began = time.perf_counter()
            try:
                conn.request("GET", prefix + path, headers={"Accept": accept})
                response = conn.getresponse()
                status = response.status
                checker = check() if check is not None else None
                if checker is None or status != 200:
                    body = response.read()
                    size = len(body)
                else:
                    size = 0
                    while chunk := response.read(1 << 20):
                        checker.feed(chunk)
                        size += len(chunk)
                    body = b""
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=120)
                status, body, checker = 0, str(exc).encode(), None
                size = len(body)
            elapsed = time.perf_counter() - began
            if now < start_at:
                continue
            mine["requests"] += 1
            mine["bytes"] += size
            my_latencies.append(elapsed)
            if status != 200 or (check is not None and (checker is None or not checker.ok())):
                mine["errors"] += 1
                if not first_error:
                    first_error.append(f"{status} for {path}: {body[:200]!r} ({size} bytes)")
        conn.close()
        with lock:
            for key, value in mine.items():
                totals[key] += value
            latencies.extend(my_latencies)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if first_error:
        log(f"{server} {phase}: first error: {first_error[0]}")
    return Result(
        server=server,
        phase=phase,
        requests=totals["requests"],
        errors=totals["errors"],
        seconds=seconds,
        body_bytes=totals["bytes"],
        latencies=latencies,
    )


def cycle(
    paths: Sequence[str], accept: str
) -> Callable[[random.Random], Iterator[tuple[str, str]]]:
    def requests(rng: random.Random) -> Iterator[tuple[str, str]]:
        index = rng.randrange(len(paths))
        while True:
            yield paths[index % len(paths)], accept
            index += 1

    return requests


def random_frames(
    path: str, count: int, accept: str
) -> Callable[[random.Random], Iterator[tuple[str, str]]]:
    def requests(rng: random.Random) -> Iterator[tuple[str, str]]:
        while True:
            yield f"{path}/frames/{rng.randrange(1, count + 1)}", accept

    return requests


def phases(
    corpus: Corpus,
) -> list[tuple[str, Callable[[random.Random], Iterator[tuple[str, str]]], str]]:
    return [
        (
            "series metadata (500 inst.)",
            cycle([corpus.series_metadata + "/metadata"], "application/dicom+json"),
            "req",
        ),
        ("CT frames, as stored", cycle([p + "/frames/1" for p in corpus.ct], FRAMES_ANY), "frame"),
        (
            "52 MB instance frames",
            random_frames(corpus.large, corpus.large_frames, FRAMES_ANY),
            "frame",
        ),
        (
            "J2K frames -> ExplVR LE",
            cycle([p + "/frames/1" for p in corpus.j2k], FRAMES_LE),
            "frame",
        ),
        (
            "JPEG-LL frames -> ExplVR LE",
            cycle([p + "/frames/1" for p in corpus.jpeg_lossless], FRAMES_LE),
            "frame",
        ),
        (
            "JPEG frames -> ExplVR LE",
            random_frames(corpus.jpeg, corpus.jpeg_frames, FRAMES_LE),
            "frame",
        ),
        (
            "CT whole instances",
            # Multipart, because Orthanc's plugin refuses single-part application/dicom.
            cycle(corpus.ct, 'multipart/related; type="application/dicom"; transfer-syntax=*'),
            "MB",
        ),
        (
            "rendered JPEG (CT)",
            cycle([p + "/rendered?quality=90" for p in corpus.ct], "image/jpeg"),
            "img",
        ),
        *(
            [
                (
                    f"whole series ({corpus.whole_series_parts} CT)",
                    cycle([corpus.whole_series], WHOLE_SERIES_ACCEPT),
                    "MB",
                )
            ]
            if corpus.whole_series
            else []
        ),
    ]


WHOLE_SERIES_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class BodyCheck:
    """A whole-series answer, checked as it streams: it is right when it carries every
    instance (``parts`` DICOM files: each has the 'DICM' prefix after its preamble) and ends
    with a closing boundary."""

    def __init__(self, parts: int) -> None:
        self.parts = parts
        self.found = 0
        self.tail = b""

    def feed(self, chunk: bytes) -> None:
        # 'DICM' may straddle two chunks: the seam (3 bytes either side) is counted apart.
        self.found += chunk.count(b"DICM") + (self.tail[-3:] + chunk[:3]).count(b"DICM")
        self.tail = (self.tail + chunk[-64:])[-64:]

    def ok(self) -> bool:
        return self.found >= self.parts and self.tail.rstrip().endswith(b"--")


def whole_series_check(parts: int) -> Callable[[], BodyCheck]:
    return lambda: BodyCheck(parts)


# --------------------------------------------------------------------------- output


def log(message: str) -> None:
    print(f"[retrieve.py] {message}", file=sys.stderr, flush=True)


def print_table(results: Sequence[Result]) -> None:
    header = (
        f"{'phase':30s} {'server':8s} {'rate':>12s} {'p50 ms':>8s} {'p95 ms':>8s}"
        f" {'MB/s':>8s} {'errors':>6s}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        mb_s = result.body_bytes / MB / result.seconds if result.seconds else 0.0
        rate = f"{result.rate:9.1f}/s" if result.unit != "MB" else f"{mb_s:8.1f}MB/s"
        print(
            f"{result.phase:30s} {result.server:8s} {rate:>12s}"
            f" {result.percentile(0.5) * 1000:8.1f} {result.percentile(0.95) * 1000:8.1f}"
            f" {mb_s:8.1f} {result.errors:6d}"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="our DICOMweb root")
    parser.add_argument(
        "--orthanc", nargs="?", const=ORTHANC_URL, default=None, help="also measure this server"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--series-size", type=int, default=500)
    parser.add_argument("--ct-count", type=int, default=40)
    parser.add_argument(
        "--whole-series",
        type=int,
        default=500,
        help="instances of the whole-series phase (512 x 512 CT; 0 leaves the phase out)",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", default="", help="comma-separated phase name prefixes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.simplefilter("ignore")
    args = parse_args(argv)
    servers = [("ours", args.url)]
    if args.orthanc:
        servers.append(("orthanc", args.orthanc))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus = build_corpus(
            [Uploader(root) for _, root in servers],
            Path(tmp),
            args.series_size,
            args.ct_count,
            args.whole_series,
        )
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    results: list[Result] = []
    with LoopbackServer(corpus.whole_series_bytes) as loopback:
        for phase, requests, unit in phases(corpus):
            if wanted and not any(phase.startswith(w) for w in wanted):
                continue
            whole = phase.startswith("whole series")
            check = whole_series_check(corpus.whole_series_parts) if whole else None
            measured = [*servers, ("loopback", loopback.root)] if whole else servers
            for name, root in measured:
                log(f"{phase} on {name}")
                result = run_phase(
                    name,
                    phase,
                    root,
                    requests,
                    concurrency=args.concurrency,
                    seconds=args.seconds,
                    check=check,
                )
                result.unit = unit
                results.append(result)
    print(f"\nconcurrency {args.concurrency}, {args.seconds:g} s per phase\n")
    print_table(results)
    if any(r.phase.startswith("series metadata") for r in results):
        print(
            "\nseries metadata latency (p50): "
            + ", ".join(
                f"{r.server} {statistics.median(r.latencies) * 1000:.1f} ms"
                for r in results
                if r.phase.startswith("series metadata") and r.latencies
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
