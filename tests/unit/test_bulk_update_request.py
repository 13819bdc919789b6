"""Bulk update: parsing the request body, and applying a request to an instance's dataset.

Every refusal is checked for the words that name its problem (the field, or the attribute by
keyword and tag), since that message is all a client gets back. The property tests build
instances with pydicom in several encodings and character sets, write them to bytes, and check
that applying a request changes exactly the requested attributes (and the character set when it
has to), byte for byte, and that applying it twice changes nothing more.
"""

from __future__ import annotations

import datetime
import io
import warnings
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom import dcmread, dcmwrite
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.datadict import dictionary_VM, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicom_core.domain import bulk_update
from dicom_core.domain.bulk_update import (
    ALLOWED_ATTRIBUTES,
    MAX_STUDIES,
    AttributeChange,
    BulkUpdateApplyError,
    BulkUpdateRequest,
    BulkUpdateRequestError,
    apply_changes,
    parse_bulk_update_request,
)
from dicom_core.domain.charsets import declared_charset, encodes_exactly

PATIENT_NAME = 0x00100010
SPECIFIC_CHARACTER_SET = 0x00080005
STUDY = "1.2.840.113619.2.55.3.604688119.971.1"


def body(study_uids: Any = (STUDY,), change_dataset: Any = None, **extra: Any) -> bytes:
    """A request body; ``change_dataset`` defaults to one new patient name."""
    if change_dataset is None:
        change_dataset = {"00100010": pn("Doe^Jane")}
    document = {"studyInstanceUids": study_uids, "changeDataset": change_dataset, **extra}
    return orjson.dumps(document)


