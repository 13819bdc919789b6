"""QIDO-RS latency and throughput of the study-list queries a viewer sends, against any server.

Usage::

    # Ours, on generated index rows: 1,000 and 100,000 instances (10 per study)
    python benchmarks/search.py --generate 1000,100000
    # Ours and Orthanc on the same 2,000 real instances stored through STOW-RS
    benchmarks/orthanc.sh start
    python benchmarks/search.py --stow 2000 --orthanc http://127.0.0.1:8042/dicom-web

What it measures, and why that way:

* The query mix is OHIF's study list (``limit=101&offset=0&fuzzymatching=...&includefield=
  00081030,00080060,00080090,00100030``, PS3.18 10.6) with, in turn, no filter, a PatientName
  prefix with fuzzy matching, a PatientName ``*contains*`` wildcard (OHIF's Azure setting),
  a StudyDate range, ModalitiesInStudy and an AccessionNumber, each with values that occur
  in the data, as a user typing in the list's filters would send them.
* ``--generate``: studies of about ten instances in one to three series (modalities, dates,
  names and descriptions vary), each instance a real pydicom dataset whose index attributes
  and DICOM JSON are computed by the service's own code (``index_attributes.extract``,
  ``dicomjson.dataset_json_bytes``) and committed through ``SqliteIndexStore`` exactly as a
  store would, without writing pixel files, which QIDO never reads. Generated indexes are
  kept under ``--workdir`` and reused by later runs.
* ``--stow``: the same kind of instances, small (16 x 16 pixels), stored through STOW-RS
  into our server and, with ``--orthanc``, into Orthanc, so both answer the same queries on
  the same data with the same client.
* The client is a pool of ``--concurrency`` threads with one keep-alive ``http.client``
  connection each, running the mix round-robin for ``--seconds`` (after a warm-up). It prints
  p50/p95 per query and overall, and the query rate. Non-2xx answers count as errors.

Figures are wall-clock on this machine; the server runs in its own process (``DICOM_LOCAL_
WORKERS=--workers``), sharing the machine's cores with the client. Never asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import http.client
import io
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dicom_core.domain.dicomjson import dataset_json_bytes  # noqa: E402
from dicom_core.domain.index_attributes import extract  # noqa: E402
from dicom_core.domain.model import InstanceKey, StoredInstance  # noqa: E402
from dicom_core.storage.local.sqlite_db import SqliteDatabase  # noqa: E402
from dicom_core.storage.local.sqlite_index import SqliteIndexStore  # noqa: E402

INCLUDE = "includefield=00081030%2C00080060%2C00080090%2C00100030"
FAMILIES = [
    a + b
    for a in ("Ab", "Bel", "Car", "Dan", "Ed", "Fer", "Gar", "Hol", "Ja", "Kov", "Lin", "Mar")
    for b in ("son", "ez", "ini", "sky", "berg", "ova", "ley", "mann", "ard", "oni")
]
GIVEN = ["Anna", "Ben", "Chloé", "David", "Emma", "Frank", "Greta", "Hugo", "Inès", "Jon"]
MODALITIES = ["CT"] * 8 + ["MR"] * 5 + ["CR", "CR", "US", "US", "SR", "PT", "DX"]
DESCRIPTIONS = ["CT chest", "MR brain", "CT abdomen", "XR chest", "US abdomen", "PET-CT"]
INSTANCES_PER_STUDY = 10


# -- data ----------------------------------------------------------------------------------------


@dataclass
class SeriesSpec:
    uid: str
    modality: str
    instances: int
    frame_of_reference: str = field(default_factory=generate_uid)


@dataclass
class StudySpec:
    number: int
    uid: str
    patient_name: str
    patient_id: str
    accession: str
    date: str
    description: str
    series: list[SeriesSpec] = field(default_factory=list)


def study_specs(instances: int, seed: int = 7) -> list[StudySpec]:
    """Deterministic studies of ``INSTANCES_PER_STUDY`` instances in one to three series."""
    rng = random.Random(seed)
    start = datetime.date(2015, 1, 1)
    specs = []
    for number in range(max(1, instances // INSTANCES_PER_STUDY)):
        patient = rng.randrange(max(1, instances // 25))
        spec = StudySpec(
            number=number,
            uid=generate_uid(),
            patient_name=f"{FAMILIES[patient % len(FAMILIES)]}^{GIVEN[patient // 120 % 10]}",
            patient_id=f"PID{patient:06d}",
            accession=f"ACC{number:07d}",
            date=(start + datetime.timedelta(days=rng.randrange(3650))).strftime("%Y%m%d"),
            description=rng.choice(DESCRIPTIONS),
        )
        count = rng.choice([1, 2, 2, 3])
        sizes = [INSTANCES_PER_STUDY // count] * count
        sizes[0] += INSTANCES_PER_STUDY - sum(sizes)
        for size in sizes:
            spec.series.append(SeriesSpec(generate_uid(), rng.choice(MODALITIES), size))
        specs.append(spec)
    return specs


def datasets(spec: StudySpec, pixels: int = 16) -> Iterator[Dataset]:
    """The study's instances as small but complete CT datasets.

    One dataset per series is built and then re-stamped for each instance (identity, number,
    position), because building 50 attributes per instance would dominate generating 100,000
    of them. So each yielded dataset is only valid until the next one is asked for.
    """
    for series_number, series in enumerate(spec.series, start=1):
        ds = _series_template(spec, series, series_number, pixels)
        for instance_number in range(1, series.instances + 1):
            sop_uid = generate_uid()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = instance_number
            ds.ImagePositionPatient = [0, 0, -1.25 * instance_number]
            yield ds


def _series_template(spec: StudySpec, series: SeriesSpec, number: int, pixels: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.StudyInstanceUID = spec.uid
    ds.SeriesInstanceUID = series.uid
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = f"19{40 + spec.number % 60:02d}0101"
    ds.PatientSex = "FM"[spec.number % 2]
    ds.AccessionNumber = spec.accession
    ds.StudyDate = spec.date
    ds.StudyTime = "101500"
    ds.StudyID = str(spec.number)
    ds.StudyDescription = spec.description
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.Modality = series.modality
    ds.SeriesNumber = number
    ds.SeriesDescription = f"{series.modality} series {number}"
    ds.SeriesDate = spec.date
    ds.Manufacturer = "Benchmark"
    ds.ManufacturerModelName = "search.py"
    ds.InstitutionName = "Benchmark Hospital"
    ds.BodyPartExamined = "CHEST"
    ds.PerformedProcedureStepStartDate = spec.date
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.25
    ds.FrameOfReferenceUID = series.frame_of_reference
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = pixels
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.PixelData = np.full((pixels, pixels), 1024, dtype="<u2").tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def _generate_index(data_dir: Path, specs: list[StudySpec]) -> None:
    db = SqliteDatabase(data_dir / "index.sqlite")
    store = SqliteIndexStore(db)
    try:
        for spec in specs:
            for ds in datasets(spec, pixels=1):
                key = InstanceKey(spec.uid, ds.SeriesInstanceUID, ds.SOPInstanceUID, partition=1)
                reservation = await store.begin_instance(key, upsert=False)
                await store.commit_instance(
                    reservation,
                    StoredInstance(
                        key=key,
                        sop_class_uid=CTImageStorage,
                        transfer_syntax_uid=ExplicitVRLittleEndian,
                        file_size=0,
                        metadata_json=dataset_json_bytes(ds),
                        attributes=extract(ds),
                    ),
                )
    finally:
        db.close()


def generated_data_dir(workdir: Path, instances: int) -> tuple[Path, list[StudySpec]]:
    """A data directory whose index holds ``instances`` generated instances (cached)."""
    specs = study_specs(instances)
    data_dir = workdir / f"index-{instances}"
    marker = data_dir / "complete"
    if not marker.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        started = time.perf_counter()
        print(f"generating an index of {instances:,} instances in {data_dir} ...", flush=True)
        asyncio.run(_generate_index(data_dir, specs))
        print(f"  done in {time.perf_counter() - started:.0f} s", flush=True)
        marker.write_text("\n".join(spec.uid for spec in specs))
    else:
        uids = marker.read_text().split()
        for spec, uid in zip(specs, uids, strict=True):
            spec.uid = uid
    return data_dir, specs


def stow(url: str, specs: list[StudySpec]) -> None:
    """Store the studies through STOW-RS, one study per request."""
    import httpx

    boundary = "BenchBoundary"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    with httpx.Client(timeout=120) as client:
        for spec in specs:
            body = bytearray()
            for ds in datasets(spec):
                body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                body += part10(ds) + b"\r\n"
            body += f"--{boundary}--\r\n".encode()
            response = client.post(
                f"{url}/studies",
                content=bytes(body),
                headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
            )
            if response.status_code not in (200, 202):
                raise RuntimeError(f"STOW to {url} failed: {response.status_code} {response.text}")


# -- queries -------------------------------------------------------------------------------------


def query_mix(specs: list[StudySpec], seed: int = 11) -> list[tuple[str, str]]:
    """(name, query string) pairs: OHIF's study list with each of its filters in turn."""
    rng = random.Random(seed)
    base = f"limit=101&offset=0&{INCLUDE}"
    mix: list[tuple[str, str]] = []
    for _ in range(20):
        spec = rng.choice(specs)
        family = spec.patient_name.split("^")[0]
        year = spec.date[:4]
        mix += [
            ("list", f"{base}&fuzzymatching=false"),
            ("PatientName fuzzy", f"{base}&fuzzymatching=true&PatientName={family[:4].lower()}"),
            ("PatientName *wild*", f"{base}&fuzzymatching=false&PatientName=*{family[1:5]}*"),
            ("StudyDate range", f"{base}&fuzzymatching=false&StudyDate={year}0101-{year}0331"),
            ("ModalitiesInStudy", f"{base}&fuzzymatching=false&ModalitiesInStudy=MR"),
            ("AccessionNumber", f"{base}&fuzzymatching=false&AccessionNumber={spec.accession}"),
        ]
    return mix


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    elapsed: float = 0.0
    sizes: dict[str, list[int]] = field(default_factory=dict)


