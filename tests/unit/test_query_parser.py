"""The QIDO-RS parser: what it builds, and a 400 naming the parameter for every bad request."""

from __future__ import annotations

import pytest

from dicom_core.domain.tags import tag_of
from dicom_core.errors import BadRequest
from dicom_core.query.attributes import CORE_CATALOG
from dicom_core.query.conditions import (
    FuzzyMatch,
    IncludeFields,
    ListMatch,
    QueryResource,
    RangeMatch,
    ValueMatch,
    WildcardMatch,
)
from dicom_core.query.parser import MAX_OFFSET, parse_query

R = QueryResource


def parse(*params: tuple[str, str], resource: QueryResource = R.ALL_STUDIES, **path: str):  # type: ignore[no-untyped-def]
    return parse_query(list(params), resource, partition=1, **path)


def bad(*params: tuple[str, str], resource: QueryResource = R.ALL_STUDIES, **path: str) -> str:
    with pytest.raises(BadRequest) as caught:
        parse(*params, resource=resource, **path)
    assert caught.value.status == 400
    return caught.value.message


def test_defaults_without_parameters() -> None:
    query = parse()
    assert (query.limit, query.offset, query.fuzzy) == (100, 0, False)
    assert query.include == IncludeFields()
    assert query.conditions == ()


def test_keyword_and_tag_name_the_same_attribute() -> None:
    by_keyword = parse(("PatientID", "X")).conditions
    by_tag = parse(("00100020", "X")).conditions
    lower_hex = parse(("0020000d", "1.2.3")).conditions
    assert by_keyword == by_tag
    assert lower_hex[0].attribute.keyword == "StudyInstanceUID"


def test_parameter_names_are_case_insensitive_for_the_reserved_ones() -> None:
    query = parse(
        ("Limit", "5"), ("OFFSET", "2"), ("FuzzyMatching", "TRUE"), ("includeField", "all")
    )
    assert (query.limit, query.offset, query.fuzzy, query.include.all) == (5, 2, True, True)


def test_includefield_repeated_and_comma_lists_all_count() -> None:
    query = parse(
        ("includefield", "StudyTime"),
        ("includefield", "00081030, 00200011"),
        ("includefield", "NumberOfStudyRelatedInstances"),
    )
    assert query.include.tags == ("00080030", "00081030", "00200011", "00201208")


def test_includefield_all_wins_over_a_mixture() -> None:
    assert parse(("includefield", "StudyTime,all")).include == IncludeFields(all=True)


def test_includefield_private_tags_are_allowed() -> None:
    assert parse(("includefield", "00091001")).include.tags == ("00091001",)


def test_path_uids_become_conditions() -> None:
    query = parse(resource=R.STUDY_SERIES_INSTANCES, study_uid="1.2", series_uid="1.2.3")
    assert [(c.attribute.keyword, c.key) for c in query.conditions] == [  # type: ignore[union-attr]
        ("StudyInstanceUID", "1.2"),
        ("SeriesInstanceUID", "1.2.3"),
    ]
    assert (query.study_uid, query.series_uid) == ("1.2", "1.2.3")


def test_value_kinds() -> None:
    query = parse(
        ("StudyDescription", "Che*"),
        ("AccessionNumber", "A1"),
        ("StudyDate", "20240101-"),
        ("StudyInstanceUID", "1.2\\1.3"),
        ("ReferringPhysicianName", "smi"),
        ("fuzzymatching", "true"),
    )
    kinds = [type(c) for c in query.conditions]
    assert kinds == [WildcardMatch, ValueMatch, RangeMatch, ListMatch, FuzzyMatch]


def test_a_value_of_only_stars_is_universal_matching_and_returns_the_attribute() -> None:
    query = parse(("PatientName", "*"), ("StudyDescription", "**"))
    assert query.conditions == ()
    assert query.returned_tags == (tag_of("PatientName"), tag_of("StudyDescription"))


def test_null_padding_is_stripped_from_values() -> None:
    [found] = parse(("PatientID", "ABC\x00")).conditions
    assert found == parse(("PatientID", "ABC")).conditions[0]


def test_limit_and_offset_bounds() -> None:
    assert parse(("limit", "1")).limit == 1
    assert parse(("limit", "200")).limit == 200
    assert parse(("offset", str(MAX_OFFSET))).offset == MAX_OFFSET


