"""The reference matcher: the conformance statement's matching rules, case by case."""

from __future__ import annotations

import pytest

from dicom_core.domain.tags import tag_of
from dicom_core.errors import BadRequest
from dicom_core.query.attributes import CORE_CATALOG
from dicom_core.query.conditions import (
    FuzzyMatch,
    ListMatch,
    QueryAttribute,
    QueryLevel,
    QueryResource,
    RangeMatch,
    TextMatching,
    ValueMatch,
    WildcardMatch,
)
from dicom_core.query.matching import (
    date_key,
    datetime_key,
    fuzzy_matches,
    index_key,
    matches,
    time_key,
    wildcard_matches,
)
from dicom_core.query.parser import parse_query


def attribute(keyword: str) -> QueryAttribute:
    found = CORE_CATALOG.find(tag_of(keyword))
    assert found is not None
    return found


def condition(keyword: str, value: str, *, fuzzy: bool = False) -> object:
    params = [(keyword, value)] + ([("fuzzymatching", "true")] if fuzzy else [])
    [parsed] = parse_query(params, QueryResource.ALL_INSTANCES, partition=1).conditions
    return parsed


@pytest.mark.parametrize("query", ["joh", "do", "jo do", "Doe", "John Doe", "JOHN", "doe^jo"])
def test_fuzzy_matching_prefix_words_of_any_name_part_match(query: str) -> None:
    # The statement's own examples for PatientName "John^Doe".
    assert matches(condition("PatientName", query, fuzzy=True), "John^Doe")  # type: ignore[arg-type]


@pytest.mark.parametrize("query", ["ohn", "jo x", "doej", "johnny"])
def test_fuzzy_matching_non_prefixes_do_not_match(query: str) -> None:
    assert not matches(condition("PatientName", query, fuzzy=True), "John^Doe")  # type: ignore[arg-type]


def test_fuzzy_matching_applies_to_referring_physician_name_too() -> None:
    found = condition("ReferringPhysicianName", "smi", fuzzy=True)
    assert isinstance(found, FuzzyMatch)
    assert matches(found, "Smith^Anna")


def test_fuzzy_matching_ignores_accents_and_case() -> None:
    assert matches(condition("PatientName", "MULL", fuzzy=True), "Müller^Hans")  # type: ignore[arg-type]


def test_fuzzy_word_with_wildcard_matches_inside_a_component() -> None:
    assert matches(condition("PatientName", "*mit*", fuzzy=True), "Smith^Anna")  # type: ignore[arg-type]


def test_without_fuzzymatching_a_person_name_must_match_whole() -> None:
    exact = condition("PatientName", "doe")
    assert isinstance(exact, ValueMatch)
    assert not matches(exact, "Doe^John")
    assert matches(condition("PatientName", "DOE^JOHN"), "Doe^John")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stored", "query", "expected"),
    [
        ("Müller^Hans", "muller^hans", True),  # PN: accents and case ignored
        ("Müller^Hans", "MÜLLER^HANS", True),
        ("Chest CT", "CHEST ct", True),  # other strings: case ignored
        ("Échographie", "échographie", True),
        ("Échographie", "echographie", False),  # ... but accents kept
        ("ABC", "ABC\x00", True),  # null padding on the query side
        ("ABC", "abc ", True),
    ],
)
def test_case_and_accent_rules(stored: str, query: str, expected: bool) -> None:
    keyword = "PatientName" if "^" in stored else "StudyDescription"
    assert matches(condition(keyword, query), stored) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("*ab*", "xaby", True),
        ("*ab*", "ab", True),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*", "", False),
        ("*", "", True),
        ("x[1]*", "x[1]2", True),  # brackets are literal
        ("x[1]*", "x1", False),
        ("a.c", "abc", False),  # so are regex characters
    ],
)
def test_wildcards(pattern: str, text: str, expected: bool) -> None:
    assert wildcard_matches(pattern, text) is expected


def test_wildcard_on_accession_number_is_case_insensitive() -> None:
    found = condition("AccessionNumber", "*bc*")
    assert isinstance(found, WildcardMatch)
    assert matches(found, "ABCD")


def test_fuzzy_words_match_only_at_component_starts() -> None:
    assert fuzzy_matches(["ber"], "van der berg jan")
    assert not fuzzy_matches(["erg"], "van der berg jan")
    assert fuzzy_matches(["j", "van"], "van der berg jan")


def test_uid_list_matches_any_listed_uid() -> None:
    found = condition("StudyInstanceUID", "1.2.3,4.5.6\\7.8.9")
    assert isinstance(found, ListMatch)
    assert found.keys == ("1.2.3", "4.5.6", "7.8.9")
    assert matches(found, "4.5.6")
    assert not matches(found, "4.5")


