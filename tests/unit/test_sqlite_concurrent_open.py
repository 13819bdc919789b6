"""Processes that open a new local index at the same moment all start.

`make run` starts several workers on one DATA_DIR, and on a fresh one each creates the
database. Before opens were serialised, a fresh file's switch to WAL failed at once with
"database is locked" in one process of four about one time in four, and that worker's host
stopped. Real processes, started together at a barrier, on fresh files.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from dicom_core.storage.local.sqlite_db import SqliteDatabase

PROCESSES = 4
TRIALS = 25


def open_each(paths: list[str], barrier: Barrier, results: Any) -> None:
    """In a child: open every path in turn, each at the same moment as the other children."""
    for path in paths:
        barrier.wait(timeout=60)
        try:
            database = SqliteDatabase(Path(path), durable=True)
        except Exception as exc:  # the outcome is the test's to judge, in the parent
            results.put((path, f"failed: {exc!r}"))
            continue
        results.put((path, database.identity))
        database.close()


def test_processes_opening_a_fresh_database_together_all_succeed_and_agree(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of pytest's threads
    paths = [str(tmp_path / f"trial{n}" / "index.sqlite") for n in range(TRIALS)]
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    children = [
        context.Process(target=open_each, args=(paths, barrier, results)) for _ in range(PROCESSES)
    ]
    for child in children:
        child.start()
    outcomes: dict[str, list[str]] = {path: [] for path in paths}
    for _ in range(PROCESSES * TRIALS):
        path, outcome = results.get(timeout=120)
        outcomes[path].append(outcome)
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0

    failures = [f"{path}: {o}" for path, got in outcomes.items() for o in got if "failed" in o]
    assert failures == []
    # Every process saw the same database: one identity per file, made once.
    assert all(len(set(got)) == 1 for got in outcomes.values())
