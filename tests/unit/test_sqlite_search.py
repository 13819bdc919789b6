"""``SqliteIndexStore.search``: hand-picked cases the random tests may rarely reach.

Each case also asks the reference matcher, so a failure says which side is wrong.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from dicom_core.domain.model import InstanceKey
from dicom_core.query.conditions import QueryLevel, QueryResource
from dicom_core.query.matching import matches
from dicom_core.query.parser import parse_query
from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_index import SqliteIndexStore
from dicom_core.storage.local.sqlite_query import compile_search, modality_probe
from tests.support.index_rows import add_instance
from tests.support.sql_trace import trace_statements

R = QueryResource


@pytest.fixture()
async def store(tmp_path: Path) -> AsyncIterator[SqliteIndexStore]:
    db = SqliteDatabase(tmp_path / "index.sqlite")
    yield SqliteIndexStore(db)
    db.close()


async def studies(store: SqliteIndexStore, *params: tuple[str, str]) -> list[str]:
    found = await store.search(parse_query(list(params), R.ALL_STUDIES, partition=1))
    return [m.study_uid for m in found]


@pytest.mark.parametrize(
    ("stored", "query", "expected"),
    [
        ("x[1]", "x[1]*", True),  # GLOB's bracket classes must not leak through
        ("x1", "x[1]*", False),
        ("a[b", "a[*", True),
        ("Échographie", "écho*", True),
        ("Échographie", "echo*", False),
        ("Straße", "STRASSE", True),  # full Unicode case folding, not ASCII-only
        ("ΣΊΣΥΦΟΣ", "σίσυφος", True),
        ("it's", "it's", True),
        ("'; DROP TABLE study; --", "'; DROP TABLE study; --", True),  # values are bound
        ("a%b_c", "a%b?c", True),  # LIKE metacharacters mean nothing here
        ("axbyc", "a%b_c", False),
    ],
)
async def test_case_insensitive_string_matching(
    store: SqliteIndexStore, stored: str, query: str, expected: bool
) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1", study={"StudyDescription": stored})
    found = await studies(store, ("StudyDescription", query))
    [condition] = parse_query([("StudyDescription", query)], R.ALL_STUDIES, partition=1).conditions
    assert matches(condition, stored) is expected
    assert found == (["1.1"] if expected else [])


@pytest.mark.parametrize(
    ("stored", "query", "fuzzy", "expected"),
    [
        ("John^Doe", "joh", True, True),
        ("John^Doe", "jo do", True, True),
        ("John^Doe", "ohn", True, False),
        ("Van Der Berg^Jan", "ber", True, True),
        ("Van Der Berg^Jan", "erg", True, False),
        ("Müller^Hans", "MULLER^HANS", False, True),
        ("Müller^Hans", "mül*", False, True),
        ("Müller^Hans", "*ans", False, True),
        ("Müller^Hans", "muller", False, False),
        ("Yamada^Tarou=山田^太郎", "山田", True, True),
        ("O'Brien^Ann", "o'b", True, True),
        ("[x]^Ann", "[x", True, True),
    ],
)
async def test_person_name_matching(
    store: SqliteIndexStore, stored: str, query: str, fuzzy: bool, expected: bool
) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1", study={"PatientName": stored})
    params = [("PatientName", query), ("fuzzymatching", str(fuzzy).lower())]
    [condition] = parse_query(params, R.ALL_STUDIES, partition=1).conditions
    assert matches(condition, stored) is expected
    assert await studies(store, *params) == (["1.1"] if expected else [])


async def test_results_come_newest_first_and_page_with_limit_and_offset(
    store: SqliteIndexStore,
) -> None:
    for n in range(5):
        await add_instance(store, f"1.{n}", f"1.{n}.1", f"1.{n}.1.1", study={"PatientID": "P"})
    await add_instance(store, "1.0", "1.0.1", "1.0.1.2", study={"PatientID": "P"})  # 1.0 again
    assert await studies(store, ("PatientID", "p")) == ["1.0", "1.4", "1.3", "1.2", "1.1"]
    paged = await studies(store, ("PatientID", "p"), ("limit", "2"), ("offset", "1"))
    assert paged == ["1.4", "1.3"]
    assert await studies(store, ("PatientID", "p"), ("offset", "5")) == []


async def test_study_values_are_the_latest_instance_values(store: SqliteIndexStore) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1", study={"PatientID": "OLD"})
    await add_instance(store, "1.1", "1.1.2", "1.1.2.1", study={"PatientID": "NEW"})
    assert await studies(store, ("PatientID", "OLD")) == []
    assert await studies(store, ("PatientID", "NEW")) == ["1.1"]
    series = await store.search(parse_query([("PatientID", "NEW")], R.ALL_SERIES, partition=1))
    assert sorted(m.series_uid or "" for m in series) == ["1.1.1", "1.1.2"]


async def test_modalities_in_study_and_counts(store: SqliteIndexStore) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1", series={"Modality": "CT"})
    await add_instance(store, "1.1", "1.1.1", "1.1.1.2", series={"Modality": "CT"})
    await add_instance(store, "1.1", "1.1.2", "1.1.2.1", series={"Modality": "SR"})
    await add_instance(store, "1.2", "1.2.1", "1.2.1.1", series={"Modality": "MR"})
    assert await studies(store, ("ModalitiesInStudy", "sr")) == ["1.1"]
    assert await studies(store, ("ModalitiesInStudy", "MR\\SR")) == ["1.2", "1.1"]
    assert await studies(store, ("ModalitiesInStudy", "M*")) == ["1.2"]
    [match] = await store.search(
        parse_query([("StudyInstanceUID", "1.1")], R.ALL_STUDIES, partition=1)
    )
    assert (match.study_series, match.study_instances, match.modalities) == (2, 3, ("CT", "SR"))
    series = await store.search(parse_query([], R.STUDY_SERIES, study_uid="1.1", partition=1))
    assert [(m.series_uid, m.series_instances) for m in series] == [("1.1.2", 1), ("1.1.1", 2)]


@pytest.mark.parametrize("rare_modality_rows", [0, 2, 10**9])
async def test_modalities_in_study_by_either_route(
    tmp_path: Path, rare_modality_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both routes of a ModalitiesInStudy search find the same studies, in the same order: a
    limit of 0 always tests each study, 10**9 always starts from the series, and 2 takes the
    series route for a modality of one series and not for two (sqlite_query.modality_probe,
    which at the study level counts series)."""
    executed = trace_statements(monkeypatch)
    db = SqliteDatabase(tmp_path / "index.sqlite")
    store = SqliteIndexStore(db, rare_modality_rows=rare_modality_rows)
    try:
        await add_instance(store, "1.1", "1.1.1", "1.1.1.1", series={"Modality": "CT"})
        await add_instance(store, "1.1", "1.1.2", "1.1.2.1", series={"Modality": "SR"})
        await add_instance(store, "1.2", "1.2.1", "1.2.1.1", series={"Modality": "MR"})
        await add_instance(store, "1.3", "1.3.1", "1.3.1.1", series={"Modality": "ct"})
        executed.clear()
        assert await studies(store, ("ModalitiesInStudy", "CT")) == ["1.3", "1.1"]
        # The route taken: from the series for 10**9 always, for 2 not (CT has two series).
        from_series = any("IN (SELECT m.study_uid FROM series m" in sql for sql in executed)
        assert from_series == (rare_modality_rows == 10**9)
        executed.clear()
        assert await studies(store, ("ModalitiesInStudy", "MR")) == ["1.2"]
        from_series = any("IN (SELECT m.study_uid FROM series m" in sql for sql in executed)
        assert from_series == (rare_modality_rows > 0)
        assert await studies(store, ("ModalitiesInStudy", "sr")) == ["1.1"]
        assert await studies(store, ("ModalitiesInStudy", "MR\\SR")) == ["1.2", "1.1"]
        assert await studies(store, ("ModalitiesInStudy", "US")) == []
        assert await studies(store, ("ModalitiesInStudy", "C*")) == ["1.3", "1.1"]
        series = parse_query([("ModalitiesInStudy", "SR")], R.ALL_SERIES, partition=1)
        assert sorted(m.series_uid or "" for m in await store.search(series)) == ["1.1.1", "1.1.2"]
        instances = parse_query(
            [("ModalitiesInStudy", "MR"), ("limit", "1")], R.ALL_INSTANCES, partition=1
        )
        assert [m.sop_uid for m in await store.search(instances)] == ["1.2.1.1"]
    finally:
        db.close()


