"""Scale curves of the local backend: QIDO, metadata and store latency at 10^4 to 10^6 instances.

Usage::

    python benchmarks/scale.py                          # 10^4, 10^5 and 10^6 instances
    python benchmarks/scale.py --sizes 10000,100000 --calls 100
    python benchmarks/scale.py --verify 2000            # batched build == the store's path
    python benchmarks/scale.py --sizes 1000000 --explain   # the SQLite plan of each search

The question: does a search, a metadata read or a store's index commit get slower as the index
grows? Each figure is the service-layer time (``SearchService.search_for``, ``MetadataService``,
the index's ``reserve`` and ``finish`` rolled back; no HTTP) of one call, median and 90th
percentile over ``--calls`` calls, each call on another target (another patient, study, series
or instance) so that no two calls read the same rows. Every answer is checked against what the
generator says it must be, computed in Python from the generated plan, not from the index: the
result count, and that each result is one of the expected ones.

The data (``plan_studies``) is generated, deterministic, and shaped like a hospital's CT/MR
archive: studies of 100 to 300 instances in 2 to 4 series (a localizer, one to three image
series, a dose report for some CT studies), patients with one to eight studies, ten years of
study dates, CT, MR and PET-CT studies, unique accession numbers, a few thousand distinct
patient names. Each instance's DICOM JSON (about 5 KB) is a real CT header, built with
pydicom and parsed by the store's own ``parse_instance``, with each study's, series' and
instance's values substituted; its index attributes come from the store's own ``extract``.

Building: the instances are written with ``SqliteIndexStore.reserve`` and ``finish``, the
bodies of ``begin_instance`` and ``commit_instance``, so every row is written by the index's
own code, but a few thousand instances share one transaction instead of two transactions per
instance (which would take hours at 10^6). ``--verify N`` builds N instances both ways and
compares every row of the index tables (timestamps aside). Pixel files are not written: no
search or metadata read opens one. Built indexes are kept under ``--workdir`` (about 6 GB at
10^6) and reused by later runs; a 10^6 build takes several minutes on one core.

Figures are wall-clock on this machine with the database in the OS page cache (each run warms
up first). It never asserts on time. Results and their explanation: benchmarks/SCALE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import datetime
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    XRayRadiationDoseSRStorage,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import ct_instances  # noqa: E402
from dicom_core.bootstrap import Services, build_services  # noqa: E402
from dicom_core.domain.index_attributes import extract  # noqa: E402
from dicom_core.domain.instance import parse_instance  # noqa: E402
from dicom_core.domain.model import (  # noqa: E402
    FrameIndex,
    IndexAttributes,
    InstanceKey,
    StoredInstance,
)
from dicom_core.query.conditions import QueryResource  # noqa: E402
from dicom_core.query.parser import parse_query  # noqa: E402
from dicom_core.services.search import ResponsePlan  # noqa: E402
from dicom_core.settings import Settings  # noqa: E402
from dicom_core.storage.local.schema import SCHEMA_VERSION  # noqa: E402
from dicom_core.storage.local.sqlite_db import SqliteDatabase  # noqa: E402
from dicom_core.storage.local.sqlite_index import SqliteIndexStore  # noqa: E402
from dicom_core.storage.local.sqlite_query import compile_search  # noqa: E402

# Bump when the generated data changes, so that cached indexes are rebuilt.
GENERATOR_VERSION = 1
UID_ROOT = "1.2.826.0.1.3680043.8.498."
API_VERSION = 2
DEFAULT_LIMIT = 100
# Instances per build transaction (whole studies, so a little more).
BATCH_INSTANCES = 2000

# -- the generated archive -------------------------------------------------------------------

FAMILY_HEADS = [
    "Ab", "Bal", "Cor", "Dun", "Eck", "Fal", "Gor", "Hal", "Ives", "Jor", "Kel", "Lor",
    "Mar", "Nor", "Ost", "Pel", "Quin", "Ros", "Sal", "Tor", "Ull", "Vas", "Wen", "Yor",
    "Zel", "Brun", "Cham", "Dros", "Fitz", "Grim",
]  # fmt: skip
FAMILY_TAILS = [
    "son", "ez", "ini", "sky", "berg", "ova", "ley", "mann", "ard", "oni", "ford", "well",
    "ton", "ner", "ski", "ero", "ville", "dottir", "stein", "ic", "escu", "ssen", "by",
    "holm", "wood",
]  # fmt: skip
GIVEN_NAMES = [
    "Anna", "Ben", "Chloe", "David", "Emma", "Frank", "Greta", "Hugo", "Ines", "Jon",
    "Karin", "Liam", "Maria", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tara", "Umar",
    "Vera", "Wim", "Yusuf", "Zoe", "Aiko", "Bruno", "Carla", "Dmitri", "Elif", "Farid",
]  # fmt: skip
REFERRERS = [f"{f}^{g}" for f in ("Adler", "Brandt", "Costa", "Dubois") for g in ("A", "B", "C")]
STATIONS = ["CT01", "CT02", "MR01", "MR02", "PETCT1"]
ABSENT_MODALITIES = ["US", "MG", "XA"]  # modalities no study of the archive has


@dataclass(frozen=True, slots=True)
class StudyKind:
    """A kind of study: its description and how its series look."""

    description: str
    modality: str  # of its image series
    model: str
    weight: int


KINDS = [
    StudyKind("CT chest", "CT", "Somatom Force", 20),
    StudyKind("CT abdomen pelvis", "CT", "Revolution CT", 15),
    StudyKind("CT head", "CT", "Somatom Force", 10),
    StudyKind("MR brain", "MR", "Magnetom Vida", 20),
    StudyKind("MR knee", "MR", "Ingenia 3T", 10),
    StudyKind("MR lumbar spine", "MR", "Magnetom Vida", 10),
    StudyKind("PET-CT whole body", "PT", "Biograph Vision", 15),
]
SOP_CLASSES = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
    "SR": XRayRadiationDoseSRStorage,
}


@dataclass(frozen=True, slots=True)
class Patient:
    number: int
    patient_id: str
    name: str  # DICOM PN, Family^Given
    birth_date: str
    sex: str


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    number: int
    modality: str
    description: str
    size: int


@dataclass(slots=True)
class StudyPlan:
    number: int
    patient: Patient
    kind: StudyKind
    accession: str
    date: str
    time: str
    referrer: str
    series: list[SeriesPlan] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.series)


@dataclass(frozen=True, slots=True)
class StudyUids:
    """A study's UIDs, derived from the seed and the study's number alone, so that they can be
    computed again for any study without generating the others."""

    study: str
    series: tuple[str, ...]
    instances: tuple[tuple[str, ...], ...]  # per series
    frames_of_reference: tuple[str, ...]


def _uid(rng: random.Random) -> str:
    return UID_ROOT + str(rng.getrandbits(120))


def study_uids(plan: StudyPlan, seed: int) -> StudyUids:
    rng = random.Random(f"{seed}/study/{plan.number}")
    study = _uid(rng)
    series = tuple(_uid(rng) for _ in plan.series)
    frames = tuple(_uid(rng) for _ in plan.series)
    instances = tuple(tuple(_uid(rng) for _ in range(s.size)) for s in plan.series)
    return StudyUids(study, series, instances, frames)


def _series_of(kind: StudyKind, size: int, rng: random.Random) -> list[SeriesPlan]:
    """2 to 4 series adding up to ``size``: a localizer, image series, maybe a dose report."""
    localizer = rng.choice([2, 3])
    dose_report = kind.modality == "CT" and rng.random() < 0.5
    images = rng.randint(1, 3 - int(dose_report))
    rest = size - localizer - int(dose_report)
    weights = [rng.uniform(1.0, 3.0) for _ in range(images)]
    sizes = [max(1, int(rest * w / sum(weights))) for w in weights]
    sizes[0] += rest - sum(sizes)
    scout = "CT" if kind.modality == "PT" else kind.modality
    series = [SeriesPlan(1, scout, "Localizer", localizer)]
    for index, count in enumerate(sizes):
        if kind.modality == "PT":
            modality, description = ("CT", "CT AC") if index == 0 else ("PT", "PET WB")
        else:
            modality, description = kind.modality, f"{kind.description} {index + 1}"
        series.append(SeriesPlan(len(series) + 1, modality, description, count))
    if kind.modality == "PT" and len(series) == 2:  # a PET-CT study has a PET series
        series.append(SeriesPlan(3, "PT", "PET WB", 1))
        series[1] = SeriesPlan(2, "CT", "CT AC", series[1].size - 1)
    if dose_report:
        series.append(SeriesPlan(len(series) + 1, "SR", "Dose report", 1))
    return series


def plan_studies(instances: int, seed: int) -> list[StudyPlan]:
    """Studies adding up to exactly ``instances`` instances (the last one cut short)."""
    rng = random.Random(seed)
    first_date = datetime.date(2016, 1, 1)
    kinds = [k for k in KINDS for _ in range(k.weight)]
    studies: list[StudyPlan] = []
    total = 0
    patient_number = 0
    while total < instances:
        patient_number += 1
        patient = Patient(
            number=patient_number,
            patient_id=f"MRN{rng.randrange(10**7):07d}-{patient_number}",
            name=f"{rng.choice(FAMILY_HEADS)}{rng.choice(FAMILY_TAILS)}^{rng.choice(GIVEN_NAMES)}",
            birth_date=f"{rng.randint(1930, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
            sex=rng.choice("FM"),
        )
        for _ in range(rng.choice([1, 1, 2, 2, 3, 3, 4, 5, 6, 8])):
            if total >= instances:
                break
            kind = rng.choice(kinds)
            size = min(rng.randint(100, 300), instances - total)
            day = first_date + datetime.timedelta(days=rng.randrange(3653))
            plan = StudyPlan(
                number=len(studies),
                patient=patient,
                kind=kind,
                accession=f"A{rng.randrange(10**6):06d}{len(studies):06d}",
                date=day.strftime("%Y%m%d"),
                time=f"{rng.randint(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
                referrer=rng.choice(REFERRERS),
            )
            if size >= 10:
                plan.series = _series_of(kind, size, rng)
            else:  # the last study, cut short
                plan.series = [SeriesPlan(1, kind.modality, kind.description, size)]
            studies.append(plan)
            total += plan.size
    return studies


# -- instance documents ----------------------------------------------------------------------


def _tag(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


T = {
    keyword: _tag(keyword)
    for keyword in (
        "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
        "FrameOfReferenceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "AccessionNumber", "StudyDate", "StudyTime", "StudyID", "StudyDescription",
        "ReferringPhysicianName", "Modality", "SeriesNumber", "SeriesDescription",
        "ManufacturerModelName", "StationName", "InstanceNumber", "ImagePositionPatient",
        "SliceLocation",
    )
}  # fmt: skip


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def header_template() -> dict[str, Any]:
    """One CT instance's DICOM JSON as the store computes it (``parse_instance``).

    corpus.py's CT header with what a scanner adds (acquisition parameters, request and
    procedure sequences, references to the localizer, a private block): about 5 KB, as real
    CT headers without their large private blocks are.
    """
    raw = next(ct_instances(1, rows=16, cols=16))
    with tempfile.TemporaryDirectory(prefix="scale-header-") as directory:
        path = Path(directory) / "ct.dcm"
        path.write_bytes(raw)
        ds = pydicom.dcmread(path)
        ds.InstanceCreationDate = ds.StudyDate
        ds.InstanceCreationTime = ds.StudyTime
        ds.AcquisitionDate = ds.StudyDate
        ds.AcquisitionTime = ds.StudyTime
        ds.StationName = "CT01"
        ds.OperatorsName = "Tech^Terry"
        ds.PerformingPhysicianName = "Radiologist^Rae"
        ds.InstitutionAddress = "1 Hospital Road, Benchmark City"
        ds.InstitutionalDepartmentName = "Radiology"
        ds.DeviceSerialNumber = "SN-48213"
        ds.SoftwareVersions = ["VB20A", "SP4"]
        ds.ProtocolName = "Chest routine 1.25 mm"
        ds.PerformedProcedureStepStartDate = ds.StudyDate
        ds.PerformedProcedureStepDescription = "CT chest w/o contrast"
        ds.PatientAge = "061Y"
        ds.PatientSize = 1.74
        ds.PatientWeight = 78.5
        ds.ConvolutionKernel = ["Br40d", "3"]
        ds.DataCollectionDiameter = 500.0
        ds.ReconstructionDiameter = 358.4
        ds.DistanceSourceToDetector = 1085.6
        ds.DistanceSourceToPatient = 595.0
        ds.GantryDetectorTilt = 0.0
        ds.TableHeight = 152.0
        ds.RotationDirection = "CW"
        ds.ExposureTime = 500
        ds.XRayTubeCurrent = 218
        ds.Exposure = 109
        ds.FilterType = "FLAT"
        ds.GeneratorPower = 26
        ds.FocalSpots = [1.2]
        ds.DateOfLastCalibration = ds.StudyDate
        ds.ScanOptions = "HELICAL MODE"
        ds.SpiralPitchFactor = 1.2
        ds.CTDIvol = 7.81
        ds.LossyImageCompression = "00"
        ds.ProcedureCodeSequence = [_code_item("ZIP2340", "99HOSP", "CT chest without contrast")]
        ds.AnatomicRegionSequence = [_code_item("43799004", "SCT", "Thorax")]
        request = Dataset()
        request.RequestedProcedureID = "RP2340118"
        request.ScheduledProcedureStepID = "SPS2340118"
        request.ScheduledProcedureStepDescription = "CT chest without contrast"
        request.RequestedProcedureDescription = "CT chest"
        ds.RequestAttributesSequence = [request]
        step = Dataset()
        step.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
        step.ReferencedSOPInstanceUID = UID_ROOT + "77"
        ds.ReferencedPerformedProcedureStepSequence = [step]
        references = []
        for number in range(2):
            ref = Dataset()
            ref.ReferencedSOPClassUID = CTImageStorage
            ref.ReferencedSOPInstanceUID = f"{UID_ROOT}78.{number}"
            references.append(ref)
        ds.ReferencedImageSequence = references
        block = ds.private_block(0x0019, "BENCH_CT_1", create=True)
        block.add_new(0x10, "LO", "helical")
        block.add_new(0x11, "DS", "0.6")
        block.add_new(0x12, "SH", "TRUE")
        ds.save_as(path, enforce_file_format=True)
        parsed = parse_instance(path, partition=1)
    document = orjson.loads(parsed.metadata_json)
    assert isinstance(document, dict)
    return document


_BIRTH_DATE = _tag("PatientBirthDate")


def _set(document: dict[str, Any], keyword: str, value: object) -> None:
    element = document[T[keyword]]
    if element["vr"] == "PN":
        element["Value"] = [{"Alphabetic": value}]
    elif isinstance(value, list):
        element["Value"] = value
    else:
        element["Value"] = [value]


def stored_instances(
    plan: StudyPlan, uids: StudyUids, template: dict[str, Any]
) -> Iterator[StoredInstance]:
    """The study's instances as a store would index them (no pixel file is written)."""
    for s, series in enumerate(plan.series):
        document = copy.deepcopy(template)
        values: dict[str, object] = {
            "StudyInstanceUID": uids.study,
            "SeriesInstanceUID": uids.series[s],
            "FrameOfReferenceUID": uids.frames_of_reference[s],
            "SOPClassUID": SOP_CLASSES[series.modality],
            "PatientName": plan.patient.name,
            "PatientID": plan.patient.patient_id,
            "PatientBirthDate": plan.patient.birth_date,
            "PatientSex": plan.patient.sex,
            "AccessionNumber": plan.accession,
            "StudyDate": plan.date,
            "StudyTime": plan.time,
            "StudyID": str(plan.number),
            "StudyDescription": plan.kind.description,
            "ReferringPhysicianName": plan.referrer,
            "Modality": series.modality,
            "SeriesNumber": series.number,
            "SeriesDescription": series.description,
            "ManufacturerModelName": plan.kind.model,
            "StationName": STATIONS[plan.number % len(STATIONS)],
        }
        for tag, element in document.items():  # every date and time of the header
            if element["vr"] in ("DA", "TM") and "Value" in element and tag != _BIRTH_DATE:
                element["Value"] = [plan.date if element["vr"] == "DA" else plan.time]
        for keyword, value in values.items():
            _set(document, keyword, value)
        attributes = extract(Dataset(), document=document)
        sop_class = SOP_CLASSES[series.modality]
        for number, sop_uid in enumerate(uids.instances[s], start=1):
            _set(document, "SOPInstanceUID", sop_uid)
            _set(document, "InstanceNumber", number)
            z = round(-1.25 * number, 2)
            _set(document, "ImagePositionPatient", [-179.2, -179.2, z])
            _set(document, "SliceLocation", z)
            image = series.modality != "SR"
            yield StoredInstance(
                key=InstanceKey(uids.study, uids.series[s], sop_uid, partition=1),
                sop_class_uid=sop_class,
                transfer_syntax_uid=ExplicitVRLittleEndian,
                file_size=530_000 if image else 6_000,
                metadata_json=orjson.dumps(document),
                attributes=IndexAttributes(
                    study=attributes.study,
                    series=attributes.series,
                    instance={"InstanceNumber": number},
                    normalized=attributes.normalized,
                ),
                frames=FrameIndex(False, (((5_712, 524_288),),), 524_288) if image else None,
            )