def pn(*alphabetic: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": name} for name in alphabetic]}


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def refusal(raw: bytes) -> BulkUpdateRequestError:
    with pytest.raises(BulkUpdateRequestError) as caught:
        parse_bulk_update_request(raw)
    return caught.value


def refused_change(key: str, attribute: Any) -> str:
    """The message for a change dataset holding just this attribute."""
    return str(refusal(body(change_dataset={key: attribute})))


# --- the allowed attributes ---------------------------------------------------------------


def test_allowed_attributes_are_microsofts_36_and_agree_with_the_dictionary() -> None:
    assert len(ALLOWED_ATTRIBUTES) == 36
    for tag, keyword in ALLOWED_ATTRIBUTES.items():
        assert keyword_for_tag(tag) == keyword
        assert dictionary_VR(tag) in {"PN", "LO", "SH", "CS", "DA", "TM", "AS", "DS", "LT"}
        assert dictionary_VM(tag) in {"1", "1-n"}


# --- the happy path -----------------------------------------------------------------------


def test_request_holds_unique_study_uids_and_changes_in_tag_order() -> None:
    request = parse_bulk_update_request(
        body(
            ["1.2.3", "1.2.4", "1.2.3"],
            {
                "00101030": element("DS", 70.5),
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane  "}]},
                "00101000": element("LO", "A-1", "B-2"),
                "00081030": element("LO", "CT HEAD"),
            },
        )
    )
    assert request.study_instance_uids == ("1.2.3", "1.2.4")
    assert request.changes == (
        AttributeChange(0x00081030, "LO", ("CT HEAD",)),
        AttributeChange(0x00100010, "PN", ("Doe^Jane",)),
        AttributeChange(0x00101000, "LO", ("A-1", "B-2")),
        AttributeChange(0x00101030, "DS", ("70.5",)),
    )
    assert request.tags == {0x00081030, 0x00100010, 0x00101000, 0x00101030}


def test_property_names_match_in_any_case_and_unknown_ones_are_ignored() -> None:
    raw = orjson.dumps(
        {
            "STUDYINSTANCEUIDS": [STUDY],
            "changedataset": {"00100020": element("LO", "MRN-7")},
            "comment": "ignored, as Microsoft's JSON binding ignores it",
        }
    )
    request = parse_bulk_update_request(raw)
    assert request.changes == (AttributeChange(0x00100020, "LO", ("MRN-7",)),)


@pytest.mark.parametrize("scope", ["seriesInstanceUid", "SopInstanceUID"])
def test_the_fields_of_an_update_of_uids_are_refused_not_ignored(scope: str) -> None:
    """Azure's newer update of UIDs takes these fields to narrow it; ignoring them updated
    the whole study instead, which a probe caught."""
    raw = orjson.dumps(
        {
            "studyInstanceUids": [STUDY],
            scope: "1.2.3",
            "changeDataset": {"00100020": element("LO", "MRN-7")},
        }
    )
    with pytest.raises(BulkUpdateRequestError, match="does not support"):
        parse_bulk_update_request(raw)


def test_tags_may_be_lower_case() -> None:
    request = parse_bulk_update_request(body(change_dataset={"001021f0": element("LO", "x")}))
    assert request.changes[0].tag == 0x001021F0


def test_person_names_keep_their_component_groups() -> None:
    name = {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    only_phonetic = {"Phonetic": "やまだ^たろう"}
    request = parse_bulk_update_request(
        body(change_dataset={"00101001": {"vr": "PN", "Value": [name, only_phonetic]}})
    )
    assert request.changes[0].values == ("Yamada^Tarou=山田^太郎=やまだ^たろう", "==やまだ^たろう")
    assert request.changes[0].to_json() == {"vr": "PN", "Value": [name, only_phonetic]}


@pytest.mark.parametrize(
    ("value", "text"),
    [(70, "70"), (70.25, "70.25"), (1e-7, "1e-07"), ("072.50", "072.50"), (" 1.5E3 ", "1.5E3")],
)
def test_decimal_strings_take_json_numbers_and_strings(value: Any, text: str) -> None:
    request = parse_bulk_update_request(body(change_dataset={"00101030": element("DS", value)}))
    assert request.changes[0].values == (text,)


def test_free_text_may_hold_backslashes_and_line_breaks() -> None:
    comment = "first line\r\nC:\\path\tand a tab"
    request = parse_bulk_update_request(body(change_dataset={"00104000": element("LT", comment)}))
    assert request.changes[0].values == (comment,)


def test_exactly_fifty_studies_are_accepted() -> None:
    uids = [f"1.2.3.{n}" for n in range(MAX_STUDIES)]
    assert len(parse_bulk_update_request(body(uids)).study_instance_uids) == MAX_STUDIES


def test_request_json_reads_back_to_an_equal_request() -> None:
    request = parse_bulk_update_request(
        body(
            change_dataset={
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "A", "Phonetic": "B"}]},
                "00101020": element("DS", "1.80"),
                "00102154": element("SH", "555-0100", "555-0199"),
            }
        )
    )
    assert parse_bulk_update_request(orjson.dumps(request.to_json())) == request


# --- refusals of the body and its study UIDs -----------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"", ["empty", "studyInstanceUids", "changeDataset"]),
        (b"  \n", ["empty"]),
        (b'{"studyInstanceUids": [', ["not valid JSON"]),
        (b"\xff\xfe", ["not valid JSON"]),
        (b"[]", ["must be a JSON object", "not a JSON array"]),
        (b'"text"', ["must be a JSON object", "not a JSON string"]),
        (b"null", ["must be a JSON object", "not null"]),
    ],
)
def test_body_that_is_no_json_object_is_refused(raw: bytes, words: list[str]) -> None:
    message = str(refusal(raw))
    for word in words:
        assert word in message


def test_property_given_twice_in_different_case_is_refused() -> None:
    raw = b'{"studyInstanceUids": ["1.2"], "StudyInstanceUIDs": ["1.3"], "changeDataset": {}}'
    message = str(refusal(raw))
    assert "studyInstanceUids" in message and "StudyInstanceUIDs" in message and "twice" in message


@pytest.mark.parametrize("uids", [None, []])
def test_missing_or_empty_study_uids_are_refused(uids: Any) -> None:
    message = str(refusal(body(uids)))
    assert message == "The required field 'studyInstanceUids' is missing or empty."


def test_absent_study_uids_are_refused() -> None:
    raw = orjson.dumps({"changeDataset": {"00100010": pn("A")}})
    assert "'studyInstanceUids' is missing or empty" in str(refusal(raw))