def test_modality_probe_counts_rows_only_for_values_an_index_seeks() -> None:
    probe = modality_probe(
        parse_query([("ModalitiesInStudy", "CT\\MR")], R.ALL_STUDIES, partition=1), 7
    )
    assert probe is not None and probe.params == ("ct", "mr", 1, 7)  # partition 1
    assert (
        modality_probe(parse_query([("ModalitiesInStudy", "C*")], R.ALL_STUDIES, partition=1))
        is None
    )
    assert modality_probe(parse_query([("PatientID", "x")], R.ALL_STUDIES, partition=1)) is None
    # At the instance level the series route sorts instances: the probe counts those.
    instances = modality_probe(
        parse_query([("ModalitiesInStudy", "CT")], R.ALL_INSTANCES, partition=1)
    )
    assert instances is not None and "JOIN instance i" in instances.sql
    rare = compile_search(
        parse_query([("ModalitiesInStudy", "CT")], R.ALL_STUDIES, partition=1), rare_modality=True
    )
    assert "st.study_uid IN (SELECT m.study_uid FROM series m" in rare.sql


@pytest.mark.parametrize("resource", [R.ALL_STUDIES, R.ALL_SERIES, R.ALL_INSTANCES])
def test_rare_modality_route_seeks_the_studies_of_the_modality(
    tmp_path: Path, resource: QueryResource
) -> None:
    """The series route reads only the rows of the modality's studies, through the table's
    key (partition, study): its whole point. With the partition as a filter only (``+``), as
    the other searches have it, the key could not seek them, and the route tested every row
    newest first, its cost growing with the index (benchmarks/SCALE.md)."""
    db = SqliteDatabase(tmp_path / "index.sqlite")
    try:
        rare = compile_search(
            parse_query([("ModalitiesInStudy", "US")], resource, partition=1), rare_modality=True
        )
        plan = [
            row[3] for row in db.connection().execute(f"EXPLAIN QUERY PLAN {rare.sql}", rare.params)
        ]
    finally:
        db.close()
    driving = {R.ALL_STUDIES: "st", R.ALL_SERIES: "se", R.ALL_INSTANCES: "i"}[resource]
    reads = [line for line in plan if re.match(rf"(SEARCH|SCAN) {driving}( |$)", line)]
    assert len(reads) == 1, plan
    assert reads[0].startswith(f"SEARCH {driving} USING"), plan
    assert reads[0].endswith("(partition_key=? AND study_uid=?)"), plan
    assert "LIST SUBQUERY" in "\n".join(plan)


