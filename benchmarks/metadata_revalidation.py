"""What a metadata revalidation (If-None-Match, answered 304) costs the server, in process.

Usage::

    python benchmarks/metadata_revalidation.py [--instances 500] [--calls 300]

A series of ``--instances`` CT instances (real headers from ``corpus.ct_instances``, parsed
as a store parses them) is indexed in a fresh local (SQLite) backend. Then, alternating, the
two ways to answer ``GET .../series/{uid}/metadata`` with a matching If-None-Match are timed:

* ``etag from index``: what the server does now (``MetadataService.current_etag``): the
  watermarks of the series from the index, digested; no instance JSON is read;
* ``full document``: what it did before, and still does for a 200: every instance's JSON read
  and joined (``retrieve_metadata``), and, for the comparison, the body digested as the
  old ETag was.

Each answer is checked: the index-derived ETag must equal the one the 200 carries. Figures are
medians and 90th percentiles of service time (no HTTP), in milliseconds. It never asserts on
time.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances
from dicom_core.bootstrap import build_backend
from dicom_core.domain.instance import parse_instance
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.metadata import MetadataService
from dicom_core.settings import Settings
from dicom_core.storage.ports import IndexStore


async def index_series(index: IndexStore, directory: Path, count: int) -> tuple[str, str]:
    """Index ``count`` instances of one series (no files: the metadata path reads none)."""
    study = series = ""
    for number, data in enumerate(
        ct_instances(count, rows=16, cols=16, series_per_study=1, instances_per_study=count)
    ):
        path = directory / f"{number}.dcm"
        path.write_bytes(data)
        parsed = parse_instance(path, partition=1)
        study, series = parsed.key.study_uid, parsed.key.series_uid
        reservation = await index.begin_instance(parsed.key, upsert=False)
        await index.commit_instance(reservation, parsed)  # a ParsedInstance is stored as is
        path.unlink()
    return study, series


def summary(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"{name:<18} {statistics.median(samples) * 1e3:9.3f} ms  p90 {p90 * 1e3:9.3f} ms"


async def main_async(instances: int, calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="revalidation-") as data:
        settings = Settings.from_mapping(
            {"DATA_DIR": data, "DICOM_STORAGE": "local", "DICOM_DURABLE_WRITES": "false"}
        )
        backend = build_backend(settings)
        metadata = MetadataService(
            backend.index, external_metadata=ExternalMetadataService(backend.external_metadata)
        )
        try:
            study, series = await index_series(backend.index, Path(data), instances)
            document = await metadata.retrieve_metadata(study, series, partition=1)
            size = len(document.body) / 1e6
            print(f"series of {instances} instances, metadata document {size:.2f} MB")
            fast: list[float] = []
            full: list[float] = []
            for call in range(calls):
                for variant in ("fast", "full") if call % 2 == 0 else ("full", "fast"):
                    started = time.perf_counter()
                    if variant == "fast":
                        etag = await metadata.current_etag(study, series, partition=1)
                        fast.append(time.perf_counter() - started)
                        if etag != document.etag:
                            raise SystemExit("the index-derived ETag differs from the 200's")
                    else:
                        body = (await metadata.retrieve_metadata(study, series, partition=1)).body
                        hashlib.blake2b(body, digest_size=16).hexdigest()
                        full.append(time.perf_counter() - started)
            print(summary("etag from index", fast))
            print(summary("full document", full))
            print(f"ratio (median)     {statistics.median(full) / statistics.median(fast):9.1f}x")
        finally:
            await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main_async(args.instances, args.calls))


if __name__ == "__main__":
    main()