# -- building the index ----------------------------------------------------------------------


def build_batched(path: Path, plans: Sequence[StudyPlan], seed: int, report: bool) -> None:
    """Write the instances with the index's own ``reserve`` and ``finish``, a few thousand
    per transaction (the same statements ``begin_instance`` and ``commit_instance`` run)."""
    template = header_template()
    db = SqliteDatabase(path, durable=False)
    store = SqliteIndexStore(db)
    # A larger page cache for the build's connection only: fewer reads of index pages.
    db.connection().execute("PRAGMA cache_size = -262144")
    started = time.perf_counter()
    written = 0
    next_report = 0.0
    try:
        position = 0
        while position < len(plans):
            batch: list[StudyPlan] = []
            while position < len(plans) and sum(p.size for p in batch) < BATCH_INSTANCES:
                batch.append(plans[position])
                position += 1
            with db.transaction() as conn:
                for plan in batch:
                    for instance in stored_instances(plan, study_uids(plan, seed), template):
                        reservation = store.reserve(conn, instance.key, upsert=False)
                        store.finish(conn, reservation, instance)
                        written += 1
            elapsed = time.perf_counter() - started
            if report and elapsed >= next_report:
                print(f"  {written:>9,} instances, {elapsed:5.0f} s", flush=True)
                next_report = elapsed + 30
        db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()