@pytest.mark.parametrize(
    ("uids", "kind"), [("1.2.3", "a JSON string"), ({"a": 1}, "a JSON object")]
)
def test_study_uids_that_are_no_array_are_refused(uids: Any, kind: str) -> None:
    message = str(refusal(body(uids)))
    assert "'studyInstanceUids' must be a JSON array" in message and kind in message


def test_more_than_fifty_studies_are_refused_counting_repeats() -> None:
    uids = [f"1.2.3.{n % 10}" for n in range(MAX_STUDIES + 1)]
    message = str(refusal(body(uids)))
    assert "lists 51 studies" in message and "at most 50" in message


@pytest.mark.parametrize(
    ("uids", "words"),
    [
        (["1.2", 3], ["Item 2 of 'studyInstanceUids'", "must be a string", "a JSON number"]),
        (["1.2", None], ["Item 2", "not null"]),
        (["1.2 3"], ["Item 1", "not a valid Study Instance UID", '"1.2 3"']),
        ([""], ["Item 1", "UID is empty"]),
        (["..."], ["Item 1", "no digits or letters"]),
        (["1." * 40], ["Item 1", "at most 64"]),
    ],
)
def test_invalid_study_uids_are_refused(uids: list[Any], words: list[str]) -> None:
    message = str(refusal(body(uids)))
    for word in words:
        assert word in message


def test_study_uids_are_checked_before_the_change_dataset() -> None:
    message = str(refusal(body(["bad uid"], {"0020000D": element("UI", "1.2")})))
    assert "Study Instance UID" in message and "0020,000D" not in message


# --- refusals of the change dataset --------------------------------------------------------


@pytest.mark.parametrize("change_dataset", [{}, "absent"])
def test_missing_or_empty_change_dataset_is_refused(change_dataset: Any) -> None:
    raw = (
        orjson.dumps({"studyInstanceUids": [STUDY]})
        if change_dataset == "absent"
        else body(change_dataset=change_dataset)
    )
    assert str(refusal(raw)) == "The required field 'changeDataset' is missing or empty."


def test_null_change_dataset_is_refused() -> None:
    raw = orjson.dumps({"studyInstanceUids": [STUDY], "changeDataset": None})
    assert "'changeDataset' is missing or empty" in str(refusal(raw))


def test_change_dataset_that_is_no_object_is_refused() -> None:
    message = str(refusal(body(change_dataset=[pn("A")])))
    assert "'changeDataset' must be a DICOM JSON dataset" in message and "JSON array" in message


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("0020000D", "(0020,000D) StudyInstanceUID"),
        ("00080020", "(0008,0020) StudyDate"),
        ("00080005", "(0008,0005) SpecificCharacterSet"),
        ("00101002", "(0010,1002) OtherPatientIDsSequence"),
        ("7FE00010", "(7FE0,0010) PixelData"),
        ("00091001", "(0009,1001)"),
    ],
)
def test_attribute_outside_the_allowed_set_is_refused_by_keyword_and_tag(
    key: str, label: str
) -> None:
    error = refusal(body(change_dataset={key: element("LO", "x")}))
    assert f"{label}: updating this attribute is not supported" in str(error)
    [problem] = error.problems
    assert problem.tag == int(key, 16)


def test_every_refused_attribute_is_reported_in_tag_order() -> None:
    error = refusal(
        body(
            change_dataset={
                "00100030": element("DA", "20231350"),
                "0020000D": element("UI", "1.2"),
                "00100010": pn("Doe^Jane"),
                "not-a-tag": element("LO", "x"),
                "00100040": element("CS", None),
            }
        )
    )
    assert [problem.tag for problem in error.problems] == [0, 0x00100030, 0x00100040, 0x0020000D]
    assert [problem.keyword for problem in error.problems] == [
        "",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
    ]
    message = str(error)
    assert message.startswith("'changeDataset' is refused: ")
    for problem in error.problems:
        assert problem.message in message
    assert "PatientName" not in message