def run_load(
    url: str, mix: list[tuple[str, str]], concurrency: int, seconds: float, warmup: float
) -> Result:
    parts = urlsplit(url)
    host, port, root = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
    result = Result()
    lock = threading.Lock()
    deadline_box: list[float] = []
    start_barrier = threading.Barrier(concurrency + 1)

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=60)
        local: dict[str, list[float]] = {}
        sizes: dict[str, list[int]] = {}
        errors = 0
        index = offset
        start_barrier.wait()
        warm_until = time.perf_counter() + warmup
        while True:
            now = time.perf_counter()
            if deadline_box and now >= deadline_box[0]:
                break
            name, query = mix[index % len(mix)]
            index += 1
            began = time.perf_counter()
            conn.request(
                "GET", f"{root}/studies?{query}", headers={"Accept": "application/dicom+json"}
            )
            response = conn.getresponse()
            body = response.read()
            took = time.perf_counter() - began
            if response.status not in (200, 204):
                errors += 1
                continue
            if began >= warm_until:
                local.setdefault(name, []).append(took)
                sizes.setdefault(name, []).append(len(body))
        conn.close()
        with lock:
            for name, values in local.items():
                result.latencies.setdefault(name, []).extend(values)
            for name, lengths in sizes.items():
                result.sizes.setdefault(name, []).extend(lengths)
            result.errors += errors

    threads = [threading.Thread(target=worker, args=(i * 7,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    begun = time.perf_counter()
    deadline_box.append(begun + warmup + seconds)
    for thread in threads:
        thread.join()
    result.elapsed = seconds
    return result


def report(title: str, result: Result) -> dict[str, float]:
    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    everything = [v for values in result.latencies.values() for v in values]
    rate = len(everything) / result.elapsed if result.elapsed else 0.0
    print(f"\n{title}")
    print(f"  {'query':<22}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'KB/resp':>9}")
    for name, values in result.latencies.items():
        size = statistics.mean(result.sizes.get(name, [0])) / 1000
        p50, p95 = pct(values, 0.5), pct(values, 0.95)
        print(f"  {name:<22}{len(values):>7}{p50:>9.1f}{p95:>9.1f}{size:>9.1f}")
    print(
        f"  {'all':<22}{len(everything):>7}{pct(everything, 0.5):>9.1f}"
        f"{pct(everything, 0.95):>9.1f}   {rate:.0f} queries/s, {result.errors} errors"
    )
    return {"p50": pct(everything, 0.5), "p95": pct(everything, 0.95), "rate": rate}


# -- our server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OurServer:
    """The local host (``make run``) on a data directory, in its own process."""

    def __init__(self, data_dir: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v2"
        env = {
            "DICOM_HOST_ENGINE": "direct",  # as make run serves
            **os.environ,
            "PORT": str(self.port),
            "DATA_DIR": str(data_dir),
            "DICOM_STORAGE": "local",
            "DICOM_LOCAL_WORKERS": str(workers),
            "DICOM_LOG_LEVEL": "WARNING",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "functions_host"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/v2/studies?limit=1")
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("our server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--generate", default="", help="instance counts of generated indexes, e.g. 1000,100000"
    )
    parser.add_argument(
        "--stow", type=int, default=0, help="store this many instances via STOW-RS first"
    )
    parser.add_argument(
        "--orthanc", default="", help="Orthanc's DICOMweb root, to run the --stow comparison on"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--workers", type=int, default=1, help="our server's worker processes")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dicomweb-search-bench"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, dict[str, float]]] = []

    for count in [int(c) for c in args.generate.split(",") if c.strip()]:
        data_dir, specs = generated_data_dir(args.workdir, count)
        server = OurServer(data_dir, args.workers)
        try:
            title = f"ours, generated index of {count:,} instances ({len(specs):,} studies)"
            result = run_load(
                server.url, query_mix(specs), args.concurrency, args.seconds, args.warmup
            )
            summary.append((title, report(title, result)))
        finally:
            server.stop()

    if args.stow:
        specs = study_specs(args.stow, seed=3)
        data_dir = Path(tempfile.mkdtemp(dir=args.workdir, prefix="stow-"))
        server = OurServer(data_dir, args.workers)
        try:
            started = time.perf_counter()
            stow(server.url, specs)
            print(
                f"\nstored {args.stow:,} instances in ours in {time.perf_counter() - started:.0f} s"
            )
            title = f"ours, {args.stow:,} instances stored via STOW-RS"
            result = run_load(
                server.url, query_mix(specs), args.concurrency, args.seconds, args.warmup
            )
            summary.append((title, report(title, result)))
        finally:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)
        if args.orthanc:
            started = time.perf_counter()
            stow(args.orthanc.rstrip("/"), specs)
            took = time.perf_counter() - started
            print(f"\nstored {args.stow:,} instances in Orthanc in {took:.0f} s")
            title = f"Orthanc, the same {args.stow:,} instances"
            result = run_load(
                args.orthanc, query_mix(specs), args.concurrency, args.seconds, args.warmup
            )
            summary.append((title, report(title, result)))

    print(f"\nsummary (concurrency {args.concurrency}, {args.seconds:.0f} s each)")
    for title, figures in summary:
        print(
            f"  {title:<58} p50 {figures['p50']:6.1f} ms  p95 {figures['p95']:6.1f} ms"
            f"  {figures['rate']:6.0f} q/s"
        )


if __name__ == "__main__":
    main()