async def _build_one_by_one(path: Path, plans: Sequence[StudyPlan], seed: int) -> None:
    template = header_template()
    db = SqliteDatabase(path, durable=False)
    store = SqliteIndexStore(db)
    try:
        for plan in plans:
            for instance in stored_instances(plan, study_uids(plan, seed), template):
                reservation = await store.begin_instance(instance.key, upsert=False)
                await store.commit_instance(reservation, instance)
    finally:
        db.close()


def build_one_by_one(path: Path, plans: Sequence[StudyPlan], seed: int) -> None:
    """As STOW-RS writes: ``begin_instance`` then ``commit_instance``, two transactions each."""
    asyncio.run(_build_one_by_one(path, plans, seed))


# Per table: the columns to compare (all but the write timestamps) and the order of the rows.
_COMPARED = {
    "instance": ("* EXCEPT created_at, updated_at", "watermark"),
    "series": ("* EXCEPT updated_at", "study_uid, series_uid"),
    "study": ("* EXCEPT updated_at", "study_uid"),
    "instance_summary": ("*", "watermark"),
    "change_feed": ("* EXCEPT timestamp", "sequence"),
    "study_text": ("rowid, *", "rowid"),
}


def _rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    columns, order = _COMPARED[table]
    with sqlite3.connect(path) as conn:
        names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        if "EXCEPT" in columns:
            dropped = {c.strip() for c in columns.split("EXCEPT")[1].split(",")}
            columns = ", ".join(n for n in names if n not in dropped)
        rows = conn.execute(f"SELECT {columns} FROM {table} ORDER BY {order}").fetchall()
    conn.close()
    return rows