@pytest.mark.parametrize(
    ("key", "attribute", "words"),
    [
        # keys
        ("0010001", pn("A"), ['"0010001" is not a tag of 8 hexadecimal digits']),
        ("PatientName", pn("A"), ['"PatientName" is not a tag']),
        # the attribute object
        ("00100010", "Doe^Jane", ["(0010,0010) PatientName", "must be a JSON object"]),
        ("00100010", None, ["(0010,0010) PatientName", "must be a JSON object", "not null"]),
        ("00100010", {"Value": [{"Alphabetic": "A"}]}, ['"vr" is missing', 'must be "PN"']),
        ("00100010", element("LO", "A"), ['"vr" is "LO"', 'VR is "PN"']),
        ("00100010", {"vr": 7, "Value": ["A"]}, ['"vr" is 7', 'VR is "PN"']),
        ("00100010", {"vr": "PN"}, ['(0010,0010) PatientName: has no "Value"', "cannot empty"]),
        ("00100010", {"vr": "PN", "Value": None}, ['has no "Value"']),
        ("00100010", {"vr": "PN", "Value": []}, ['has no "Value"']),
        ("00100010", {"vr": "PN", "Value": {"Alphabetic": "A"}}, ['"Value" must be a JSON array']),
        (
            "00100010",
            {"vr": "PN", "InlineBinary": "AAAA", "Value": [{"Alphabetic": "A"}]},
            ['"InlineBinary" is not accepted'],
        ),
        ("00100010", {"vr": "PN", "BulkDataURI": "http://x"}, ['"BulkDataURI" is not accepted']),
        ("00100020", element("LO", "A", "B"), ["(0010,0020) PatientID: has 2 values", "one"]),
        # null and empty values
        ("00100020", element("LO", None), ["PatientID: the value is null", "cannot empty"]),
        ("00100020", element("LO", ""), ["PatientID: the value is empty"]),
        ("00100020", element("LO", "   "), ["PatientID: the value is empty"]),
        ("00101000", element("LO", "A", None), ["OtherPatientIDs: value 2 is null"]),
        ("00101000", element("LO", "", "B"), ["OtherPatientIDs: value 1 is empty"]),
        ("00100010", {"vr": "PN", "Value": [{}]}, ["PatientName: the value is empty"]),
        ("00100010", pn(""), ["PatientName: the value is empty"]),
        # value types
        ("00100020", element("LO", 12), ["the value must be a JSON string", "a JSON number"]),
        ("00101030", element("DS", True), ["must be a JSON string or number", "JSON boolean"]),
        ("00101030", element("DS", [70]), ["must be a JSON string or number", "JSON array"]),
        ("00100010", element("PN", "Doe^Jane"), ["person name object", "not a JSON string"]),
        (
            "00100010",
            {"vr": "PN", "Value": [{"Alphabetic": "A", "Kanji": "B"}]},
            ['has "Kanji"', "Alphabetic, Ideographic, Phonetic"],
        ),
        ("00100010", {"vr": "PN", "Value": [{"Alphabetic": 5}]}, ["Alphabetic that is"]),
        ("00100010", pn("Doe=Jane"), ["Alphabetic \"Doe=Jane\" with '='"]),
        # characters
        ("00100020", element("LO", "A\\B"), ['"A\\\\B" contains a backslash']),
        ("00100010", pn("Doe\\Jane"), ["contains a backslash"]),
        ("00100020", element("LO", "A\x00B"), ["contains a control character", "LO"]),
        ("00100020", element("LO", "A\x1b$BB"), ["contains a control character"]),
        ("00104000", element("LT", "bell\x07"), ["PatientComments", "control character", "LT"]),
        # the VR's own rules, shared with the store's validation
        ("00100030", element("DA", "2023-01-05"), ["PatientBirthDate", "not a valid DA value"]),
        ("00100030", element("DA", "20230229"), ["day 29 does not exist in 2023-02"]),
        ("00100032", element("TM", "2460"), ["PatientBirthTime", "hour 24 is out of range"]),
        ("00101010", element("AS", "45Y"), ["PatientAge", "not a valid AS value"]),
        ("00100040", element("CS", "m"), ["PatientSex", "uppercase letters"]),
        ("00101030", element("DS", "seventy"), ["PatientWeight", "not a valid DS value"]),
        ("00101030", element("DS", 0.1 + 0.2), ["0.30000000000000004", "at most 16"]),
        ("00101030", element("DS", 10**17), ["at most 16"]),
        ("00100020", element("LO", "x" * 65), ["PatientID", "65 characters long", "at most 64"]),
        ("00080050", element("SH", "x" * 17), ["AccessionNumber", "at most 16"]),
        ("00100010", pn("x" * 65), ["component group of 65 characters"]),
        ("00100010", pn("A^B^C^D^E^F"), ["6 components"]),
        ("00104000", element("LT", "x" * 10241), ["PatientComments", "at most 10240"]),
        ("00101000", element("LO", "ok", "x" * 65), ["OtherPatientIDs: value 2", "at most 64"]),
    ],
)
def test_invalid_attribute_is_refused_naming_the_problem(
    key: str, attribute: Any, words: list[str]
) -> None:
    message = refused_change(key, attribute)
    for word in words:
        assert word in message, message


