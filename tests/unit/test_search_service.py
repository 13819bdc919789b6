"""``SearchService``: which attributes a result carries and whose latest instance supplies them.

The index is a fake that returns prepared matches, so these tests see only the response rules.
"""

from __future__ import annotations

import orjson

from dicom_core.query.conditions import QueryDescription, QueryLevel, QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.query.results import SearchMatch
from dicom_core.services.search import ResponsePlan, SearchService

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
    def __init__(self) -> None:
        self.asked: frozenset[QueryLevel] | None = None

    async def search(
        self, query: QueryDescription, *, metadata: frozenset[QueryLevel] = frozenset()
    ) -> list[SearchMatch]:
        self.asked = metadata
        level = query.level
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
                study_metadata=orjson.dumps(STUDY_DOC) if QueryLevel.STUDY in metadata else None,
                series_metadata=orjson.dumps(SERIES_DOC) if QueryLevel.SERIES in metadata else None,
                instance_metadata=orjson.dumps(INSTANCE_DOC)
                if QueryLevel.INSTANCE in metadata
                else None,
            )
        ]


async def run(params: list[tuple[str, str]], resource: QueryResource, **path: str) -> tuple:  # type: ignore[type-arg]
    index = FakeIndex()
    [result] = await SearchService(index).search(parse_query(params, resource, **path))  # type: ignore[arg-type]
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


def test_plan_for_all_instances_reads_each_level_from_its_own_latest_instance() -> None:
    plan = ResponsePlan.for_query(parse_query([], R.ALL_INSTANCES))
    assert plan.sources["00100010"] is QueryLevel.STUDY
    assert plan.sources["00080060"] is QueryLevel.SERIES
    assert plan.sources["00080018"] is QueryLevel.INSTANCE
    assert plan.sources["0020000D"] is QueryLevel.INSTANCE  # any instance carries its UIDs