def verify_build(instances: int, seed: int) -> None:
    """Build ``instances`` instances both ways and compare the index tables row by row."""
    plans = plan_studies(instances, seed)
    with tempfile.TemporaryDirectory(prefix="scale-verify-") as directory:
        batched, single = Path(directory) / "batched.sqlite", Path(directory) / "single.sqlite"
        started = time.perf_counter()
        build_batched(batched, plans, seed, report=False)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        build_one_by_one(single, plans, seed)
        single_s = time.perf_counter() - started
        print(
            f"{instances:,} instances ({len(plans)} studies): batched {batched_s:.1f} s,"
            f" one by one {single_s:.1f} s"
        )
        for table in _COMPARED:
            a, b = _rows(batched, table), _rows(single, table)
            verdict = "identical" if a == b else "DIFFERENT"
            print(f"  {table:<17} {len(a):>7} rows  {verdict}")
            if a != b:
                raise SystemExit(f"the batched build differs from the store's in {table}")


@dataclass
class Archive:
    """A built index and the plan it was built from."""

    data_dir: Path
    instances: int
    plans: list[StudyPlan]
    build_seconds: float | None  # None when reused


def archive(workdir: Path, instances: int, seed: int) -> Archive:
    """The index of ``instances`` generated instances under ``workdir``, built if missing."""
    data_dir = workdir / f"index-{instances}"
    marker = data_dir / "complete"
    fingerprint = f"generator {GENERATOR_VERSION} schema {SCHEMA_VERSION} seed {seed}"
    plans = plan_studies(instances, seed)
    if marker.exists() and marker.read_text() == fingerprint:
        return Archive(data_dir, instances, plans, None)
    for stale in data_dir.glob("index.sqlite*"):
        stale.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"building an index of {instances:,} instances ({len(plans):,} studies) ...", flush=True)
    started = time.perf_counter()
    build_batched(data_dir / "index.sqlite", plans, seed, report=True)
    took = time.perf_counter() - started
    marker.write_text(fingerprint)
    return Archive(data_dir, instances, plans, took)