def test_tag_given_twice_in_different_case_is_refused() -> None:
    message = refused_change_pair({"001021f0": element("LO", "a"), "001021F0": element("LO", "b")})
    assert "(0010,21F0) PatientReligiousPreference: is given twice" in message


def refused_change_pair(change_dataset: dict[str, Any]) -> str:
    return str(refusal(body(change_dataset=change_dataset)))


# --- applying ------------------------------------------------------------------------------


def request_for(change_dataset: dict[str, Any]) -> BulkUpdateRequest:
    return parse_bulk_update_request(body(change_dataset=change_dataset))


def read(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def written(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds)
    return buffer.getvalue()


def raw_elements(ds: Dataset) -> dict[int, tuple[Any, Any]]:
    """Every element as (VR, raw value), read without converting anything."""
    # keys(), not the dataset itself: iterating a Dataset converts its raw elements in place.
    return {tag: (ds.get_item(tag).VR, ds.get_item(tag).value) for tag in map(int, ds.keys())}


def file_bytes(name: str, *, charset: bool = False) -> bytes:
    if charset:
        [path] = [path for path in get_charset_files("*.dcm") if path.endswith(name)]
    else:
        path = str(get_testdata_file(name))
    with open(path, "rb") as file:
        return file.read()


def assert_only_changed(before: bytes, after: bytes, changed: set[int]) -> None:
    """Every element outside ``changed`` has the same raw bytes, file meta included."""
    old, new = read(before), read(after)
    old_elements, new_elements = raw_elements(old), raw_elements(new)
    assert {tag: value for tag, value in old_elements.items() if tag not in changed} == {
        tag: value for tag, value in new_elements.items() if tag not in changed
    }
    assert raw_elements(old.file_meta) == raw_elements(new.file_meta)


def test_apply_sets_the_values_and_leaves_pixels_and_file_meta_alone() -> None:
    before = file_bytes("CT_small.dcm")
    request = request_for(
        {
            "00100010": pn("Doe^Jane"),
            "00101000": element("LO", "A-1", "B-2"),
            "00101030": element("DS", 70.5),
            "00100030": element("DA", "19700101"),
        }
    )
    ds = read(before)
    assert apply_changes(ds, request) == (0x00100010, 0x00100030, 0x00101000, 0x00101030)
    after = written(ds)
    result = read(after)
    assert str(result.PatientName) == "Doe^Jane"
    assert list(result.OtherPatientIDs) == ["A-1", "B-2"]
    assert str(result.PatientWeight) == "70.5"
    assert result.PatientBirthDate == "19700101"
    assert result.SpecificCharacterSet == "ISO_IR 100"
    assert_only_changed(before, after, set(request.tags))
    assert result.PixelData == read(before).PixelData


def test_apply_adds_attributes_the_instance_lacks() -> None:
    before = file_bytes("MR_small.dcm")
    assert "Occupation" not in read(before)
    ds = read(before)
    apply_changes(ds, request_for({"00102180": element("SH", "Pilot")}))
    assert read(written(ds)).Occupation == "Pilot"


def test_latin_1_value_is_written_in_the_instances_latin_1() -> None:
    before = file_bytes("chrFren.dcm", charset=True)
    ds = read(before)
    tags = apply_changes(ds, request_for({"00100010": pn("Müller^Jürgen")}))
    assert tags == (PATIENT_NAME,)
    after = written(ds)
    assert read(after).get_item(PATIENT_NAME).value.rstrip(b" ") == "Müller^Jürgen".encode(
        "latin-1"
    )
    assert read(after).SpecificCharacterSet == "ISO_IR 100"
    assert_only_changed(before, after, {PATIENT_NAME})


def test_non_ascii_value_switches_an_ascii_instance_to_utf_8() -> None:
    before = file_bytes("MR_small.dcm")
    assert "SpecificCharacterSet" not in read(before)
    ds = read(before)
    tags = apply_changes(ds, request_for({"00100010": pn("Müller^Jürgen")}))
    assert tags == (SPECIFIC_CHARACTER_SET, PATIENT_NAME)
    after = written(ds)
    assert read(after).SpecificCharacterSet == "ISO_IR 192"
    assert read(after).get_item(PATIENT_NAME).value.rstrip(b" ") == "Müller^Jürgen".encode()
    assert_only_changed(before, after, {SPECIFIC_CHARACTER_SET, PATIENT_NAME})


def test_value_the_code_extensions_cannot_promise_switches_to_utf_8() -> None:
    # ISO 2022 IR 87 could carry kanji, but only by escape sequences that pydicom cannot be
    # trusted to write for every value; the instance's other text is ASCII, so UTF-8 is safe.
    before = file_bytes("chrH31.dcm", charset=True)
    ds = read(before)
    apply_changes(ds, request_for({"00100010": {"vr": "PN", "Value": [{"Ideographic": "山田"}]}}))
    result = read(written(ds))
    assert result.SpecificCharacterSet == "ISO_IR 192"
    assert str(result.PatientName) == "=山田"


def test_instance_with_other_non_ascii_text_refuses_a_value_its_charset_lacks() -> None:
    before = file_bytes("chrFren.dcm", charset=True)
    ds = read(before)
    # The name being replaced is not ASCII either, but it goes: only other text blocks.
    ds.InstitutionName = "Hôpital"
    expected = written(ds)
    with pytest.raises(BulkUpdateApplyError) as caught:
        apply_changes(ds, request_for({"00100010": pn("山田^太郎")}))
    message = str(caught.value)
    assert "(0010,0010) PatientName" in message
    assert "ISO_IR 100" in message and "ISO_IR 192" in message
    assert "(0008,0080) InstitutionName" in message
    assert written(ds) == expected  # nothing was applied


def test_non_ascii_text_inside_a_sequence_blocks_the_switch() -> None:
    ds = small_instance(charset="ISO_IR 100", item_text="Zürich")
    with pytest.raises(BulkUpdateApplyError, match=r"\(0008,1110\) ReferencedStudySequence"):
        apply_changes(ds, request_for({"00100010": pn("山田")}))


def test_item_with_its_own_charset_does_not_block_the_switch() -> None:
    ds = small_instance(charset=None, item_text="Zürich", item_charset="ISO_IR 100")
    before = written(ds)
    ds = read(before)
    apply_changes(ds, request_for({"00100010": pn("Zoë")}))
    after = written(ds)
    assert_only_changed(before, after, {SPECIFIC_CHARACTER_SET, PATIENT_NAME})
    assert read(after).ReferencedStudySequence[0].StudyDescription == "Zürich"


def test_apply_after_a_sequence_was_read_keeps_its_bytes() -> None:
    before = file_bytes("rtplan.dcm")
    ds = read(before)
    assert ds.BeamSequence[0].BeamName  # converts the sequence before the update
    apply_changes(ds, request_for({"00100010": pn("Zoë")}))
    assert_only_changed(before, written(ds), {SPECIFIC_CHARACTER_SET, PATIENT_NAME})


def test_sequence_that_cannot_be_read_blocks_the_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    # pydicom reads almost any bytes as items; should it ever fail, the switch is refused.
    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("broken sequence")

    monkeypatch.setattr(bulk_update, "convert_raw_data_element", unreadable)
    ds = small_instance(charset=None)
    with pytest.raises(BulkUpdateApplyError, match="ReferencedStudySequence"):
        apply_changes(ds, request_for({"00100010": pn("Zoë")}))


@pytest.mark.parametrize(
    ("terms", "text", "fits"),
    [
        ((), "Doe^Jane", True),
        ((), "Zoë", False),  # the default repertoire is ASCII, though pydicom writes Latin-1
        (("ISO_IR 100",), "Zoë", True),
        (("ISO_IR 100",), "山田", False),
        (("ISO_IR 144",), "Люкceмбypг", True),
        (("ISO_IR 192",), "山田^Zoë", True),
        (("GB18030",), "王^小东", True),
        (("ISO_IR 13",), "山田", False),  # pydicom's shift_jis would take kanji ISO_IR 13 lacks
        (("ISO_IR 203",), "€", False),  # unknown to pydicom, which falls back to Latin-1
        (("", "ISO 2022 IR 87"), "山田", False),
        (("", "ISO 2022 IR 87"), "Yamada", True),
        (("", "ISO 2022 IR 87"), "a\x1b$Bb", False),  # ESC would switch character sets
    ],
)
def test_encodes_exactly_only_where_the_bytes_read_back(
    terms: tuple[str, ...], text: str, fits: bool
) -> None:
    assert encodes_exactly(declared_charset(list(terms)), text) is fits


def test_applying_twice_changes_nothing_more() -> None:
    request = request_for({"00100010": pn("Zoë"), "00104000": element("LT", "a\\b")})
    ds = read(file_bytes("CT_small.dcm"))
    apply_changes(ds, request)
    once = written(ds)
    again = read(once)
    assert apply_changes(again, request) == (PATIENT_NAME, 0x00104000)
    assert written(again) == once


# --- properties ----------------------------------------------------------------------------

WORD_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
NON_ASCII = "éüßñÅ山田太郎Ωλж"
TEXT_CHARS = st.sampled_from(WORD_CHARS) | st.sampled_from(NON_ASCII)
MAX_CHARS = {"LO": 64, "SH": 16}


def words(max_size: int) -> st.SearchStrategy[str]:
    """Text of at most ``max_size`` characters, spaces inside only (never all spaces)."""
    text = st.text(TEXT_CHARS | st.just(" "), min_size=1, max_size=max_size)
    return text.map(lambda value: value.strip(" ") or "x")


def person_name() -> st.SearchStrategy[dict[str, str]]:
    group = st.lists(st.text(TEXT_CHARS, min_size=1, max_size=10), min_size=1, max_size=3)
    groups = st.fixed_dictionaries(
        {"Alphabetic": group.map("^".join)},
        optional={"Ideographic": group.map("^".join), "Phonetic": group.map("^".join)},
    )
    return groups


def dates() -> st.SearchStrategy[str]:
    return st.dates(datetime.date(1900, 1, 1)).map(lambda d: d.strftime("%Y%m%d"))


def times() -> st.SearchStrategy[str]:
    return st.times().map(lambda t: t.strftime("%H%M%S"))


def decimals() -> st.SearchStrategy[Any]:
    """DS values as JSON numbers and strings; n / 10**k always has a short shortest repr."""
    scaled = st.builds(lambda n, k: n / 10**k, st.integers(-(10**8), 10**8), st.integers(0, 6))
    return st.integers(-(10**9), 10**9) | scaled | scaled.map(repr)


VALUE_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "PN": person_name(),
    "LO": words(64),
    "SH": words(16),
    "LT": st.lists(words(40), min_size=1, max_size=3).map("\r\n\\".join),
    "CS": st.from_regex(r"[A-Z0-9_]{1,16}", fullmatch=True),
    "DA": dates(),
    "TM": times(),
    "AS": st.from_regex(r"[0-9]{3}[DWMY]", fullmatch=True),
    "DS": decimals(),
}


