"""``SearchService``: which attributes a result carries and whose latest instance supplies them,
and what a search may match on (extended query tags, external metadata).

For the response rules the index is a fake that returns prepared matches, so these tests see
only those rules; the catalog tests run on the local backend's services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from dicom_core.bootstrap import Services
from dicom_core.domain.extended_query_tags import parse_definitions
from dicom_core.errors import BadRequest
from dicom_core.query.conditions import QueryDescription, QueryLevel, QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.query.results import SearchMatch
from dicom_core.services.search import ResponsePlan, SearchService, SummaryCache
from tests.support.factories import make_dataset
from tests.support.services import local_services, run_reindex, store_datasets

R = QueryResource
STUDY_DOC = {
    "0020000D": {"vr": "UI", "Value": ["1.1"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Latest^Name"}]},
    "00080030": {"vr": "TM", "Value": ["101010"]},
    "00080060": {"vr": "CS", "Value": ["MR"]},
    "00091001": {"vr": "LO", "Value": ["private"]},
}
SERIES_DOC = {
    "0020000D": {"vr": "UI", "Value": ["1.1"]},
    "0020000E": {"vr": "UI", "Value": ["1.1.1"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Older^Name"}]},
    "00080060": {"vr": "CS", "Value": ["CT"]},
    "0008103E": {"vr": "LO", "Value": ["Axial"]},
}
INSTANCE_DOC = {
    **SERIES_DOC,
    "00080018": {"vr": "UI", "Value": ["1.1.1.1"]},
    "00200013": {"vr": "IS", "Value": [1]},
}


class FakeIndex:
    """One prepared match per search; like the Cosmos adapter, it leaves out the documents
    the caller says it has cached (and counts them in ``left_out``)."""

    def __init__(self) -> None:
        self.asked: frozenset[QueryLevel] | None = None
        self.offered_cache = False
        self.left_out = 0

    async def search(
        self,
        query: QueryDescription,
        *,
        metadata: frozenset[QueryLevel] = frozenset(),
        cached: Callable[[int], bool] | None = None,
    ) -> list[SearchMatch]:
        self.asked = metadata
        self.offered_cache = cached is not None
        level = query.level

        def document(wanted: QueryLevel, watermark: int, doc: dict[str, Any]) -> bytes | None:
            if wanted not in metadata:
                return None
            if cached is not None and cached(watermark):
                self.left_out += 1
                return None
            return orjson.dumps(doc)

        return [
            SearchMatch(
                study_uid="1.1",
                series_uid="1.1.1" if level >= QueryLevel.SERIES else None,
                sop_uid="1.1.1.1" if level is QueryLevel.INSTANCE else None,
                study_watermark=9,
                series_watermark=5 if level >= QueryLevel.SERIES else None,
                instance_watermark=4 if level is QueryLevel.INSTANCE else None,
                study_series=2,
                study_instances=7,
                modalities=("CT", "MR"),
                series_instances=3 if level >= QueryLevel.SERIES else None,
                study_metadata=document(QueryLevel.STUDY, 9, STUDY_DOC),
                series_metadata=document(QueryLevel.SERIES, 5, SERIES_DOC),
                instance_metadata=document(QueryLevel.INSTANCE, 4, INSTANCE_DOC),
            )
        ]


async def run(params: list[tuple[str, str]], resource: QueryResource, **path: str) -> tuple:  # type: ignore[type-arg]
    index = FakeIndex()
    # The result rules need no tag stores: search() never reads the catalog.
    service = SearchService(index, query_tags=None, external_metadata=None)  # type: ignore[arg-type]
    [result] = await service.search(parse_query(params, resource, partition=1, **path))
    return result, index.asked


async def test_study_results_come_from_the_study_latest_instance() -> None:
    result, asked = await run([("includefield", "StudyTime,00091001")], R.ALL_STUDIES)
    assert asked == {QueryLevel.STUDY}
    assert result["00100010"]["Value"][0]["Alphabetic"] == "Latest^Name"
    assert result["00080030"]["Value"] == ["101010"]
    assert result["00091001"]["Value"] == ["private"]
    assert list(result) == sorted(result)  # attributes in tag order


async def test_series_results_take_study_attributes_from_the_study_latest_instance() -> None:
    result, asked = await run([], R.ALL_SERIES)
    assert asked == {QueryLevel.STUDY, QueryLevel.SERIES}
    assert result["00100010"]["Value"][0]["Alphabetic"] == "Latest^Name"
    assert result["00080060"]["Value"] == ["CT"]  # the series' own modality


async def test_a_scoped_series_search_needs_no_study_document() -> None:
    result, asked = await run([], R.STUDY_SERIES, study_uid="1.1")
    assert asked == {QueryLevel.SERIES}
    assert set(result) == {"0020000D", "0020000E", "00080060"}


async def test_aggregates_are_computed_not_read() -> None:
    params = [
        ("includefield", "NumberOfStudyRelatedInstances,NumberOfStudyRelatedSeries"),
        ("includefield", "ModalitiesInStudy,NumberOfSeriesRelatedInstances"),
    ]
    study, _ = await run(params, R.ALL_STUDIES)
    assert study["00201208"] == {"vr": "IS", "Value": [7]}
    assert study["00201206"] == {"vr": "IS", "Value": [2]}
    assert study["00080061"] == {"vr": "CS", "Value": ["CT", "MR"]}
    assert "00201209" not in study  # a series count has no meaning for a study
    series, _ = await run(params, R.ALL_SERIES)
    assert series["00201209"] == {"vr": "IS", "Value": [3]}


async def test_includefield_all_adds_other_tags_and_instance_availability() -> None:
    result, _ = await run(
        [("includefield", "all")], R.STUDY_SERIES_INSTANCES, study_uid="1.1", series_uid="1.1.1"
    )
    assert result["00200013"]["Value"] == [1]
    assert result["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    assert "0008103E" not in result  # series level: not returned for a series' instances


async def test_a_repeated_search_reads_no_cached_document_again() -> None:
    """Summary attributes only: the index is told which latest instances' documents the
    service has cached (by watermark, one immutable version each) and leaves them out, and
    the results stay the same."""
    index = FakeIndex()
    service = SearchService(index, query_tags=None, external_metadata=None)  # type: ignore[arg-type]
    query = parse_query([], R.ALL_INSTANCES, partition=1)
    first = await service.search(query)
    assert index.offered_cache and index.left_out == 0
    assert await service.search(query) == first
    assert index.left_out == 3  # study, series and instance documents


async def test_a_document_left_out_serves_its_search_though_the_cache_drops_it() -> None:
    """The index left a document out because the cache held it; rendering then fills the
    cache with the others and evicts it (capacity 1), yet this search still has it."""
    index = FakeIndex()
    service = SearchService(
        index,
        SummaryCache(capacity=1),
        query_tags=None,  # type: ignore[arg-type]
        external_metadata=None,  # type: ignore[arg-type]
    )
    query = parse_query([], R.ALL_INSTANCES, partition=1)
    first = await service.search(query)
    assert await service.search(query) == first
    assert index.left_out == 1


async def test_a_search_needing_more_than_summaries_reads_every_document() -> None:
    index = FakeIndex()
    service = SearchService(index, query_tags=None, external_metadata=None)  # type: ignore[arg-type]
    query = parse_query([("includefield", "00091001")], R.ALL_STUDIES, partition=1)
    first = await service.search(query)
    assert await service.search(query) == first
    assert not index.offered_cache and index.left_out == 0


def test_plan_for_all_instances_reads_each_level_from_its_own_latest_instance() -> None:
    plan = ResponsePlan.for_query(parse_query([], R.ALL_INSTANCES, partition=1))
    assert plan.sources["00100010"] is QueryLevel.STUDY
    assert plan.sources["00080060"] is QueryLevel.SERIES
    assert plan.sources["00080018"] is QueryLevel.INSTANCE
    assert plan.sources["0020000D"] is QueryLevel.INSTANCE  # any instance carries its UIDs


# --- What a search may match on: extended query tags and external metadata ----------------
# On the local backend's services, so the catalog comes from real tag and metadata stores.


@pytest.fixture()
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with local_services(tmp_path / "data") as built:
        yield built


async def add_ready_tag(services: Services, path: str, level: str) -> None:
    await services.query_tags.add(parse_definitions([{"path": path, "level": level}]))
    await run_reindex(services)


async def test_search_for_on_an_extended_tag_finds_the_reindexed_study(
    services: Services, tmp_path: Path
) -> None:
    weighed = make_dataset(PatientWeight="71.5")
    await store_datasets(services, tmp_path / "parts", weighed, make_dataset(PatientWeight="80"))
    await add_ready_tag(services, "PatientWeight", "Study")
    found = await services.search.search_for(
        R.ALL_STUDIES, [("PatientWeight", "71.5")], api_version=2, partition=1
    )
    assert [r["0020000D"]["Value"] for r in found.results] == [[weighed.StudyInstanceUID]]
    assert found.erroneous_tags == ()


@pytest.mark.parametrize(
    ("value", "refusal"),
    [("7*", "supports single value matching only"), ("70-80", "is not a number")],
)
async def test_search_for_on_a_numeric_extended_tag_allows_single_numbers_only(
    services: Services, value: str, refusal: str
) -> None:
    await add_ready_tag(services, "PatientWeight", "Study")
    with pytest.raises(BadRequest, match=refusal):
        await services.search.search_for(
            R.ALL_STUDIES, [("PatientWeight", value)], api_version=2, partition=1
        )


async def test_search_for_names_an_enabled_extended_tag_with_indexing_errors(
    services: Services, tmp_path: Path
) -> None:
    # given: PatientSex could not be indexed for one instance, and was enabled again
    await store_datasets(services, tmp_path / "parts", make_dataset(PatientSex="not a code"))
    await add_ready_tag(services, "PatientSex", "Study")
    await services.query_tags.set_query_status("00100040", "Enabled")
    # when
    matched = await services.search.search_for(
        R.ALL_STUDIES, [("PatientSex", "F")], api_version=2, partition=1
    )
    plain = await services.search.search_for(
        R.ALL_STUDIES, [("PatientID", "x")], api_version=2, partition=1
    )
    # then
    assert matched.erroneous_tags == ("00100040",)
    assert plain.erroneous_tags == ()


async def test_search_for_with_external_metadata_matches_and_returns_it_in_v2_only(
    services: Services, tmp_path: Path
) -> None:
    # given
    dataset = make_dataset()
    header = ("msdicom-meta-LO-00191100", "Ward 7")
    await store_datasets(services, tmp_path / "parts", dataset, headers=[header])
    asked = [("00191100", "Ward 7")]
    # when
    [result] = (
        await services.search.search_for(
            R.ALL_STUDIES, asked, api_version=2, with_external_metadata=True, partition=1
        )
    ).results
    # then
    assert result["0020000D"]["Value"] == [dataset.StudyInstanceUID]
    assert result["00191100"] == {"vr": "LO", "Value": ["Ward 7"]}
    assert result["00190011"] == {"vr": "LO", "Value": ["Microsoft"]}
    assert list(result) == sorted(result)
    for version, with_external in ((1, True), (2, False)):  # the tag is unknown without it
        with pytest.raises(BadRequest, match="00191100"):
            await services.search.search_for(
                R.ALL_STUDIES,
                asked,
                api_version=version,
                with_external_metadata=with_external,
                partition=1,
            )