def test_an_offset_past_the_maximum_is_refused_naming_it() -> None:
    message = bad(("offset", str(MAX_OFFSET + 1)))
    assert "offset" in message and f"0 to {MAX_OFFSET}" in message


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ([("Foo", "1")], "Foo"),
        ([("PatientNam", "x")], "PatientNam"),
        ([("00100011", "x")], "00100011"),  # a tag, but not searchable
        ([("StudyTime", "101010")], "StudyTime"),  # a keyword, but not searchable
        ([("TimezoneOffsetFromUTC", "+0100")], "TimezoneOffsetFromUTC"),
        ([("SOPInstanceUID", "1.2")], "SOPInstanceUID"),  # not at the study level
        ([("Modality", "CT")], "Modality"),
        ([("PatientName", "")], "PatientName"),
        ([("PatientName", "  ")], "PatientName"),
        ([("PatientID", "\x00")], "PatientID"),
        ([("PatientName", "^^")], "PatientName"),
        ([("StudyInstanceUID", ",")], "StudyInstanceUID"),
        ([("StudyDate", "-")], "StudyDate"),
        ([("StudyDate", "2024")], "StudyDate"),
        ([("StudyDate", "20241301")], "StudyDate"),
        ([("StudyDate", "2024-01-01")], "StudyDate"),
        ([("StudyDate", "20240201-20240101")], "StudyDate"),
        ([("PatientBirthDate", "abc-")], "PatientBirthDate"),
        ([("PatientID", "a"), ("00100020", "b")], "PatientID"),
        ([("limit", "0")], "limit"),
        ([("limit", "201")], "limit"),
        ([("limit", "ten")], "limit"),
        ([("limit", "")], "limit"),
        ([("limit", "5"), ("limit", "6")], "limit"),
        ([("offset", "-1")], "offset"),
        ([("offset", "x")], "offset"),
        ([("offset", "9" * 5000)], "offset"),  # int() refuses over 4,300 digits: was a 500
        ([("limit", "--5")], "limit"),  # int() raised on it after an isdigit() screen: a 500
        ([("fuzzymatching", "yes")], "fuzzymatching"),
        ([("includefield", "")], "includefield"),
        ([("includefield", "NotAKeyword")], "NotAKeyword"),
        ([("", "x")], "''"),
    ],
)
def test_bad_requests_name_the_parameter(params: list[tuple[str, str]], named: str) -> None:
    assert named in bad(*params)


def test_levels_follow_the_conformance_table() -> None:
    # Study attributes: all studies, all series, all instances; not in a study's series.
    for resource in (R.ALL_STUDIES, R.ALL_SERIES, R.ALL_INSTANCES):
        parse(("PatientID", "x"), resource=resource)
    for resource in (R.STUDY_SERIES, R.STUDY_INSTANCES, R.STUDY_SERIES_INSTANCES):
        assert "PatientID" in bad(("PatientID", "x"), resource=resource, study_uid="1.2")
    # Series attributes: everything but studies and a series' instances.
    for resource in (R.ALL_SERIES, R.ALL_INSTANCES, R.STUDY_SERIES, R.STUDY_INSTANCES):
        parse(("Modality", "CT"), resource=resource)
    assert "Modality" in bad(("Modality", "CT"), resource=R.STUDY_SERIES_INSTANCES)
    # SOPInstanceUID: the three instance resources only.
    for resource in (R.ALL_INSTANCES, R.STUDY_INSTANCES, R.STUDY_SERIES_INSTANCES):
        parse(("SOPInstanceUID", "1.2"), resource=resource)
    assert "SOPInstanceUID" in bad(("SOPInstanceUID", "1.2"), resource=R.ALL_SERIES)


def test_every_core_attribute_is_searchable_by_keyword_and_tag() -> None:
    values = {"DA": "20240101", "UI": "1.2.3"}
    for attribute in CORE_CATALOG.attributes:
        value = values.get(attribute.vr, "X")
        by_keyword = parse((attribute.keyword, value), resource=R.ALL_INSTANCES)
        by_tag = parse((attribute.tag, value), resource=R.ALL_INSTANCES)
        assert by_keyword.conditions == by_tag.conditions
        assert by_keyword.conditions[0].attribute == attribute


def test_a_parameter_without_a_name_is_unknown_not_a_retired_attribute() -> None:
    """pydicom's dictionary has a retired entry whose keyword is "": a probe's '?=x' was
    answered "The attribute '' (300A0782) is not searchable"."""
    message = bad(("", "x"))
    assert "Unknown query parameter ''" in message and "300A" not in message