@st.composite
def change_datasets(draw: st.DrawFn) -> dict[str, Any]:
    tags = draw(st.sets(st.sampled_from(sorted(ALLOWED_ATTRIBUTES)), min_size=1, max_size=8))
    change_dataset = {}
    for tag in sorted(tags):
        vr = dictionary_VR(tag)
        count = 1 if dictionary_VM(tag) == "1" else draw(st.integers(1, 3))
        values = draw(st.lists(VALUE_STRATEGIES[vr], min_size=count, max_size=count))
        change_dataset[f"{tag:08X}"] = {"vr": vr, "Value": values}
    return change_dataset


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change_dataset=change_datasets())
def test_any_valid_change_dataset_parses_and_reads_back_from_its_json(
    change_dataset: dict[str, Any],
) -> None:
    request = parse_bulk_update_request(body(change_dataset=change_dataset))
    assert {f"{change.tag:08X}" for change in request.changes} == set(change_dataset)
    for change in request.changes:
        assert len(change.values) == len(change_dataset[f"{change.tag:08X}"]["Value"])
    assert parse_bulk_update_request(orjson.dumps(request.to_json())) == request


def small_instance(
    *,
    charset: str | None,
    other_text: str = "General Hospital",
    patient_name: str = "Old^Name",
    item_text: str = "Prior study",
    item_charset: str | None = None,
    implicit: bool = False,
) -> Dataset:
    """An instance with text at the top level and in a sequence, pixel data and file meta."""
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = "MRN-1"
    ds.InstitutionName = other_text
    ds.StudyDescription = "Old description"
    item = Dataset()
    if item_charset is not None:
        item.SpecificCharacterSet = item_charset
    item.ReferencedSOPInstanceUID = generate_uid()
    item.StudyDescription = item_text
    ds.ReferencedStudySequence = Sequence([item])
    ds.add_new(0x00090010, "LO", "ACME")
    ds.add_new(0x00091001, "OB", b"\x80\xff\x00\x1b")
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 2, 8, 8, 7
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes([0, 128, 255, 7])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return read(buffer.getvalue())


