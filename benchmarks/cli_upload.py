"""``dicomweb upload`` against ``benchmarks/stow.py``'s own STOW client, on one corpus.

Usage::

    python benchmarks/cli_upload.py [--rounds 5] [--count 400] [--concurrency 4]
        [--rows 512 --cols 512] [--workers N] [--cli-arg=--batch-mb=8 ...]

The issue asks the command-line client to reach at least 80% of the throughput of the
benchmark's client on the same corpus. What each side does, and why the comparison is fair:

* One corpus of ``--count`` CT slices (about 0.5 MB each) is written to disk once. Each run
  gets a fresh server, as ``make run`` starts it (``python -m functions_host``, the ``direct``
  engine, durable writes on, an empty DATA_DIR), so both clients store the same instances
  into the same empty index, and neither run pays for the other's rows or write-back (dirty
  pages are synced before each server starts).
* The server is warmed up before either client's clock starts: one STOW of an instance that
  is not in the corpus, so that its first-request costs (imports, SQLite pages) fall on
  neither side.
* ``stow.py``: its ``run_small`` with ``--concurrency`` threads, each a keep-alive
  ``http.client`` connection, one instance per request, every body read and encoded before
  its clock starts. That is its best case: no file reading, no discovery, while timed.
* ``dicomweb upload``: the real command in its own process (``python -m dicomweb_cli upload
  DIR --json``) with its defaults and ``--concurrency``, timed from the process start to its
  exit: interpreter start, discovery by content, header reads, journal writes and all. Its
  own figure for the upload phase alone (the summary's ``seconds``) is printed beside it.

Rounds alternate the order of the two clients; the medians over rounds are the figures to
quote, with the ratio of the command's whole-run rate to the benchmark client's rate. Rates
are stored instances per second and MB/s of file bytes (MB = 10^6 bytes). Tests never assert
on time; this script only prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances, write_corpus
from benchmarks.stow import POSTERS, Multipart, run_small
from benchmarks.stow_compare import ROOT, our_server

MB = 1_000_000


@dataclass
class Run:
    """One client's run: its wall time and what it stored."""

    client: str
    seconds: float
    stored: int
    file_bytes: int
    client_cpu: float
    phase_seconds: float | None = None  # the CLI's own figure, upload phase only

    @property
    def per_second(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.file_bytes / MB / self.seconds if self.seconds else 0.0


def warm_up(root: str, body: bytes, multipart: Multipart) -> None:
    """One STOW of an instance outside the corpus: first-request costs fall on no one."""
    poster = POSTERS["stdlib"](f"{root}/studies", 60.0)
    try:
        status, detail = poster.post(body, {"Content-Type": multipart.content_type})
    finally:
        poster.close()
    if not status.startswith("2"):
        raise RuntimeError(f"warm-up STOW failed: {status} {detail[:300]}")


def run_stow_client(root: str, paths: Sequence[Path], concurrency: int) -> Run:
    multipart = Multipart()
    bodies = [multipart.encode(path.read_bytes()) for path in paths]
    result = run_small(
        f"{root}/studies",
        bodies,
        [],
        multipart,
        concurrency,
        make_poster=POSTERS["stdlib"],
        request_timeout=120.0,
        time_limit=1800.0,
        sampler=lambda: None,
    )
    if result.errors:
        print(f"  warning: stow.py: {result.errors} errors; first: {result.first_error}")
    stored = result.requests - result.errors
    size = sum(path.stat().st_size for path in paths[:stored])
    return Run("stow.py", result.seconds, stored, size, result.client_cpu)


def run_cli(root: str, corpus: Path, concurrency: int, extra: Sequence[str], scratch: Path) -> Run:
    journal = scratch / f"journal-{time.monotonic_ns()}"
    command = [
        sys.executable,
        "-m",
        "dicomweb_cli",
        "upload",
        str(corpus),
        "--url",
        root.removesuffix("/v2"),
        "--journal",
        str(journal),
        "--concurrency",
        str(concurrency),
        "--json",
        *extra,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if finished.returncode != 0:
        print(f"  warning: dicomweb exited {finished.returncode}: {finished.stderr[-500:]}")
    summary = json.loads(finished.stdout)
    size = sum(p.stat().st_size for p in corpus.iterdir())
    stored = int(summary["stored"]) + int(summary["already_present"])
    if stored != sum(1 for _ in corpus.iterdir()):
        size = 0  # a partial run has no fair byte figure
    return Run("dicomweb", seconds, stored, size, cpu, float(summary["seconds"]))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=400, help="instances in the corpus")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight, both")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--workers", type=int, help="server processes (default: its own)")
    parser.add_argument(
        "--cli-arg",
        action="append",
        default=[],
        help="an extra argument for dicomweb upload (repeat; e.g. --cli-arg=--batch-mb=8)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cli-upload-bench-") as scratch_name:
        scratch = Path(scratch_name)
        corpus = scratch / "corpus"
        paths = write_corpus(
            corpus, ct_instances(args.count, seed=11, rows=args.rows, cols=args.cols)
        )
        warm_multipart = Multipart()
        warm_body = warm_multipart.encode(
            next(ct_instances(1, seed=12, rows=args.rows, cols=args.cols))
        )
        corpus_mb = sum(path.stat().st_size for path in paths) / MB
        print(
            f"corpus: {len(paths)} CT instances ({args.rows}x{args.cols}, {corpus_mb:.1f} MB); "
            f"concurrency {args.concurrency}; dicomweb options: {args.cli_arg or 'defaults'}"
        )
        print(
            f"{'round':<6} {'client':<9} {'seconds':>8} {'inst/s':>8} {'MB/s':>7} "
            f"{'cli CPU':>8} {'upload phase s':>15}",
            flush=True,
        )
        runs: dict[str, list[Run]] = {"stow.py": [], "dicomweb": []}
        for number in range(1, args.rounds + 1):
            order = ["stow.py", "dicomweb"] if number % 2 else ["dicomweb", "stow.py"]
            for client in order:
                os.sync()
                time.sleep(1)
                with our_server(args.workers) as root:
                    warm_up(root, warm_body, warm_multipart)
                    if client == "stow.py":
                        run = run_stow_client(root, paths, args.concurrency)
                    else:
                        run = run_cli(root, corpus, args.concurrency, args.cli_arg, scratch)
                runs[client].append(run)
                phase = f"{run.phase_seconds:15.2f}" if run.phase_seconds is not None else ""
                print(
                    f"{number:<6} {client:<9} {run.seconds:8.2f} {run.per_second:8.1f} "
                    f"{run.mb_per_second:7.1f} {run.client_cpu:7.1f}s {phase}",
                    flush=True,
                )
        print("\nmedians over rounds")
        medians = {}
        for client, done in runs.items():
            rate = statistics.median(r.per_second for r in done)
            mbs = statistics.median(r.mb_per_second for r in done)
            medians[client] = rate
            print(f"       {client:<9} {rate:8.1f} inst/s {mbs:7.1f} MB/s")
        ratio = medians["dicomweb"] / medians["stow.py"] if medians["stow.py"] else 0.0
        print(f"       dicomweb / stow.py = {ratio:.2f} (the issue asks for at least 0.80)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
