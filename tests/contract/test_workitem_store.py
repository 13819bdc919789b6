"""The ``WorkitemStore`` port, on both backends: create-only creation,
reads, conditional replaces (the basis of the Transaction UID lock) and newest-first listing,
each in Microsoft.Default and in another data partition, and the partitions kept apart."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.nesting import MAX_SEQUENCE_DEPTH
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY
from dicom_core.query.workitems import parse_workitem_query, workitem_matches
from dicom_core.storage.azure.cosmos_session import Containers
from dicom_core.storage.azure.cosmos_workitems import WORKITEM_PARTITION, workitem_id
from dicom_core.storage.ports import WorkitemChanged, WorkitemExists
from tests.support.stores import Stores

OTHER_PARTITION = 7


@pytest.fixture(params=[DEFAULT_PARTITION_KEY, OTHER_PARTITION], ids=["default", "other"])
def partition(request: pytest.FixtureRequest) -> int:
    """The data partition a test works in: Microsoft.Default and another one."""
    key: int = request.param
    return key


def dataset(label: str) -> dict[str, object]:
    return {
        "00741204": {"vr": "LO", "Value": [label]},
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
    }


async def test_create_read_and_refuse_a_second_create(stores: Stores, partition: int) -> None:
    uid = generate_uid()
    assert await stores.workitems.get_workitem(uid, partition=partition) is None
    await stores.workitems.create_workitem(uid, dataset("one"), partition=partition)
    record = await stores.workitems.get_workitem(uid, partition=partition)
    assert record is not None
    assert record.uid == uid and record.dataset == dataset("one")
    with pytest.raises(WorkitemExists):
        await stores.workitems.create_workitem(uid, dataset("two"), partition=partition)


async def test_replace_needs_the_current_version(stores: Stores, partition: int) -> None:
    uid = generate_uid()
    await stores.workitems.create_workitem(uid, dataset("one"), partition=partition)
    first = await stores.workitems.get_workitem(uid, partition=partition)
    assert first is not None
    await stores.workitems.replace_workitem(
        uid, dataset("two"), version=first.version, partition=partition
    )
    second = await stores.workitems.get_workitem(uid, partition=partition)
    assert second is not None and second.dataset == dataset("two")
    assert second.version != first.version
    with pytest.raises(WorkitemChanged):
        await stores.workitems.replace_workitem(
            uid, dataset("stale"), version=first.version, partition=partition
        )
    with pytest.raises(WorkitemChanged):
        await stores.workitems.replace_workitem(
            generate_uid(), dataset("x"), version=first.version, partition=partition
        )


async def test_of_racing_replaces_one_wins(stores: Stores, partition: int) -> None:
    uid = generate_uid()
    await stores.workitems.create_workitem(uid, dataset("one"), partition=partition)
    read = await stores.workitems.get_workitem(uid, partition=partition)
    assert read is not None

    async def replace(label: str) -> bool:
        try:
            await stores.workitems.replace_workitem(
                uid, dataset(label), version=read.version, partition=partition
            )
        except WorkitemChanged:
            return False
        return True

    outcomes = await asyncio.gather(*(replace(f"r{i}") for i in range(4)))
    assert sorted(outcomes) == [False, False, False, True]


def item(label: str, patient: str, accessions: list[str], start: str) -> dict[str, object]:
    return dataset(label) | {
        "00100020": {"vr": "LO", "Value": [patient]},
        "00404005": {"vr": "DT", "Value": [start]},
        "0040A370": {
            "vr": "SQ",
            "Value": [{"00080050": {"vr": "SH", "Value": [a]}} for a in accessions],
        },
    }


QUERIES = [
    "",
    "PatientName=doe^j",
    "PatientName=do&fuzzymatching=true",
    "ReferencedRequestSequence.AccessionNumber=b2",
    "0040A370.00080050=A*",
    "ScheduledProcedureStepStartDateTime=20260102-",
    "ScheduledProcedureStepStartDateTime=-20260102&0040A370.00080050=?1",
    "ProcedureStepState=SCHEDULED&limit=2",
    "limit=1&offset=1",
    "offset=5",
]


@pytest.mark.parametrize("query", QUERIES)
async def test_search_agrees_with_the_reference_matcher(
    stores: Stores, partition: int, query: str
) -> None:
    patient = generate_uid()[-16:]
    made = [generate_uid() for _ in range(4)]
    for n, uid in enumerate(made):
        accessions = ["A1", "B2"] if n % 2 else [f"A{n}"]
        await stores.workitems.create_workitem(
            uid, item(uid, patient, accessions, f"2026010{n + 1}120000"), partition=partition
        )
    pairs = [("PatientID", patient)]
    pairs += [tuple(part.split("=", 1)) for part in query.split("&") if part]  # type: ignore[misc]
    parsed = parse_workitem_query(pairs, partition=partition)
    everything = parse_workitem_query(
        [("PatientID", patient), ("limit", "4000")], partition=partition
    )
    stored = await stores.workitems.search_workitems(everything)
    assert [r.uid for r in stored] == made[::-1]  # newest first
    expected = [r.uid for r in stored if workitem_matches(parsed, r.dataset)]
    expected = expected[parsed.offset : parsed.offset + parsed.limit]
    found = await stores.workitems.search_workitems(parsed)
    assert [r.uid for r in found] == expected


async def test_search_sees_replaced_values(stores: Stores, partition: int) -> None:
    uid, patient = generate_uid(), generate_uid()[-16:]
    await stores.workitems.create_workitem(
        uid, item("x", patient, ["OLD"], "20260101"), partition=partition
    )
    record = await stores.workitems.get_workitem(uid, partition=partition)
    assert record is not None
    await stores.workitems.replace_workitem(
        uid, item("x", patient, ["NEW"], "20260202"), version=record.version, partition=partition
    )
    for key, value, hits in (
        ("0040A370.00080050", "OLD", 0),
        ("0040A370.00080050", "NEW", 1),
        ("ScheduledProcedureStepStartDateTime", "20260101", 0),
        ("ScheduledProcedureStepStartDateTime", "20260202", 1),
    ):
        query = parse_workitem_query([("PatientID", patient), (key, value)], partition=partition)
        assert len(await stores.workitems.search_workitems(query)) == hits, (key, value)


def nested(depth: int) -> dict[str, object]:
    """A workitem whose InputInformationSequence nests ``depth`` sequence levels."""
    item: dict[str, object] = {"00080018": {"vr": "UI", "Value": ["1.2.3"]}}
    for _ in range(depth):
        item = {"00404021": {"vr": "SQ", "Value": [item]}}
    return {**dataset("deep"), **item}


async def test_a_workitem_nested_as_deep_as_allowed_round_trips(
    stores: Stores, partition: int
) -> None:
    """64 sequence levels are 193 nested JSON containers: past the 128 that Cosmos DB takes
    in an item, so the adapter must not store the dataset as a nested object."""
    uid = generate_uid()
    await stores.workitems.create_workitem(uid, nested(MAX_SEQUENCE_DEPTH), partition=partition)
    record = await stores.workitems.get_workitem(uid, partition=partition)
    assert record is not None and record.dataset == nested(MAX_SEQUENCE_DEPTH)
    changed = nested(MAX_SEQUENCE_DEPTH) | dataset("changed")
    await stores.workitems.replace_workitem(
        uid, changed, version=record.version, partition=partition
    )
    replaced = await stores.workitems.get_workitem(uid, partition=partition)
    assert replaced is not None and replaced.dataset == changed


async def test_cosmos_reads_workitems_written_with_the_dataset_as_an_object(
    stores: Stores,
) -> None:
    """Documents written before the dataset was kept as text are still read and replaced."""
    if stores.backend != "azure":
        pytest.skip("the document layout of the Cosmos DB adapter")
    uid = generate_uid()
    await stores.workitems.create_workitem(uid, dataset("old"), partition=DEFAULT_PARTITION_KEY)
    session = stores.workitems._session  # type: ignore[attr-defined]

    async def rewrite_as_object(c: Containers) -> None:
        doc_id = workitem_id(uid, partition=DEFAULT_PARTITION_KEY)
        doc = await c.system.read_item(doc_id, partition_key=WORKITEM_PARTITION)
        doc["dataset"] = orjson.loads(doc.pop("dataset_json"))
        await c.system.replace_item(doc_id, doc)

    await session.run(rewrite_as_object)
    record = await stores.workitems.get_workitem(uid, partition=DEFAULT_PARTITION_KEY)
    assert record is not None and record.dataset == dataset("old")
    new = dataset("new") | {"00100020": {"vr": "LO", "Value": [uid]}}
    await stores.workitems.replace_workitem(
        uid, new, version=record.version, partition=DEFAULT_PARTITION_KEY
    )
    found = await stores.workitems.search_workitems(
        parse_workitem_query([("PatientID", uid)], partition=DEFAULT_PARTITION_KEY)
    )
    assert [(r.uid, r.dataset) for r in found] == [(uid, new)]


async def test_one_uid_in_two_partitions_names_two_independent_workitems(stores: Stores) -> None:
    """Azure keys workitems by (partition, UID): creating, reading, replacing and searching
    in one partition never sees or touches the other's workitem of the same UID."""
    uid, patient = generate_uid(), generate_uid()[-16:]
    default, other = DEFAULT_PARTITION_KEY, OTHER_PARTITION
    await stores.workitems.create_workitem(
        uid, item("default", patient, ["A1"], "20260101"), partition=default
    )
    await stores.workitems.create_workitem(
        uid, item("other", patient, ["A1"], "20260101"), partition=other
    )
    with pytest.raises(WorkitemExists):
        await stores.workitems.create_workitem(uid, dataset("again"), partition=other)
    first = await stores.workitems.get_workitem(uid, partition=default)
    second = await stores.workitems.get_workitem(uid, partition=other)
    assert first is not None and first.dataset == item("default", patient, ["A1"], "20260101")
    assert second is not None and second.dataset == item("other", patient, ["A1"], "20260101")
    assert await stores.workitems.get_workitem(uid, partition=9) is None

    changed = item("changed", patient, ["NEW"], "20260202")
    await stores.workitems.replace_workitem(uid, changed, partition=other, version=second.version)
    replaced = await stores.workitems.get_workitem(uid, partition=other)
    assert replaced is not None and replaced.dataset == changed
    untouched = await stores.workitems.get_workitem(uid, partition=default)
    assert untouched == first
    # The other partition's current version does not let a write into this one.
    with pytest.raises(WorkitemChanged):
        await stores.workitems.replace_workitem(
            uid, dataset("x"), partition=default, version=replaced.version
        )
    with pytest.raises(WorkitemChanged):
        await stores.workitems.replace_workitem(
            uid, dataset("x"), partition=9, version=first.version
        )

    for partition, label in ((default, "default"), (other, "changed"), (9, None)):
        query = parse_workitem_query([("PatientID", patient)], partition=partition)
        found = await stores.workitems.search_workitems(query)
        assert [r.dataset["00741204"]["Value"][0] for r in found] == ([label] if label else [])
    for partition, hits in ((default, 0), (other, 1)):
        pairs = [("PatientID", patient), ("ReferencedRequestSequence.AccessionNumber", "NEW")]
        query = parse_workitem_query(pairs, partition=partition)
        assert len(await stores.workitems.search_workitems(query)) == hits


async def test_cosmos_keeps_the_default_partitions_documents_as_before_partitions(
    stores: Stores,
) -> None:
    """Microsoft.Default's workitems are the documents written before partitions existed
    (id w|{uid}, no dp); another partition's are w|{key}|{uid} with dp, in the same logical
    partition."""
    if stores.backend != "azure":
        pytest.skip("the document layout of the Cosmos DB adapter")
    uid = generate_uid()
    await stores.workitems.create_workitem(uid, dataset("a"), partition=DEFAULT_PARTITION_KEY)
    await stores.workitems.create_workitem(uid, dataset("b"), partition=OTHER_PARTITION)
    session = stores.workitems._session  # type: ignore[attr-defined]

    async def read(c: Containers) -> list[dict[str, object]]:
        return [
            await c.system.read_item(doc_id, partition_key=WORKITEM_PARTITION)
            for doc_id in (f"w|{uid}", f"w|{OTHER_PARTITION}|{uid}")
        ]

    default_doc, other_doc = await session.run(read)
    assert "dp" not in default_doc and other_doc["dp"] == OTHER_PARTITION
    assert default_doc["pk"] == other_doc["pk"] == WORKITEM_PARTITION
