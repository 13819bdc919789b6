"""Extended query tags: request validation, value indexing, and the reindex batches' safety.

The batch tests drive the local store directly: a message handled twice (at-least-once
delivery) must find its checkpoint stale and change nothing, and the continuation is always
enqueued in the same transaction as the checkpoint it carries.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.extended_query_tags import (
    QueryTagError,
    parse_definitions,
    parse_query_status,
)
from dicom_core.jobs.operations import StepOutcome
from dicom_core.jobs.reindex import (
    REINDEX_QUEUE,
    ReindexCheckpoint,
    ReindexJob,
    plan_reindex,
)
from dicom_core.query.attributes import CORE_CATALOG
from dicom_core.query.indexed_values import InvalidValue, extract_value, query_attribute
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_eqt import SqliteQueryTagStore
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.local.sqlite_queue import SqliteJobQueue
from tests.support.index_rows import add_instance


def test_definitions_accept_keywords_tags_and_any_case() -> None:
    [age, private] = parse_definitions(
        [
            {"PATH": "patientage", "LEVEL": "STUDY"},
            {"path": "00191001", "vr": "ss", "privatecreator": "Me", "level": "instance"},
        ]
    )
    assert (age.path, age.vr, age.level.value) == ("00101010", "AS", "Study")
    assert (private.vr, private.private_creator) == ("SS", "Me")


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "00101010", "level": "Study", "privateCreator": "X"},
        {"path": "0010101", "level": "Study"},
        {"path": "00191001", "vr": "XX", "privateCreator": "X", "level": "Study"},
        {"path": "00190010", "vr": "LO", "privateCreator": "X", "level": "Study"},
        {"path": "00101010", "level": 3},
        # Found by a fuzzing probe: listed back to every client as sent.
        {"path": "00191001", "vr": "LO", "privateCreator": "\u0000\u202e", "level": "Study"},
        {"path": "00191001", "vr": "LO", "privateCreator": "A\\B", "level": "Study"},
        {"path": "00191001", "vr": "LO", "privateCreator": "x" * 65, "level": "Study"},
        {"path": "FFFFFFFF", "vr": "LO", "privateCreator": "X", "level": "Study"},
        {"path": "FFFF1001", "vr": "LO", "privateCreator": "X", "level": "Study"},
    ],
)
def test_definitions_reject(entry: dict[str, object]) -> None:
    with pytest.raises(QueryTagError):
        parse_definitions([entry])


def test_a_private_creator_with_accents_and_spaces_is_fine() -> None:
    [tag] = parse_definitions(
        [{"path": "00191001", "vr": "LO", "privateCreator": "Société Médicale 2", "level": "Study"}]
    )
    assert tag.private_creator == "Société Médicale 2"


def test_a_standard_tag_of_several_vrs_takes_the_dictionary_first_unless_given() -> None:
    """A probe's SmallestPixelValueInSeries (0028,0108), "US or SS", without a VR was refused
    as if 'US or SS' were one unsupported VR."""
    [default, given] = parse_definitions(
        [
            {"path": "00280108", "level": "Series"},
            {"path": "LargestPixelValueInSeries", "vr": "SS", "level": "Series"},
        ]
    )
    assert (default.vr, given.vr) == ("US", "SS")
    with pytest.raises(QueryTagError, match=r"does not match its VR in the standard \(US or SS\)"):
        parse_definitions([{"path": "00280108", "vr": "UL", "level": "Series"}])


def test_definitions_reject_more_than_once_in_one_request() -> None:
    with pytest.raises(QueryTagError, match="more than once"):
        parse_definitions([{"path": "PatientAge", "level": "Study"}] * 2)


def test_query_status() -> None:
    assert parse_query_status({"QUERYSTATUS": "enabled"}).value == "Enabled"
    with pytest.raises(QueryTagError):
        parse_query_status({"queryStatus": "maybe"})


def test_values_by_vr() -> None:
    weight = query_attribute("00101030", "DS", "Study", None)
    assert extract_value({"00101030": {"vr": "DS", "Value": [70.5]}}, weight).number == 70.5
    assert extract_value({}, weight) is None
    with pytest.raises(InvalidValue):
        extract_value({"00101030": {"vr": "DS", "Value": [1, 2]}}, weight)
    number = query_attribute("00191001", "US", "Instance", "Maker")
    doc = {"00190010": {"vr": "LO", "Value": ["Maker"]}, "00191001": {"vr": "US", "Value": [7]}}
    assert extract_value(doc, number).number == 7
    other = query_attribute("00191001", "US", "Instance", "Other")
    assert extract_value(doc, other) is None
    with pytest.raises(InvalidValue):
        extract_value(
            {"00191001": {"vr": "US", "Value": [70000]}},
            query_attribute("00191001", "US", "Instance", None),
        )
    date = query_attribute("00080021", "DA", "Series", None)
    with pytest.raises(InvalidValue):
        extract_value({"00080021": {"vr": "DA", "Value": ["2024-01-01"]}}, date)


async def test_a_batch_handled_twice_changes_nothing(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "index.sqlite")
    index = SqliteIndexStore(db)
    for n in range(7):
        await add_instance(
            index,
            generate_uid(),
            generate_uid(),
            generate_uid(),
            metadata={"00101010": {"vr": "AS", "Value": [f"{n:03d}Y"]}},
        )
    store = SqliteQueryTagStore(db)
    service = ExtendedQueryTagService(store, plan_reindex=plan_reindex)
    job = ReindexJob(store, batch_size=3)
    operation = await service.add(parse_definitions([{"path": "PatientAge", "level": "Study"}]))
    queue = SqliteJobQueue(db)
    handled = 0
    while messages := await queue.receive(REINDEX_QUEUE, max_messages=1):
        [message] = messages
        await job.handle_message(message.body)
        await job.handle_message(message.body)  # redelivered: stale, no effect
        checkpoint = ReindexCheckpoint.from_json(message.body["checkpoint"])
        outcome = await job.batch(operation.operation_id, checkpoint)
        assert outcome is StepOutcome.STALE
        await queue.complete(message)
        handled += 1
    assert handled == 3  # 3 + 3 + 1 instances
    done = await store.get_operation(operation.operation_id)
    assert done is not None
    assert (done.status, done.percent_complete) == ("Completed", 100)
    assert (await service.get("00101010")).status == "Ready"
    rows = db.connection().execute("SELECT COUNT(*) FROM eqt_value").fetchone()
    assert rows == (7,)
    raw = db.connection().execute("SELECT checkpoint FROM operation").fetchone()[0]
    assert orjson.loads(raw)["done"] == 7
    db.close()


async def test_at_most_128_tags(tmp_path: Path) -> None:
    from pydicom._dicom_dict import DicomDictionary

    from dicom_core.errors import BadRequest

    db = SqliteDatabase(tmp_path / "index.sqlite")
    service = ExtendedQueryTagService(SqliteQueryTagStore(db), plan_reindex=plan_reindex)
    long_strings = [
        f"{tag:08X}"
        for tag, entry in DicomDictionary.items()
        if entry[0] == "LO"
        and entry[1] == "1"
        and not entry[3]
        and tag >> 16 not in (0, 2)
        and CORE_CATALOG.find(f"{tag:08X}") is None
    ][:129]
    first = parse_definitions([{"path": p, "level": "Instance"} for p in long_strings[:128]])
    await service.add(first)
    with pytest.raises(BadRequest, match="128"):
        await service.add(parse_definitions([{"path": long_strings[128], "level": "Study"}]))
    assert len(await service.list_tags()) == 128
    db.close()


@pytest.mark.parametrize(
    ("path", "level", "named"),
    [
        ("PatientName", "Study", "PatientName (00100010)"),
        ("00081090", "Series", "ManufacturerModelName (00081090)"),
        ("StudyDate", "Instance", "StudyDate (00080020)"),
        ("SOPInstanceUID", "Instance", "SOPInstanceUID (00080018)"),
    ],
)
async def test_add_refuses_a_tag_qido_already_supports(
    tmp_path: Path, path: str, level: str, named: str
) -> None:
    from dicom_core.errors import BadRequest

    db = SqliteDatabase(tmp_path / "index.sqlite")
    service = ExtendedQueryTagService(SqliteQueryTagStore(db), plan_reindex=plan_reindex)
    wanted = [{"path": "PatientAge", "level": "Study"}, {"path": path, "level": level}]
    with pytest.raises(BadRequest, match=rf"{re.escape(named)} are already supported by QIDO"):
        await service.add(parse_definitions(wanted))
    # nothing was added and no reindex was started
    assert await service.list_tags() == []
    assert db.connection().execute("SELECT COUNT(*) FROM operation").fetchone() == (0,)
    db.close()


async def test_store_time_indexing_leaves_an_invalid_value_out_without_an_error(
    tmp_path: Path,
) -> None:
    # given: a ready tag, then an instance whose value for it only earned a store warning
    db = SqliteDatabase(tmp_path / "index.sqlite")
    store = SqliteQueryTagStore(db)
    service = ExtendedQueryTagService(store, plan_reindex=plan_reindex)
    operation = await service.add(parse_definitions([{"path": "PatientSex", "level": "Study"}]))
    queue = SqliteJobQueue(db)
    while messages := await queue.receive(REINDEX_QUEUE, max_messages=1):
        await ReindexJob(store).handle_message(messages[0].body)
        await queue.complete(messages[0])
    assert (await store.get_operation(operation.operation_id)).status == "Completed"
    from dicom_core.domain.model import InstanceKey

    key = InstanceKey(generate_uid(), generate_uid(), generate_uid(), partition=1)
    metadata = orjson.dumps({"00100040": {"vr": "CS", "Value": ["not a code string"]}})
    # when
    await service.index_instance(key, 1, metadata)
    # then
    tag = await service.get("00100040")
    assert (tag.error_count, tag.query_status) == (0, "Enabled")
    assert await service.errors("00100040", limit=10, offset=0) == []
    assert db.connection().execute("SELECT COUNT(*) FROM eqt_value").fetchone() == (0,)
    db.close()


def test_person_name_index_value_leaves_the_kept_nul_padding_out() -> None:
    # the metadata keeps a sender's NUL padding; the indexed value must not carry it
    name = query_attribute("00101001", "PN", "Study", None)
    value = extract_value({"00101001": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J\x00"}]}}, name)
    assert value is not None and value.text == "Doe^J"