# -- the operations --------------------------------------------------------------------------

Check = Callable[[Any], Awaitable[int]]
"""Raises unless the answer is right; returns its size (results, or instances read)."""


@dataclass(frozen=True, slots=True)
class Search:
    """A QIDO-RS search: the resource, the query string's pairs and the URL's UIDs."""

    resource: QueryResource
    params: list[tuple[str, str]]
    study_uid: str | None = None
    series_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """One timed call, the check of its answer (not timed) and, for a search, the search."""

    run: Callable[[], Awaitable[Any]]
    check: Check
    search: Search | None = None


def _uids_of(results: list[dict[str, Any]], tag: str) -> list[str]:
    return [str(r[tag]["Value"][0]) for r in results]


def _expect(expected: set[str], tag: str, exact: bool = False) -> Check:
    """Results are ``min(limit, len(expected))`` distinct members of ``expected`` (all of
    them when ``exact``)."""

    async def check(answer: Any) -> int:
        found = _uids_of(answer.results, T[tag])
        want = len(expected) if exact else min(DEFAULT_LIMIT, len(expected))
        if len(found) != want or len(set(found)) != want or not set(found) <= expected:
            raise AssertionError(f"{len(found)} results, expected {want} of {len(expected)}")
        return want

    return check


class Operations:
    """The measured operations on one archive: each call has its own target, drawn from the
    plan, and its answer is checked against the plan."""

    def __init__(self, services: Services, arc: Archive, seed: int) -> None:
        self.services = services
        self.plans = arc.plans
        self.seed = seed
        self._study_uids: dict[int, StudyUids] = {}
        self._header: dict[str, Any] | None = None

    def uids(self, plan: StudyPlan) -> StudyUids:
        found = self._study_uids.get(plan.number)
        if found is None:
            found = self._study_uids[plan.number] = study_uids(plan, self.seed)
        return found

    def calls(self, name: str, count: int) -> list[Call]:
        rng = random.Random(f"{self.seed}/{name}")
        make: Callable[[random.Random], Call] = getattr(self, name)
        return [make(rng) for _ in range(count)]

    def _search(self, search: Search, check: Check) -> Call:
        service = self.services.search

        def run() -> Awaitable[Any]:
            return service.search_for(
                search.resource,
                search.params,
                study_uid=search.study_uid,
                series_uid=search.series_uid,
                api_version=API_VERSION,
                partition=1,
            )

        return Call(run, check, search)

    def _studies_where(self, test: Callable[[StudyPlan], bool]) -> set[str]:
        return {self.uids(p).study for p in self.plans if test(p)}

    def _studies(self, params: list[tuple[str, str]], expected: set[str]) -> Call:
        return self._search(
            Search(QueryResource.ALL_STUDIES, params), _expect(expected, "StudyInstanceUID")
        )

    # One method per operation (OPERATIONS): one call on a target drawn with ``rng``.

    def qido_studies(self, rng: random.Random) -> Call:
        newest = [self.uids(p).study for p in reversed(self.plans[-DEFAULT_LIMIT:])]

        async def check(answer: Any) -> int:
            if _uids_of(answer.results, T["StudyInstanceUID"]) != newest:
                raise AssertionError("the first page is not the newest studies, newest first")
            return len(newest)

        return self._search(Search(QueryResource.ALL_STUDIES, []), check)

    def by_patient_id(self, rng: random.Random) -> Call:
        patient = rng.choice(self.plans).patient
        expected = self._studies_where(lambda p: p.patient.number == patient.number)
        return self._studies([("PatientID", patient.patient_id)], expected)

    def name_fuzzy(self, rng: random.Random) -> Call:
        family = rng.choice(self.plans).patient.name.split("^")[0]
        word = family[: rng.randint(3, 5)].lower()

        def matches(plan: StudyPlan) -> bool:
            return any(part.lower().startswith(word) for part in plan.patient.name.split("^"))

        params = [("fuzzymatching", "true"), ("PatientName", word)]
        return self._studies(params, self._studies_where(matches))

    def name_wildcard(self, rng: random.Random) -> Call:
        family = rng.choice(self.plans).patient.name.split("^")[0]
        start = rng.randint(1, len(family) - 3)
        inner = family[start : start + 3]  # OHIF's *contains* search

        def matches(plan: StudyPlan) -> bool:
            return inner.lower() in plan.patient.name.lower().replace("^", " ")

        return self._studies([("PatientName", f"*{inner}*")], self._studies_where(matches))

    def _dates(self, rng: random.Random, days: int) -> Call:
        day = datetime.date(2016, 1, 1) + datetime.timedelta(days=rng.randrange(3653 - days))
        low = day.strftime("%Y%m%d")
        high = (day + datetime.timedelta(days=days - 1)).strftime("%Y%m%d")
        expected = self._studies_where(lambda p: low <= p.date <= high)
        return self._studies([("StudyDate", f"{low}-{high}")], expected)

    def date_month(self, rng: random.Random) -> Call:
        return self._dates(rng, 31)

    def date_year(self, rng: random.Random) -> Call:
        return self._dates(rng, 365)

    def _modality(self, modality: str) -> Call:
        expected = self._studies_where(lambda p: any(s.modality == modality for s in p.series))
        return self._studies([("ModalitiesInStudy", modality)], expected)

    def modality(self, rng: random.Random) -> Call:
        return self._modality(rng.choice(["CT", "MR", "PT", "SR"]))

    def modality_absent(self, rng: random.Random) -> Call:
        return self._modality(rng.choice(ABSENT_MODALITIES))

    def instances_modality_absent(self, rng: random.Random) -> Call:
        search = Search(
            QueryResource.ALL_INSTANCES, [("ModalitiesInStudy", rng.choice(ABSENT_MODALITIES))]
        )
        return self._search(search, _expect(set(), "SOPInstanceUID", exact=True))

    def study_series(self, rng: random.Random) -> Call:
        uids = self.uids(rng.choice(self.plans))
        return self._search(
            Search(QueryResource.STUDY_SERIES, [], study_uid=uids.study),
            _expect(set(uids.series), "SeriesInstanceUID", exact=True),
        )

    def series_instances(self, rng: random.Random) -> Call:
        uids = self.uids(rng.choice(self.plans))
        s = rng.randrange(len(uids.series))
        search = Search(
            QueryResource.STUDY_SERIES_INSTANCES,
            [],
            study_uid=uids.study,
            series_uid=uids.series[s],
        )
        return self._search(search, _expect(set(uids.instances[s]), "SOPInstanceUID"))

    def instance_by_uid(self, rng: random.Random) -> Call:
        uids = self.uids(rng.choice(self.plans))
        sop_uid = rng.choice(rng.choice(uids.instances))
        return self._search(
            Search(QueryResource.ALL_INSTANCES, [("SOPInstanceUID", sop_uid)]),
            _expect({sop_uid}, "SOPInstanceUID", exact=True),
        )

    def _metadata(self, rng: random.Random, *, series: bool, etag: bool) -> Call:
        uids = self.uids(rng.choice(self.plans))
        s = rng.randrange(len(uids.series))
        study_uid, series_uid = uids.study, uids.series[s] if series else None
        expected = uids.instances[s] if series else [u for i in uids.instances for u in i]
        metadata = self.services.metadata

        async def check_document(answer: Any) -> int:
            documents = orjson.loads(answer.body)
            found = [d[T["SOPInstanceUID"]]["Value"][0] for d in documents]
            if sorted(found) != sorted(expected):
                raise AssertionError(f"{len(found)} instances, expected {len(expected)}")
            return len(found)

        async def check_etag(answer: Any) -> int:
            document = await metadata.retrieve_metadata(study_uid, series_uid, partition=1)
            if answer != document.etag:
                raise AssertionError("the ETag differs from the one a 200 carries")
            return await check_document(document)

        if etag:
            return Call(
                lambda: metadata.current_etag(study_uid, series_uid, partition=1), check_etag
            )
        return Call(
            lambda: metadata.retrieve_metadata(study_uid, series_uid, partition=1), check_document
        )

    def study_metadata(self, rng: random.Random) -> Call:
        return self._metadata(rng, series=False, etag=False)

    def series_metadata(self, rng: random.Random) -> Call:
        return self._metadata(rng, series=True, etag=False)

    def study_etag(self, rng: random.Random) -> Call:
        return self._metadata(rng, series=False, etag=True)

    def series_etag(self, rng: random.Random) -> Call:
        return self._metadata(rng, series=True, etag=True)

    def store_commit(self, rng: random.Random) -> Call:
        """What a STOW-RS adds to the index for one more slice of a stored series: the
        reservation and the commit (``begin_instance`` and ``commit_instance``'s statements)
        in one write transaction, rolled back, so the archive stays as generated."""
        plan = rng.choice(self.plans)
        uids = self.uids(plan)
        s = rng.randrange(len(uids.series))
        template = next(
            i
            for i in stored_instances(plan, uids, self._template())
            if i.key.series_uid == uids.series[s]
        )
        key = InstanceKey(uids.study, uids.series[s], _uid(rng), partition=1)
        instance = dataclasses.replace(template, key=key)
        index = self.services.backend.index
        assert isinstance(index, SqliteIndexStore)

        async def run() -> int:
            conn = index.database.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                reservation = index.reserve(conn, key, upsert=False)
                index.finish(conn, reservation, instance)
            finally:
                conn.execute("ROLLBACK")
            return reservation.watermark

        async def check(watermark: Any) -> int:
            if not watermark or await index.get_instance(key) is not None:
                raise AssertionError("not reserved, or the rollback left the instance")
            return 1

        return Call(run, check)

    def _template(self) -> dict[str, Any]:
        if self._header is None:
            self._header = header_template()
        return self._header