async def test_date_ranges(store: SqliteIndexStore) -> None:
    for n, day in enumerate(["20240101", "20240115", "20240131", "20240201"]):
        await add_instance(store, f"1.{n}", f"1.{n}.1", f"1.{n}.1.1", study={"StudyDate": day})
    assert await studies(store, ("StudyDate", "20240115-20240131")) == ["1.2", "1.1"]
    assert await studies(store, ("StudyDate", "20240131-")) == ["1.3", "1.2"]
    assert await studies(store, ("StudyDate", "-20240101")) == ["1.0"]
    assert await studies(store, ("StudyDate", "20240115")) == ["1.1"]


async def test_scoped_resources_and_uid_lists(store: SqliteIndexStore) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1")
    await add_instance(store, "1.1", "1.1.2", "1.1.2.1")
    await add_instance(store, "1.2", "1.2.1", "1.2.1.1")
    query = parse_query(
        [], R.STUDY_SERIES_INSTANCES, study_uid="1.1", series_uid="1.1.2", partition=1
    )
    assert [m.sop_uid for m in await store.search(query)] == ["1.1.2.1"]
    query = parse_query(
        [("SOPInstanceUID", "1.1.1.1,1.2.1.1")], R.STUDY_INSTANCES, study_uid="1.1", partition=1
    )
    assert [m.sop_uid for m in await store.search(query)] == ["1.1.1.1"]
    query = parse_query([("StudyInstanceUID", "1.2\\1.1")], R.ALL_INSTANCES, partition=1)
    assert len(await store.search(query)) == 3


