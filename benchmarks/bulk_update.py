"""What a bulk update and a change feed read cost on the local backend, in process.

Usage::

    python benchmarks/bulk_update.py [--studies 10] [--per-study 50] [--rows 512]

Stores ``--studies`` studies of ``--per-study`` CT instances (``corpus.ct_instances``, 512 x
512 by default, durable writes on, as the app runs), then runs one bulk update of all of them
the way the queue-triggered function does (one study per message), and reads the whole change
feed in v1 pages of 100. Prints instances rewritten per second, milliseconds per study, and
feed entries read per second. Every answer is checked: each instance's current metadata has
the new PatientName, its original the old one, and the feed holds one create per stored
instance and one update per rewritten one. It never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances
from dicom_core.bootstrap import Services, build_services
from dicom_core.domain.bulk_update import parse_bulk_update_request
from dicom_core.domain.change_feed import ChangeAction
from dicom_core.jobs.bulk_update import BULK_UPDATE_QUEUE
from dicom_core.settings import Settings
from dicom_core.storage.ports import ChangeQuery

NEW_NAME = "Bench^Updated"


async def store_all(
    services: Services, folder: Path, studies: int, per_study: int, rows: int
) -> list[str]:
    """Store the corpus, one request per instance; the study UIDs, in order."""
    uids: list[str] = []
    corpus = ct_instances(
        studies * per_study,
        rows=rows,
        cols=rows,
        series_per_study=1,
        instances_per_study=per_study,
    )
    for number, data in enumerate(corpus):
        part = folder / f"{number}.part"

        async def receive(part: Path = part, data: bytes = data) -> list[Path]:
            part.write_bytes(data)
            return [part]

        result = await services.store.store_instances(
            receive,
            study_uid=None,
            upsert=False,
            api_version=2,
            base_url="http://bench/v2",
            partition=1,
        )
        [stored] = result.stored
        if stored.key.study_uid not in uids:
            uids.append(stored.key.study_uid)
    return uids


async def run_update(services: Services, studies: list[str]) -> list[float]:
    """Start the operation and handle its messages; seconds per study step."""
    body = {
        "studyInstanceUids": studies,
        "changeDataset": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": NEW_NAME}]}},
    }
    await services.bulk_update.start(parse_bulk_update_request(orjson.dumps(body)), partition=1)
    queue = services.backend.queue
    steps: list[float] = []
    while messages := await queue.receive(BULK_UPDATE_QUEUE, max_messages=1):
        started = time.perf_counter()
        await services.bulk_update.handle_message(messages[0].body)
        steps.append(time.perf_counter() - started)
        await queue.complete(messages[0])
    return steps


async def check(services: Services, studies: list[str], per_study: int) -> None:
    for study in studies:
        latest = [
            orjson.loads(d) for d in await services.backend.index.get_metadata(study, partition=1)
        ]
        original = await services.backend.index.get_versioned_metadata(
            study, original=True, partition=1
        )
        names = {d["00100010"]["Value"][0]["Alphabetic"] for d in latest}
        assert names == {NEW_NAME}, (study, names)
        assert len(original.documents) == per_study
        kept = {orjson.loads(d)["00100010"]["Value"][0]["Alphabetic"] for d in original.documents}
        assert NEW_NAME not in kept, (study, kept)


async def read_feed(services: Services) -> tuple[list[float], dict[ChangeAction, int]]:
    pages: list[float] = []
    counts = dict.fromkeys(ChangeAction, 0)
    after = 0
    while True:
        started = time.perf_counter()
        page = await services.change_feed.read(ChangeQuery(limit=100, after_sequence=after))
        pages.append(time.perf_counter() - started)
        if not page:
            return pages, counts
        for entry in page:
            counts[entry.action] += 1
        assert [e.sequence for e in page] == list(range(after + 1, after + len(page) + 1))
        after = page[-1].sequence


async def main_async(studies: int, per_study: int, rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bulk-update-") as data:
        services = build_services(
            Settings.from_mapping({"DATA_DIR": data, "DICOM_STORAGE": "local"})
        )
        try:
            uids = await store_all(services, Path(data), studies, per_study, rows)
            total = studies * per_study
            started = time.perf_counter()
            steps = await run_update(services, uids)
            elapsed = time.perf_counter() - started
            await check(services, uids, per_study)
            pages, counts = await read_feed(services)
            assert counts[ChangeAction.CREATE] == total and counts[ChangeAction.UPDATE] == total
        finally:
            await services.close()
    print(f"bulk update of {studies} studies x {per_study} instances ({rows}x{rows} CT), local")
    print(f"  {total / elapsed:8.1f} instances/s   {elapsed:.2f} s in all")
    median, slowest = statistics.median(steps) * 1e3, max(steps) * 1e3
    print(f"  per study: median {median:.0f} ms, max {slowest:.0f} ms")
    entries = sum(counts.values())
    print(f"change feed: {entries} entries in {len(pages)} pages of 100")
    page = statistics.median(pages) * 1e3
    print(f"  {entries / sum(pages):8.0f} entries/s   page median {page:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--per-study", type=int, default=50)
    parser.add_argument("--rows", type=int, default=512)
    args = parser.parse_args()
    asyncio.run(main_async(args.studies, args.per_study, args.rows))


if __name__ == "__main__":
    main()