OPERATIONS: list[tuple[str, str]] = [
    ("qido_studies", "QIDO studies, no filter (first page)"),
    ("by_patient_id", "QIDO studies, PatientID"),
    ("name_fuzzy", "QIDO studies, PatientName fuzzy"),
    ("name_wildcard", "QIDO studies, PatientName *abc*"),
    ("date_month", "QIDO studies, StudyDate 1 month"),
    ("date_year", "QIDO studies, StudyDate 1 year"),
    ("modality", "QIDO studies, ModalitiesInStudy"),
    ("modality_absent", "QIDO studies, ModalitiesInStudy, none"),
    ("instances_modality_absent", "QIDO instances, ModalitiesInStudy, none"),
    ("study_series", "QIDO series of a study"),
    ("series_instances", "QIDO instances of a series"),
    ("instance_by_uid", "QIDO instances, SOPInstanceUID"),
    ("study_metadata", "study metadata"),
    ("series_metadata", "series metadata"),
    ("study_etag", "study metadata ETag"),
    ("series_etag", "series metadata ETag"),
    ("store_commit", "store: one instance's index commit"),
]


@dataclass(frozen=True, slots=True)
class Figures:
    median_ms: float
    p90_ms: float
    mean_size: float  # results per call, or instances read


def figures(samples: list[float], sizes: list[int]) -> Figures:
    ordered = sorted(samples)
    return Figures(
        statistics.median(samples) * 1e3,
        ordered[int(0.9 * len(ordered))] * 1e3,
        statistics.mean(sizes),
    )