CHARSETS = {None: "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


def encodable(text: str, charset: str | None) -> bool:
    try:
        text.encode(CHARSETS[charset])
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    change_dataset=change_datasets(),
    charset=st.sampled_from(sorted(CHARSETS, key=str)),
    other_non_ascii=st.booleans(),
    name_non_ascii=st.booleans(),
    implicit=st.booleans(),
)
def test_apply_changes_exactly_the_requested_attributes(
    change_dataset: dict[str, Any],
    charset: str | None,
    other_non_ascii: bool,
    name_non_ascii: bool,
    implicit: bool,
) -> None:
    # given an instance whose other text is ASCII or not (where its character set allows)
    other_non_ascii = other_non_ascii and charset is not None
    name_non_ascii = name_non_ascii and charset is not None
    before = written(
        small_instance(
            charset=charset,
            other_text="Hôpital" if other_non_ascii else "Hospital",
            item_text="Zürich" if other_non_ascii else "Zurich",
            patient_name="Doe^Zoë" if name_non_ascii else "Doe^Zoe",
            implicit=implicit,
        )
    )
    request = parse_bulk_update_request(body(change_dataset=change_dataset))
    misfit = any(
        not encodable(value, charset)
        for change in request.changes
        if change.vr in {"PN", "LO", "SH", "LT"}
        for value in change.values
    )
    blocked = misfit and (other_non_ascii or (name_non_ascii and PATIENT_NAME not in request.tags))
    ds = read(before)
    event("blocked" if blocked else "switched to UTF-8" if misfit else "kept its charset")

    # when the request is applied
    if blocked:
        with pytest.raises(BulkUpdateApplyError):
            apply_changes(ds, request)
        assert written(ds) == written(read(before))
        return
    tags = apply_changes(ds, request)
    after = written(ds)

    # then exactly the requested attributes changed (and the character set, if it had to)
    changed = set(request.tags) | ({SPECIFIC_CHARACTER_SET} if misfit else set())
    assert set(tags) == changed
    assert_only_changed(before, after, changed)
    result = read(after)
    for change in request.changes:
        with warnings.catch_warnings():
            # pydicom checks SH/LO lengths in bytes when it reads; PS3.5 6.2 counts characters,
            # so a 16-character SH with a two-byte character draws a warning it should not.
            warnings.simplefilter("ignore")
            value = result[change.tag].value
        values = list(value) if isinstance(value, MultiValue) else [value]
        assert [str(item) for item in values] == list(change.values)
    if misfit:
        assert result.SpecificCharacterSet == "ISO_IR 192"
    # and applying the request again changes nothing more
    again = read(after)
    apply_changes(again, request)
    assert written(again) == after
