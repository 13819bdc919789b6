"""Worklist (UPS-RS) search latency as the local backend's worklist history grows.

Usage::

    python benchmarks/worklist_scale.py                      # 10^4 and 10^5 workitems
    python benchmarks/worklist_scale.py --sizes 1000000      # about 5 minutes to build
    python benchmarks/worklist_scale.py --rare-rows 0        # the newest-first route only

The question: does a worklist search get slower as workitems accumulate? They do accumulate:
a workitem is never deleted, so a worklist of a few scheduled procedures sits on a history of
thousands of completed ones, and the searches a client repeats (what is SCHEDULED, today's
steps, one patient's) match a small and constant number of them.

The data is generated and deterministic: workitems with one PatientID per 5, scheduled start
date-times one minute apart, and 1 in 1,000 still SCHEDULED (the rest COMPLETED). They are
created through ``SqliteWorkitemStore.create_workitem``, one transaction each, as UPS-RS
creates them. Each figure is the service time of ``search_workitems`` (no HTTP), median and
90th percentile over ``--calls`` calls, each for another patient or day; every answer is
checked against the generator (count, and that each result matches). ``--rare-rows 0``
disables the route from a selective condition's keys (``RARE_WORKITEM_ROWS``), to compare.
Built worklists are kept under ``--workdir`` and reused. It never asserts on time; results:
benchmarks/SCALE.md, "Worklists".
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dicom_core.query.workitems import parse_workitem_query  # noqa: E402
from dicom_core.storage.local.sqlite_db import SqliteDatabase  # noqa: E402
from dicom_core.storage.local.sqlite_workitems import (  # noqa: E402
    RARE_WORKITEM_ROWS,
    SqliteWorkitemStore,
)

# Bump when the generated worklist changes, so that kept ones are rebuilt.
GENERATOR_VERSION = 1
PER_PATIENT = 5
SCHEDULED_EVERY = 1000
START = datetime(2024, 1, 1, 7, 0)


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.8.498.9.{n}"


def _start(n: int) -> datetime:
    return START + timedelta(minutes=n)


def _scheduled(n: int) -> bool:
    return n % SCHEDULED_EVERY == SCHEDULED_EVERY - 1


def workitem(n: int) -> dict[str, Any]:
    """Workitem ``n``: the searchable attributes a worklist client filters on."""
    return {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": f"Patient^{n // PER_PATIENT}"}]},
        "00100020": {"vr": "LO", "Value": [f"PID{n // PER_PATIENT}"]},
        "00404005": {"vr": "DT", "Value": [_start(n).strftime("%Y%m%d%H%M%S")]},
        "00741000": {"vr": "CS", "Value": ["SCHEDULED" if _scheduled(n) else "COMPLETED"]},
        "00741200": {"vr": "CS", "Value": ["MEDIUM"]},
        "00741204": {"vr": "LO", "Value": [f"procedure step {n}"]},
    }


async def build(path: Path, size: int) -> float:
    db = SqliteDatabase(path, durable=False)
    store = SqliteWorkitemStore(db)
    started = time.perf_counter()
    try:
        for n in range(size):
            await store.create_workitem(_uid(n), workitem(n), partition=1)
    finally:
        db.close()
    return time.perf_counter() - started


def worklist(workdir: Path, size: int) -> Path:
    """The database of a worklist of ``size`` workitems, built if missing."""
    folder = workdir / f"worklist-{size}"
    marker = folder / "complete"
    fingerprint = f"generator {GENERATOR_VERSION}"
    path = folder / "index.sqlite"
    if marker.exists() and marker.read_text() == fingerprint:
        return path
    for stale in folder.glob("index.sqlite*"):
        stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"building a worklist of {size:,} workitems ...", flush=True)
    took = asyncio.run(build(path, size))
    print(f"  built in {took:.0f} s", flush=True)
    marker.write_text(fingerprint)
    return path


Search = tuple[list[tuple[str, str]], Callable[[int], bool], int]
"""A search's query pairs, which workitems it may return, and how many it must (a page is
100)."""


def searches(size: int, rng: random.Random) -> dict[str, Callable[[], Search]]:
    patients = size // PER_PATIENT
    scheduled = size // SCHEDULED_EVERY

    def patient() -> Search:
        p = rng.randrange(patients)
        return [("PatientID", f"PID{p}")], lambda n: n // PER_PATIENT == p, PER_PATIENT

    def state(value: str, expected: int) -> Callable[[], Search]:
        def make() -> Search:
            wanted = value == "SCHEDULED"
            return [("ProcedureStepState", value)], lambda n: _scheduled(n) == wanted, expected

        return make

    def day_range() -> tuple[list[tuple[str, str]], range]:
        midnight = datetime.combine(START.date(), datetime.min.time())
        first = midnight + timedelta(days=rng.randrange(max(size // (24 * 60), 1)))
        lo = max(0, int((first - START).total_seconds() // 60))
        hi = min(size, int((first + timedelta(days=1) - START).total_seconds() // 60))
        window = f"{first:%Y%m%d}000000-{first:%Y%m%d}235959"
        return [("ScheduledProcedureStepStartDateTime", window)], range(lo, hi)

    def day() -> Search:
        pairs, numbers = day_range()
        return pairs, lambda n: n in numbers, min(len(numbers), 100)

    def scheduled_today() -> Search:
        pairs, numbers = day_range()
        due = sum(1 for n in numbers if _scheduled(n))
        both = [*pairs, ("ProcedureStepState", "SCHEDULED")]
        return both, lambda n: n in numbers and _scheduled(n), due

    return {
        "PatientID (5 match)": patient,
        "SCHEDULED (1 in 1,000)": state("SCHEDULED", min(scheduled, 100)),
        "COMPLETED (most match)": state("COMPLETED", 100),
        "start date-time, one day": day,
        "one day, SCHEDULED": scheduled_today,
    }


async def measure(path: Path, size: int, calls: int, rare_rows: int) -> dict[str, list[float]]:
    db = SqliteDatabase(path, durable=False)
    store = SqliteWorkitemStore(db, rare_rows=rare_rows)
    results: dict[str, list[float]] = {}
    try:
        for label, make in searches(size, random.Random(7)).items():
            samples = []
            for call in range(calls + 5):
                pairs, test, expected = make()
                query = parse_workitem_query(pairs, partition=1)
                started = time.perf_counter()
                found = await store.search_workitems(query)
                took = time.perf_counter() - started
                numbers = [int(r.uid.rsplit(".", 1)[1]) for r in found]
                if not all(test(n) for n in numbers) or len(found) != expected:
                    raise AssertionError(f"{label}: {len(found)} results, expected {expected}")
                if call >= 5:  # the first five warm up
                    samples.append(took)
            results[label] = samples
    finally:
        db.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="workitem counts")
    parser.add_argument("--calls", type=int, default=50, help="timed calls per search")
    parser.add_argument("--rare-rows", type=int, default=RARE_WORKITEM_ROWS)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dicomweb-worklist-bench"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    paths = [worklist(args.workdir, size) for size in sizes]
    print(f"\nservice time per search in ms (median / p90), rare rows {args.rare_rows}")
    table: dict[str, list[str]] = {}
    for size, path in zip(sizes, paths, strict=True):
        for label, samples in asyncio.run(measure(path, size, args.calls, args.rare_rows)).items():
            median, p90 = statistics.median(samples), sorted(samples)[int(0.9 * len(samples))]
            cell = f"{median * 1e3:.2f} / {p90 * 1e3:.2f}"
            table.setdefault(label, []).append(cell)
    print(f"| search | {' | '.join(f'{n:,}' for n in sizes)} |")
    print("| --- |" + " ---: |" * len(sizes))
    for label, cells in table.items():
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