def settings_for(data_dir: Path) -> Settings:
    return Settings.from_mapping(
        {"DATA_DIR": str(data_dir), "DICOM_STORAGE": "local", "DICOM_DURABLE_WRITES": "false"}
    )


def warm_page_cache(path: Path) -> float:
    """Read the database file once, so that the OS caches it as a busy server's would be."""
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as handle:
        while handle.read(1 << 20):
            pass
    return time.perf_counter() - started


async def measure_all(
    archives: list[Archive], seed: int, calls: int, warmup: int
) -> dict[int, dict[str, Figures]]:
    """Time each operation on every archive, in rounds: one call per archive per round, the
    order rotating, so that a slow spell of the (shared) machine hits every size alike."""
    services = [build_services(settings_for(arc.data_dir)) for arc in archives]
    ops = [Operations(service, arc, seed) for service, arc in zip(services, archives, strict=True)]
    results: dict[int, dict[str, Figures]] = {arc.instances: {} for arc in archives}
    try:
        for name, label in OPERATIONS:
            planned = [op.calls(name, warmup + calls) for op in ops]
            samples: list[list[float]] = [[] for _ in archives]
            sizes: list[list[int]] = [[] for _ in archives]
            for index in range(warmup + calls):
                for k in range(len(archives)):
                    a = (index + k) % len(archives)
                    call = planned[a][index]
                    started = time.perf_counter()
                    answer = await call.run()
                    took = time.perf_counter() - started
                    size = await call.check(answer)
                    if index >= warmup:
                        samples[a].append(took)
                        sizes[a].append(size)
            cells = []
            for a, arc in enumerate(archives):
                found = results[arc.instances][name] = figures(samples[a], sizes[a])
                cells.append(f"{found.median_ms:7.2f} {found.p90_ms:7.2f} ({found.mean_size:3.0f})")
            print(f"  {label:<40}{'  '.join(cells)}", flush=True)
    finally:
        for service in services:
            await service.close()
    return results


