"""``SearchService.search_for`` on the fakes: what reaches the index (limits, offsets, the
catalog of extended query tags and external metadata of the moment) and how external metadata
is merged into the results.

The fake index answers prepared matches and records each query, so these tests see the
service's rules only; what the index makes of a query is the contract suites' business.
The rendering of results is ``tests/unit/test_search_service.py``'s.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dicom_core.errors import BadRequest
from dicom_core.jobs.reindex import plan_reindex
from dicom_core.query.conditions import (
    DEFAULT_LIMIT,
    EXTERNAL_METADATA_PATH,
    MAX_LIMIT,
    QueryDescription,
    QueryResource,
)
from dicom_core.query.results import SearchMatch
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.services.external_metadata import ExternalMetadataService, parse_headers
from dicom_core.services.search import SearchResults, SearchService
from dicom_core.storage.ports import QueryTagRecord
from tests.fakes import Fakes

R = QueryResource
STUDY = "1.2.3"
WARD = "00191100"


def tag(
    path: str, vr: str, *, status: str = "Ready", query_status: str = "Enabled", errors: int = 0
) -> QueryTagRecord:
    return QueryTagRecord(
        key=int(path, 16),
        path=path,
        vr=vr,
        private_creator="Microsoft" if int(path[:4], 16) % 2 else None,
        level="Study",
        status=status,
        query_status=query_status,
        error_count=errors,
        operation_id=None,
    )


def service(fakes: Fakes) -> SearchService:
    return SearchService(
        fakes.index,
        query_tags=ExtendedQueryTagService(fakes.query_tags, plan_reindex=plan_reindex),
        external_metadata=ExternalMetadataService(fakes.external_metadata),
    )


async def search(
    fakes: Fakes, *pairs: tuple[str, str], api_version: int = 2, external: bool = False
) -> SearchResults:
    return await service(fakes).search_for(
        R.ALL_STUDIES,
        list(pairs),
        api_version=api_version,
        with_external_metadata=external,
        partition=1,
    )


def asked(fakes: Fakes) -> QueryDescription:
    [(query, _)] = fakes.index.searches
    return query


async def test_search_for_asks_the_index_for_the_page_given(fakes: Fakes) -> None:
    await search(fakes, ("limit", "5"), ("offset", "10"))
    assert (asked(fakes).limit, asked(fakes).offset) == (5, 10)


async def test_search_for_without_a_limit_asks_for_the_default_page(fakes: Fakes) -> None:
    await search(fakes)
    assert (asked(fakes).limit, asked(fakes).offset) == (DEFAULT_LIMIT, 0)


@pytest.mark.parametrize("limit", ["0", str(MAX_LIMIT + 1), "ten", ""])
async def test_search_for_with_a_limit_out_of_range_is_refused_before_searching(
    fakes: Fakes, limit: str
) -> None:
    with pytest.raises(BadRequest, match="'limit'"):
        await search(fakes, ("limit", limit))
    assert fakes.index.searches == []


async def test_search_for_matches_on_a_ready_enabled_extended_tag(fakes: Fakes) -> None:
    fakes.query_tags.tags["00101010"] = tag("00101010", "AS")
    await search(fakes, ("00101010", "030Y"))
    [condition] = asked(fakes).conditions
    assert condition.attribute.extended and condition.attribute.path == ("00101010",)


@pytest.mark.parametrize(
    "record",
    [tag("00101010", "AS", status="Adding"), tag("00101010", "AS", query_status="Disabled")],
    ids=["being-added", "disabled"],
)
async def test_search_for_on_an_extended_tag_not_queryable_is_refused(
    fakes: Fakes, record: QueryTagRecord
) -> None:
    fakes.query_tags.tags[record.path] = record
    with pytest.raises(BadRequest, match="00101010"):
        await search(fakes, ("00101010", "030Y"))
    assert fakes.index.searches == []


async def test_search_for_names_the_erroneous_tags_it_used_only(fakes: Fakes) -> None:
    fakes.query_tags.tags["00101010"] = tag("00101010", "AS", errors=2)
    fakes.query_tags.tags["00101020"] = tag("00101020", "DS")
    used = await search(fakes, ("00101010", "030Y"))
    unused = await search(fakes, ("00101020", "1.8"))
    assert (used.erroneous_tags, unused.erroneous_tags) == (("00101010",), ())


def study_match(document: dict[str, Any]) -> SearchMatch:
    return SearchMatch(
        study_uid=STUDY,
        series_uid=None,
        sop_uid=None,
        study_watermark=1,
        series_watermark=None,
        instance_watermark=None,
        study_series=1,
        study_instances=1,
        modalities=("CT",),
        series_instances=None,
        study_metadata=orjson.dumps(document),
    )


async def with_ward(fakes: Fakes) -> None:
    """A stored study whose external metadata names its ward."""
    fakes.index.search_results = [study_match({"0020000D": {"vr": "UI", "Value": [STUDY]}})]
    values = parse_headers([(f"msdicom-meta-LO-{WARD}", "Ward 7")])
    await fakes.external_metadata.save([STUDY], values, partition=1)


async def test_search_for_with_external_metadata_on_v2_matches_and_merges_it(
    fakes: Fakes,
) -> None:
    await with_ward(fakes)
    found = await search(fakes, (WARD, "Ward 7"), external=True)
    [condition] = asked(fakes).conditions
    assert condition.attribute.path == (EXTERNAL_METADATA_PATH, WARD)
    [result] = found.results
    assert result[WARD] == {"vr": "LO", "Value": ["Ward 7"]}
    assert list(result) == sorted(result)


async def test_search_for_external_metadata_wins_over_an_extended_tag_of_its_path(
    fakes: Fakes,
) -> None:
    await with_ward(fakes)
    fakes.query_tags.tags[WARD] = tag(WARD, "LO", errors=1)
    found = await search(fakes, (WARD, "Ward 7"), external=True)
    [condition] = asked(fakes).conditions
    assert condition.attribute.path == (EXTERNAL_METADATA_PATH, WARD)
    assert found.erroneous_tags == ()  # external metadata has no indexing errors


@pytest.mark.parametrize(("api_version", "external"), [(1, True), (2, False)])
async def test_search_for_without_external_metadata_neither_matches_nor_merges_it(
    fakes: Fakes, api_version: int, external: bool
) -> None:
    await with_ward(fakes)
    with pytest.raises(BadRequest, match=WARD):
        await search(fakes, (WARD, "Ward 7"), api_version=api_version, external=external)
    found = await search(fakes, api_version=api_version, external=external)
    assert WARD not in found.results[0]
