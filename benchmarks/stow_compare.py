"""Side-by-side STOW-RS throughput: our server and Orthanc, in alternating rounds.

Usage::

    python benchmarks/stow_compare.py [--rounds 5] [--count 1000] [--concurrency 1,4]
        [--workers N]

Why rounds: on a shared or virtual machine the CPU speed drifts by tens of percent from one
minute to the next, so one run of each server says more about the minute than the server.
Each round starts both servers fresh (empty storage), one after the other, and the order
flips every round; the medians over rounds are the figures to quote. Before each server
starts, dirty pages of the previous run are flushed (``sync``), so that neither server pays
for the other's write-back.

Each run is ``benchmarks/stow.py`` (its own corpus of fresh UIDs, same client, no large
instance). Ours runs as ``make run`` would (``python -m functions_host``) on port
7081 with a temporary DATA_DIR; Orthanc is started and stopped by ``benchmarks/orthanc.sh``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUR_PORT = 7081


def wait_until_up(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # answering at all is up
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@contextlib.contextmanager
def our_server(workers: int | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="stow-compare-") as data:
        env = {
            "DICOM_HOST_ENGINE": "direct",  # as make run serves; the environment may override
            **os.environ,
            "DATA_DIR": data,
            "PORT": str(OUR_PORT),
            "DICOM_LOG_LEVEL": "WARNING",
        }
        if workers:
            env["DICOM_LOCAL_WORKERS"] = str(workers)
        process = subprocess.Popen(
            [sys.executable, "-m", "functions_host"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            root = f"http://127.0.0.1:{OUR_PORT}/v2"
            wait_until_up(f"{root}/studies")
            yield root
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


@contextlib.contextmanager
def orthanc() -> Iterator[str]:
    script = str(HERE / "orthanc.sh")
    subprocess.run(
        ["bash", script, "start"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        port = os.environ.get("ORTHANC_HTTP_PORT", "8042")
        yield f"http://127.0.0.1:{port}/dicom-web"
    finally:
        subprocess.run(
            ["bash", script, "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


def run_stow(url: str, count: int, concurrency: str) -> dict[int, float]:
    """One ``stow.py`` run; returns instances per second by concurrency level."""
    output = subprocess.run(
        [
            sys.executable,
            str(HERE / "stow.py"),
            "--url",
            url,
            "--count",
            str(count),
            "--concurrency",
            concurrency,
            "--large-mb",
            "0",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rates: dict[int, float] = {}
    for line in output.splitlines():
        fields = line.split()
        # The summary table: "small instances  <conc> <requests> <errors> <s> <inst/s> ..."
        if line.startswith("small instances") and len(fields) > 6 and fields[2].isdigit():
            if int(fields[4]) != 0:
                print(f"  warning: {fields[4]} errors at concurrency {fields[2]}", flush=True)
            rates[int(fields[2])] = float(fields[6])
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="instances per level and run")
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--workers", type=int, help="our server's processes (default: its own)")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    servers = {"ours": lambda: our_server(args.workers), "orthanc": orthanc}
    results: dict[str, list[dict[int, float]]] = {name: [] for name in servers}

    header = "round  server   " + "  ".join(f"c={level:<3} inst/s" for level in levels)
    print(header, flush=True)
    for round_number in range(1, args.rounds + 1):
        order = list(servers) if round_number % 2 else list(reversed(servers))
        for name in order:
            os.sync()
            time.sleep(1)
            with servers[name]() as url:
                rates = run_stow(url, args.count, args.concurrency)
            results[name].append(rates)
            figures = "  ".join(f"{rates.get(level, float('nan')):12.1f}" for level in levels)
            print(f"{round_number:<6} {name:<8} {figures}", flush=True)

    print("\nmedians over rounds")
    for name in servers:
        medians = [
            statistics.median(r[level] for r in results[name] if level in r) for level in levels
        ]
        print(f"       {name:<8} " + "  ".join(f"{m:12.1f}" for m in medians))
    ours = [statistics.median(r[level] for r in results["ours"]) for level in levels]
    theirs = [statistics.median(r[level] for r in results["orthanc"]) for level in levels]
    ratios = "  ".join(f"{o / t:12.2f}" for o, t in zip(ours, theirs, strict=True))
    print(f"       ratio    {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