async def explain(arc: Archive, seed: int) -> None:
    """The SQLite plan of the first search of each QIDO operation, as the index compiles it."""
    services = build_services(settings_for(arc.data_dir))
    ops = Operations(services, arc, seed)
    catalog = await services.search.catalog()
    conn = sqlite3.connect(arc.data_dir / "index.sqlite")
    try:
        for name, label in OPERATIONS:
            search = ops.calls(name, 1)[0].search
            if search is None:
                continue
            query = parse_query(
                search.params,
                search.resource,
                study_uid=search.study_uid,
                series_uid=search.series_uid,
                catalog=catalog.attributes,
                partition=1,
            )
            plan = ResponsePlan.for_query(query)
            compiled = compile_search(query, plan.metadata_levels, summary=plan.summary_only)
            print(f"\n{label}: {search.params}")
            for row in conn.execute(f"EXPLAIN QUERY PLAN {compiled.sql}", compiled.params):
                print(f"    {row[3]}")
    finally:
        conn.close()
        await services.close()


def table(sizes: list[int], results: dict[int, dict[str, Figures]]) -> str:
    """Markdown: one row per operation, one column per size (p50 / p90 ms, mean size)."""
    header = f"| operation | {' | '.join(f'{n:,}' for n in sizes)} |"
    lines = [header, "| --- |" + " ---: |" * len(sizes)]
    for name, label in OPERATIONS:
        cells = []
        for n in sizes:
            found = results[n][name]
            cells.append(f"{found.median_ms:.2f} / {found.p90_ms:.2f} ({found.mean_size:.0f})")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000", help="instance counts")
    parser.add_argument("--calls", type=int, default=100, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before them")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "dicomweb-scale-bench"
    )
    parser.add_argument(
        "--verify", type=int, default=0, help="compare the two ways of building N instances"
    )
    parser.add_argument("--explain", action="store_true", help="print each search's plan")
    parser.add_argument("--build-only", action="store_true", help="build the indexes, no timing")
    parser.add_argument(
        "--cold", action="store_true", help="do not read the databases into the OS cache first"
    )
    args = parser.parse_args()
    if args.verify:
        verify_build(args.verify, args.seed)
        return
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.workdir.mkdir(parents=True, exist_ok=True)
    archives = []
    for size in sizes:
        arc = archive(args.workdir, size, args.seed)
        archives.append(arc)
        db_bytes = sum(p.stat().st_size for p in arc.data_dir.glob("index.sqlite*"))
        built = "reused" if arc.build_seconds is None else f"built in {arc.build_seconds:.0f} s"
        print(
            f"{size:,} instances, {len(arc.plans):,} studies,"
            f" {len({p.patient.number for p in arc.plans}):,} patients,"
            f" {sum(len(p.series) for p in arc.plans):,} series;"
            f" index {db_bytes / 1e9:.2f} GB, {built}",
            flush=True,
        )
        if args.explain:
            asyncio.run(explain(arc, args.seed))
        elif not args.build_only and not args.cold:
            took = warm_page_cache(arc.data_dir / "index.sqlite")
            print(f"  read into the OS cache in {took:.1f} s", flush=True)
    if args.build_only or args.explain:
        return
    columns = "  ".join(f"{f'{n:,}: p50 p90 (size)':>23}" for n in sizes)
    print(f"\nservice time per call in ms, {args.calls} calls each\n{'':<42}{columns}")
    results = asyncio.run(measure_all(archives, args.seed, args.calls, args.warmup))
    print()
    print(table(sizes, results))


if __name__ == "__main__":
    main()