def test_modalities_in_study_matches_any_series_modality() -> None:
    found = condition("ModalitiesInStudy", "mr")
    assert matches(found, ["CT", "MR"])  # type: ignore[arg-type]
    assert not matches(found, ["CT"])  # type: ignore[arg-type]
    assert matches(condition("ModalitiesInStudy", "US\\MR"), ["MR"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "inside", "outside"),
    [
        ("20240101-20240131", ["20240101", "20240115", "20240131"], ["20231231", "20240201"]),
        ("20240101-", ["20240101", "29991231"], ["20231231"]),
        ("-20240101", ["19000101", "20240101"], ["20240102"]),
        ("20240101", ["20240101"], ["20240102"]),
    ],
)
def test_date_ranges_are_inclusive_and_may_be_open(
    query: str, inside: list[str], outside: list[str]
) -> None:
    found = condition("StudyDate", query)
    assert all(matches(found, day) for day in inside)  # type: ignore[arg-type]
    assert not any(matches(found, day) for day in outside)  # type: ignore[arg-type]


def test_missing_values_never_match() -> None:
    assert not matches(condition("StudyDate", "-20240101"), None)  # type: ignore[arg-type]
    assert not matches(condition("PatientID", "*a*"), None)  # type: ignore[arg-type]


def test_date_keys_reject_impossible_dates() -> None:
    assert date_key("20240229") == "20240229"
    for bad in ("20230229", "2024011", "2024-01-01", "20241301"):
        with pytest.raises(ValueError):
            date_key(bad)


def test_time_keys_fill_the_span_a_partial_time_names() -> None:
    assert time_key("10") == "100000.000000"
    assert time_key("10", upper=True) == "105959.999999"
    assert time_key("101530.5") == "101530.500000"
    assert time_key("1015", upper=True) == "101559.999999"
    for bad in ("25", "1", "10:15", "106000"):
        with pytest.raises(ValueError):
            time_key(bad)


def test_datetime_keys_fill_the_span_and_ignore_offsets() -> None:
    assert datetime_key("2024") == "20240101000000.000000"
    assert datetime_key("202402", upper=True) == "20240229235959.999999"
    assert datetime_key("20240102103000+0100") == "20240102103000.000000"
    with pytest.raises(ValueError):
        datetime_key("20241301")


def test_time_and_datetime_conditions_for_extended_query_tags() -> None:
    # No core attribute is TM or DT; extended query tags will be. The parser and matcher
    # already handle them for any attribute of those VRs.
    tm = QueryAttribute("00080030", "StudyTime", "TM", QueryLevel.STUDY, TextMatching.EXACT)
    dt = QueryAttribute(
        "0008002A", "AcquisitionDateTime", "DT", QueryLevel.STUDY, TextMatching.EXACT
    )
    catalog = CORE_CATALOG.with_extended([tm, dt])
    query = parse_query(
        [("StudyTime", "10-1130"), ("AcquisitionDateTime", "20240102-20240102")],
        QueryResource.ALL_STUDIES,
        catalog=catalog,
        partition=1,
    )
    time_range, datetime_range = query.conditions
    assert isinstance(time_range, RangeMatch)
    assert matches(time_range, "113059")
    assert not matches(time_range, "1131")
    assert matches(datetime_range, "20240102235959")
    assert not matches(datetime_range, "20240103")
    single = parse_query(
        [("StudyTime", "10")], QueryResource.ALL_STUDIES, catalog=catalog, partition=1
    )
    assert matches(single.conditions[0], "105959")
    with pytest.raises(BadRequest, match="StudyTime"):
        parse_query([("StudyTime", "-")], QueryResource.ALL_STUDIES, catalog=catalog, partition=1)


def test_index_keys_follow_the_attribute_matching() -> None:
    assert index_key(attribute("PatientName"), "Ñuñez^José") == "nunez jose"
    assert index_key(attribute("PatientID"), "AbC") == "abc"
    assert index_key(attribute("StudyInstanceUID"), "1.2.A") == "1.2.A"


def test_a_nul_inside_a_text_value_is_no_character() -> None:
    # PS3.5 admits NUL only as padding: text keys leave it out, on the stored and query sides.
    assert index_key(attribute("PatientID"), "\x001") == "1"
    assert index_key(attribute("PatientName"), "Doe\x00^Jo\x00hn") == "doe john"
    assert matches(condition("PatientID", "*1*"), "\x001")  # type: ignore[arg-type]
    assert matches(condition("PatientID", "1"), "\x001")  # type: ignore[arg-type]
    assert matches(condition("PatientID", "a\x00b"), "ab")  # type: ignore[arg-type]
    assert matches(condition("PatientName", "jo", fuzzy=True), "Doe^\x00John")  # type: ignore[arg-type]
    # UIDs compare exactly (and validation keeps NULs out of them).
    assert index_key(attribute("StudyInstanceUID"), "1.2\x00") == "1.2\x00"