async def test_reserved_and_deleted_instances_are_not_found(store: SqliteIndexStore) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1")
    await add_instance(store, "1.1", "1.1.1", "1.1.1.2")
    await store.begin_instance(InstanceKey("1.1", "1.1.1", "1.1.1.3", partition=1), upsert=False)
    found = await store.search(parse_query([], R.ALL_INSTANCES, partition=1))
    assert sorted(m.sop_uid or "" for m in found) == ["1.1.1.1", "1.1.1.2"]
    await store.delete_instances("1.1", "1.1.1", "1.1.1.2", partition=1)
    found = await store.search(parse_query([], R.ALL_INSTANCES, partition=1))
    assert [m.sop_uid for m in found] == ["1.1.1.1"]
    [study] = await store.search(parse_query([], R.ALL_STUDIES, partition=1))
    assert study.study_instances == 1


async def test_metadata_of_the_latest_instances_comes_back(store: SqliteIndexStore) -> None:
    await add_instance(store, "1.1", "1.1.1", "1.1.1.1", metadata={"n": 1})
    await add_instance(store, "1.1", "1.1.2", "1.1.2.1", metadata={"n": 2})
    levels = frozenset(QueryLevel)
    private = [("includefield", "00091001")]  # not a summary attribute: whole documents
    found = await store.search(parse_query(private, R.ALL_INSTANCES, partition=1), metadata=levels)
    by_sop = {m.sop_uid: m for m in found}
    first = by_sop["1.1.1.1"]
    assert orjson.loads(first.instance_metadata or b"") == {"n": 1}
    assert orjson.loads(first.series_metadata or b"") == {"n": 1}
    assert orjson.loads(first.study_metadata or b"") == {"n": 2}  # the study's latest
    [plain] = await store.search(
        parse_query([("SOPInstanceUID", "1.1.2.1")], R.ALL_INSTANCES, partition=1)
    )
    assert plain.instance_metadata is None


def test_compiled_sql_binds_every_value() -> None:
    query = parse_query(
        [("PatientName", "x'); DROP TABLE study; --"), ("StudyDescription", "*';*")],
        R.ALL_STUDIES,
        partition=1,
    )
    compiled = compile_search(query)
    assert "DROP" not in compiled.sql
    assert "'" not in compiled.sql.replace("' '", "")


async def test_summary_documents_stand_in_when_only_summary_attributes_are_read(
    store: SqliteIndexStore,
) -> None:
    name = {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane"}]}
    private = {"vr": "LO", "Value": ["x"]}
    await add_instance(
        store, "1.1", "1.1.1", "1.1.1.1", metadata={"00100010": name, "00091001": private}
    )
    study = frozenset({QueryLevel.STUDY})
    [summary] = await store.search(parse_query([], R.ALL_STUDIES, partition=1), metadata=study)
    assert orjson.loads(summary.study_metadata or b"") == {"00100010": name}
    asked = parse_query([("includefield", "00091001")], R.ALL_STUDIES, partition=1)
    [whole] = await store.search(asked, metadata=study)
    assert orjson.loads(whole.study_metadata or b"") == {"00100010": name, "00091001": private}
