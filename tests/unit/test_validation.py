"""Unit tests for dicom_core.domain.validation.

Most cases build raw (undecoded) elements, because that is what the store service receives
from pydicom and because pydicom itself refuses to build many malformed values from Python
objects. The suite runs with warnings as errors, which also proves the module keeps pydicom's
warnings to itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import DataElement, Dataset
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicom_core.domain.validation import (
    UID_MAX_LENGTH,
    AttributeProblem,
    dataset_problems,
    element_problem,
    is_valid_uid,
    uid_problem,
)

# A representative tag for every VR, so messages name a real attribute.
TAG_FOR_VR = {
    "AE": 0x00080054,  # RetrieveAETitle
    "AS": 0x00101010,  # PatientAge
    "AT": 0x00209165,  # DimensionIndexPointer
    "CS": 0x00080060,  # Modality
    "DA": 0x00080020,  # StudyDate
    "DS": 0x00180050,  # SliceThickness
    "DT": 0x0008002A,  # AcquisitionDateTime
    "FD": 0x00189087,  # DiffusionBValue
    "FL": 0x00186024,  # PhysicalDeltaX is FD; any tag works, the raw VR decides
    "IS": 0x00200013,  # InstanceNumber
    "LO": 0x00100020,  # PatientID
    "LT": 0x00204000,  # ImageComments
    "OB": 0x00420011,  # EncapsulatedDocument
    "OW": 0x00660023,  # TrianglePointIndexList
    "PN": 0x00100010,  # PatientName
    "SH": 0x00080050,  # AccessionNumber
    "SL": 0x00186020,  # ReferencePixelX0
    "SS": 0x00189219,  # TagAngleSecondAxis
    "ST": 0x00080081,  # InstitutionAddress
    "SV": 0x00720082,  # SelectorSVValue
    "TM": 0x00080030,  # StudyTime
    "UC": 0x00080119,  # LongCodeValue
    "UI": 0x00080018,  # SOPInstanceUID
    "UL": 0x00081161,  # SimpleFrameList
    "UN": 0x00091001,  # private, unknown
    "UR": 0x00080120,  # URNCodeValue
    "US": 0x00280010,  # Rows
    "UT": 0x0040A160,  # TextValue
    "UV": 0x00720083,  # SelectorUVValue
}


def raw(tag: int, vr: str | None, value: bytes, *, little_endian: bool = True) -> RawDataElement:
    """An explicit-VR raw element exactly as pydicom's reader would hold it."""
    return RawDataElement(BaseTag(tag), vr, len(value), value, 0, vr is None, little_endian)


def check(vr: str, value: bytes) -> str | None:
    """element_problem for a raw value of ``vr`` under the VR's representative tag."""
    return element_problem(raw(TAG_FOR_VR[vr], vr, value))


def dataset_of(*elements: RawDataElement | DataElement) -> Dataset:
    ds = Dataset()
    for elem in elements:
        ds[elem.tag] = elem
    return ds


def quietly_built(tag: int, vr: str, value: object) -> DataElement:
    """Build a DataElement pydicom warns about; the warning is not what these tests are about."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DataElement(tag, vr, value)


def bundled_file(name: str) -> str:
    """Path of one of pydicom's (or pydicom-data's) bundled files; never downloads."""
    path = get_testdata_file(name)
    assert isinstance(path, str), name
    return path


def read_test_file(path: str | Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path, force=True)


# --------------------------------------------------------------------------------------------
# UIDs


@pytest.mark.parametrize(
    "value",
    ["1.2.840.10008.5.1.4.1.1.2", "1", "abc-DEF.123", "d09e8215-e1e1-4c7a-8496-b4f6641ed232"],
)
def test_is_valid_uid_lenient_uid_true(value: str) -> None:
    assert is_valid_uid(value)
    assert uid_problem(value) is None


def test_is_valid_uid_exactly_64_chars_true() -> None:
    assert is_valid_uid("1." + "2" * (UID_MAX_LENGTH - 2))


def test_is_valid_uid_65_chars_false() -> None:
    assert not is_valid_uid("1." + "2" * (UID_MAX_LENGTH - 1))


@pytest.mark.parametrize("value", ["", "1.2 ", "1.2\x00", "1,2", "1.2/3", "1.2_3", "1.2.é"])
def test_is_valid_uid_bad_value_false(value: str) -> None:
    assert not is_valid_uid(value)


def test_uid_problem_empty_says_empty() -> None:
    assert uid_problem("") == "UID is empty"


def test_uid_problem_bad_character_quotes_value() -> None:
    assert (
        uid_problem("1.2.x#") == 'UID "1.2.x#" contains a character other than letters, '
        'digits, "." or "-"'
    )


def test_uid_problem_too_long_reports_length() -> None:
    assert uid_problem("1" * 70) == "UID is 70 characters long; at most 64 are allowed"


def test_uid_problem_control_character_is_escaped_in_message() -> None:
    problem = uid_problem("1.2\n3")
    assert problem is not None
    assert "\n" not in problem
    assert '"1.2\\x0a3"' in problem


@given(st.text(max_size=80))
def test_is_valid_uid_any_text_matches_the_rule(value: str) -> None:
    allowed = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-")
    expected = 1 <= len(value) <= UID_MAX_LENGTH and set(value) <= allowed
    assert is_valid_uid(value) is expected
    assert (uid_problem(value) is None) is expected


# --------------------------------------------------------------------------------------------
# Messages


def test_element_problem_bad_date_matches_documented_message() -> None:
    assert (
        check("DA", b"NotAValidDate ")
        == '(0008,0020) StudyDate: "NotAValidDate" is not a valid DA value (expected YYYYMMDD)'
    )


def test_element_problem_long_value_truncated_in_message() -> None:
    problem = check("LO", b"x" * 200)
    assert problem is not None
    assert '"' + "x" * 64 + '"...' in problem
    assert "200 characters long; at most 64" in problem


def test_element_problem_private_tag_has_no_keyword() -> None:
    assert element_problem(raw(0x00091001, "DA", b"nope")) == (
        '(0009,1001): "nope" is not a valid DA value (expected YYYYMMDD)'
    )


def test_element_problem_multi_value_names_failing_position() -> None:
    problem = check("CS", b"ORIGINAL\\primary")
    assert problem is not None
    assert problem.startswith('(0008,0060) Modality: value 2 "primary" contains a character')


def test_element_problem_quotes_and_backslashes_escaped() -> None:
    problem = check("DA", b'20"01')
    assert problem is not None
    assert '"20\\"01"' in problem


# --------------------------------------------------------------------------------------------
# Padding


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("AE", b"STORESCP\x00\x00"),
        ("AS", b"045Y\x00\x00"),
        ("CS", b"CT\x00\x00"),
        ("DA", b"20240101\x00\x00"),
        ("DS", b"1.5\x00"),
        ("DT", b"20240101\x00\x00"),
        ("IS", b"42\x00\x00"),
        ("LO", b"ABC\x00"),
        ("PN", b"Doe^John\x00\x00"),
        ("SH", b"ACC1\x00\x00"),
        ("TM", b"1200\x00\x00"),
        ("UI", b"1.2.3\x00"),
        ("LO", b"ABC \x00"),
        ("LO", b"ABC\x00 "),
        ("UI", b"1.2.3 "),
    ],
)
def test_element_problem_trailing_nul_or_space_padding_accepted(vr: str, value: bytes) -> None:
    assert check(vr, value) is None


@pytest.mark.parametrize("vr", sorted(set(TAG_FOR_VR) - {"AE"}))
def test_element_problem_empty_value_accepted(vr: str) -> None:
    assert check(vr, b"") is None


def test_element_problem_nul_padded_empty_value_accepted() -> None:
    assert check("LO", b"\x00\x00") is None
    assert check("UI", b"\x00\x00") is None
    assert check("AE", b"\x00\x00") is None


# --------------------------------------------------------------------------------------------
# AE


@pytest.mark.parametrize("value", [b"STORESCP", b"A" * 16, b" AE WITH SPACE ", b"lower_case-1"])
def test_element_problem_ae_valid_none(value: bytes) -> None:
    assert check("AE", value) is None


def test_element_problem_ae_17_chars_too_long() -> None:
    problem = check("AE", b"A" * 17 + b" ")
    assert problem is not None
    assert "17 characters long; at most 16 are allowed for AE" in problem


@pytest.mark.parametrize("value", [b"    ", b"  "])
def test_element_problem_ae_all_spaces_rejected(value: bytes) -> None:
    problem = check("AE", value)
    assert problem is not None
    assert "consists only of spaces" in problem


@pytest.mark.parametrize("value", [b"AE\x01X", b"AE\tX", "AÉ".encode("latin-1")])
def test_element_problem_ae_control_or_non_ascii_rejected(value: bytes) -> None:
    problem = check("AE", value)
    assert problem is not None
    assert "which AE does not allow" in problem


# --------------------------------------------------------------------------------------------
# AS


@pytest.mark.parametrize("value", [b"045Y", b"000D", b"012W", b"006M"])
def test_element_problem_as_valid_none(value: bytes) -> None:
    assert check("AS", value) is None


@pytest.mark.parametrize("value", [b"45Y ", b"045X", b"0450", b"45 Y", b"0045Y ", b"045y"])
def test_element_problem_as_malformed_rejected(value: bytes) -> None:
    problem = check("AS", value)
    assert problem is not None
    assert "is not a valid AS value (expected nnnD, nnnW, nnnM or nnnY)" in problem


# --------------------------------------------------------------------------------------------
# CS


@pytest.mark.parametrize("value", [b"CT", b"ORIGINAL\\PRIMARY", b"A_B C", b"ISO_IR 100", b"X" * 16])
def test_element_problem_cs_valid_none(value: bytes) -> None:
    assert check("CS", value) is None


@pytest.mark.parametrize("value", [b"ct", b"A-B", b"ABDOM/RAD", b"A.B"])
def test_element_problem_cs_bad_character_rejected(value: bytes) -> None:
    problem = check("CS", value)
    assert problem is not None
    assert "which CS does not allow" in problem


def test_element_problem_cs_17_chars_too_long() -> None:
    problem = check("CS", b"X" * 17 + b" ")
    assert problem is not None
    assert "at most 16 are allowed for CS" in problem


# --------------------------------------------------------------------------------------------
# DA


@pytest.mark.parametrize("value", [b"20240229", b"19000101", b"00010101", b"20231231"])
def test_element_problem_da_valid_none(value: bytes) -> None:
    assert check("DA", value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"20230229", "day 29 does not exist in 2023-02"),
        (b"20231301", "month 13 is out of range"),
        (b"20230001", "month 00 is out of range"),
        (b"20230100", "day 00 does not exist"),
        (b"00000101", "year 0000 does not exist"),
        (b"2023.01.01", "expected YYYYMMDD"),
        (b"2023010 ", "expected YYYYMMDD"),
        (b"202301011", "expected YYYYMMDD"),
        (b" 20230101 ", "expected YYYYMMDD"),
        (b"20230101-20230102", "expected YYYYMMDD"),
    ],
)
def test_element_problem_da_invalid_rejected(value: bytes, reason: str) -> None:
    problem = check("DA", value)
    assert problem is not None
    assert "is not a valid DA value" in problem
    assert reason in problem


def test_element_problem_da_one_bad_value_among_many_rejected() -> None:
    problem = check("DA", b"20240101\\20241301\\20240102")
    assert problem is not None
    assert 'value 2 "20241301"' in problem


# --------------------------------------------------------------------------------------------
# DT


@pytest.mark.parametrize(
    "value",
    [
        b"2023",
        b"202301",
        b"20230115",
        b"2023011512",
        b"202301151230",
        b"20230115123045",
        b"20230115123060",
        b"20230115123045.1",
        b"20230115123045.123456",
        b"20230115123045.1+0100",
        b"2023-0500",
        b"20230115123045-1200",
        b"20230115123045+1400",
    ],
)
def test_element_problem_dt_valid_none(value: bytes) -> None:
    assert check("DT", value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"20231301", "month 13 is out of range"),
        (b"20230230", "day 30 does not exist"),
        (b"0000", "year 0000 does not exist"),
        (b"2023011524", "hour 24 is out of range"),
        (b"202301151260", "minute 60 is out of range"),
        (b"20230115123061", "second 61 is out of range"),
        (b"20230115123045+1500", "UTC offset"),
        (b"20230115123045-1300", "UTC offset"),
        (b"20230115123045+0160", "UTC offset"),
        (b"20230115123045.1234567", "expected YYYY"),
        (b"2023011512304 ", "expected YYYY"),
        (b"2023011512.5", "expected YYYY"),
        (b"20230115 123045", "expected YYYY"),
        (b"2023-01-15T12:30", "expected YYYY"),
    ],
)
def test_element_problem_dt_invalid_rejected(value: bytes, reason: str) -> None:
    problem = check("DT", value)
    assert problem is not None
    assert "is not a valid DT value" in problem
    assert reason in problem


# --------------------------------------------------------------------------------------------
# TM


@pytest.mark.parametrize(
    "value", [b"12", b"1230", b"123045", b"123045.1", b"123045.123456", b"235960", b"000000"]
)
def test_element_problem_tm_valid_none(value: bytes) -> None:
    assert check("TM", value) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"24", "hour 24 is out of range"),
        (b"1260", "minute 60 is out of range"),
        (b"123061", "second 61 is out of range"),
        (b"12:30:45", "expected HH[MM[SS[.FFFFFF]]]"),
        (b"123045.", "expected HH"),
        (b"123045.1234567 ", "expected HH"),
        (b"1 ", "expected HH"),
        (b"12304 ", "expected HH"),
        (b" 1230 ", "expected HH"),
    ],
)
def test_element_problem_tm_invalid_rejected(value: bytes, reason: str) -> None:
    problem = check("TM", value)
    assert problem is not None
    assert "is not a valid TM value" in problem
    assert reason in problem


# --------------------------------------------------------------------------------------------
# DS


@pytest.mark.parametrize(
    "value",
    [b"1 ", b"-1.5", b"+2.5", b"1e3 ", b"1.5E-3", b" 12.5 ", b".5", b"5.", b"1234567890123456"],
)
def test_element_problem_ds_valid_none(value: bytes) -> None:
    assert check("DS", value) is None


@pytest.mark.parametrize("value", [b"abc ", b"1,5 ", b"1.2.3 ", b"inf ", b"nan ", b"e5", b"1 2 "])
def test_element_problem_ds_not_a_number_rejected(value: bytes) -> None:
    problem = check("DS", value)
    assert problem is not None
    assert "is not a valid DS value" in problem


def test_element_problem_ds_17_chars_too_long() -> None:
    problem = check("DS", b"12345678901234567 ")
    assert problem is not None
    assert "17 characters long; at most 16 are allowed for DS" in problem


def test_element_problem_ds_one_bad_value_among_many_rejected() -> None:
    problem = check("DS", b"1.0\\0.0\\x\\1.0")
    assert problem is not None
    assert 'value 3 "x"' in problem


# --------------------------------------------------------------------------------------------
# IS


@pytest.mark.parametrize(
    "value", [b"0 ", b"-2147483648 ", b"2147483647 ", b" 42 ", b"+7", b"000000000001"]
)
def test_element_problem_is_valid_none(value: bytes) -> None:
    assert check("IS", value) is None


@pytest.mark.parametrize("value", [b"1.5 ", b"1A", b"abc ", b"1e3 ", b"- 1"])
def test_element_problem_is_not_an_integer_rejected(value: bytes) -> None:
    problem = check("IS", value)
    assert problem is not None
    assert "is not a valid IS value (expected an integer)" in problem


@pytest.mark.parametrize("value", [b"2147483648", b"-2147483649 "])
def test_element_problem_is_out_of_range_rejected(value: bytes) -> None:
    problem = check("IS", value)
    assert problem is not None
    assert "outside -2147483648 to 2147483647" in problem


def test_element_problem_is_13_chars_too_long() -> None:
    problem = check("IS", b"0000000000001 ")
    assert problem is not None
    assert "13 characters long; at most 12 are allowed for IS" in problem


def test_element_problem_is_value_pydicom_accepted_still_rejected() -> None:
    """pydicom turns "1.5" into an ISfloat with only a warning; the service must flag it."""
    problem = element_problem(quietly_built(0x00200013, "IS", "1.5"))
    assert problem is not None
    assert "is not a valid IS value" in problem


# --------------------------------------------------------------------------------------------
# LO and SH


@pytest.mark.parametrize(
    ("vr", "limit"),
    [("LO", 64), ("SH", 16)],
)
def test_element_problem_text_at_limit_none(vr: str, limit: int) -> None:
    assert check(vr, b"x" * limit) is None


@pytest.mark.parametrize(
    ("vr", "limit"),
    [("LO", 64), ("SH", 16)],
)
def test_element_problem_text_over_limit_rejected(vr: str, limit: int) -> None:
    problem = check(vr, b"x" * (limit + 1) + b" ")
    assert problem is not None
    assert f"{limit + 1} characters long; at most {limit} are allowed for {vr}" in problem


@pytest.mark.parametrize("vr", ["LO", "SH"])
@pytest.mark.parametrize("value", [b"a\x01b", b"a\tb", b"a\nb", b"a\x00b", b"a\x7fb"])
def test_element_problem_text_control_character_rejected(vr: str, value: bytes) -> None:
    problem = check(vr, value)
    assert problem is not None
    assert f"contains a control character other than ESC, which {vr} does not allow" in problem


@pytest.mark.parametrize("vr", ["LO", "SH"])
def test_element_problem_text_escape_and_leading_spaces_accepted(vr: str) -> None:
    assert check(vr, b"  a\x1b(Bb") is None


def test_element_problem_lo_backslash_inside_one_value_rejected() -> None:
    problem = element_problem(DataElement(0x00100020, "LO", ["a\\b"]))
    assert problem is not None
    assert "contains a backslash, which LO does not allow within a value" in problem


def test_element_problem_lo_one_bad_value_among_many_rejected() -> None:
    problem = check("LO", b"fine\\bad\x01\\fine")
    assert problem is not None
    assert "value 2" in problem


def test_element_problem_patient_id_empty_accepted() -> None:
    assert element_problem(DataElement(0x00100020, "LO", "")) is None


# --------------------------------------------------------------------------------------------
# PN


@pytest.mark.parametrize(
    "value",
    [
        b"Doe^John",
        b"Doe^John^M^Dr^Jr",
        b"A=B=C",
        b"Doe^John==",
        b"^^^^",
        b"x" * 64,
        b"=".join([b"y" * 64] * 3),
        b"Doe^John\\Roe^Jane",
    ],
)
def test_element_problem_pn_valid_none(value: bytes) -> None:
    assert check("PN", value) is None


def test_element_problem_pn_six_components_rejected() -> None:
    problem = check("PN", b"A^B^C^D^E^F ")
    assert problem is not None
    assert "component group with 6 components; PN allows at most 5" in problem


def test_element_problem_pn_four_groups_rejected() -> None:
    problem = check("PN", b"A=B=C=D ")
    assert problem is not None
    assert "has 4 component groups; PN allows at most 3" in problem


def test_element_problem_pn_group_of_65_chars_rejected() -> None:
    problem = check("PN", b"x" * 65 + b"=y")
    assert problem is not None
    assert "component group of 65 characters; PN allows at most 64" in problem


def test_element_problem_pn_control_character_rejected() -> None:
    problem = check("PN", b"Doe^\x07John")
    assert problem is not None
    assert "control character other than ESC, which PN does not allow" in problem


def test_element_problem_pn_second_name_bad_reports_value_2() -> None:
    problem = check("PN", b"Doe^John\\A^B^C^D^E^F")
    assert problem is not None
    assert "value 2" in problem


def test_element_problem_pn_from_python_value_checked() -> None:
    assert element_problem(DataElement(0x00100010, "PN", "Doe^John")) is None
    problem = element_problem(quietly_built(0x00100010, "PN", "A=B=C=D"))
    assert problem is not None
    assert "component groups" in problem


# --------------------------------------------------------------------------------------------
# UI


@pytest.mark.parametrize(
    "value", [b"1.2.840.10008.1.2.1\x00", b"1.2.3\\4.5.6", b"abc-DEF.1", b"1" * 64]
)
def test_element_problem_ui_valid_none(value: bytes) -> None:
    assert check("UI", value) is None


def test_element_problem_ui_bad_character_rejected() -> None:
    assert check("UI", b"1.2.x#") == (
        '(0008,0018) SOPInstanceUID: "1.2.x#" contains a character other than letters, '
        'digits, "." or "-" for UI'
    )


def test_element_problem_ui_65_chars_rejected() -> None:
    problem = check("UI", b"1" * 65 + b"\x00")
    assert problem is not None
    assert "is 65 characters long; at most 64 are allowed for UI" in problem


def test_element_problem_ui_one_bad_value_among_many_rejected() -> None:
    problem = check("UI", b"1.2.3\\1.2 3")
    assert problem is not None
    assert 'value 2 "1.2 3"' in problem


def test_element_problem_ui_from_pydicom_uid_checked() -> None:
    assert element_problem(DataElement(0x00080018, "UI", "1.2.3")) is None
    problem = element_problem(quietly_built(0x00080018, "UI", "1.2_3"))
    assert problem is not None
    assert "contains a character other than" in problem


# --------------------------------------------------------------------------------------------
# LT, ST, UT, UC, UR


@pytest.mark.parametrize(("vr", "limit"), [("LT", 10240), ("ST", 1024)])
def test_element_problem_free_text_at_limit_none(vr: str, limit: int) -> None:
    assert check(vr, b"x" * limit) is None


@pytest.mark.parametrize(("vr", "limit"), [("LT", 10240), ("ST", 1024)])
def test_element_problem_free_text_over_limit_rejected(vr: str, limit: int) -> None:
    problem = check(vr, b"x" * (limit + 1) + b" ")
    assert problem is not None
    assert f"is {limit + 1} characters long; at most {limit} are allowed" in problem


@pytest.mark.parametrize("vr", ["LT", "ST", "UT"])
def test_element_problem_free_text_backslash_and_line_breaks_accepted(vr: str) -> None:
    assert check(vr, b"line one\r\nC:\\path\\file\ttab") is None


@pytest.mark.parametrize("vr", ["UT", "UC", "UR"])
def test_element_problem_unchecked_text_anything_goes_none(vr: str) -> None:
    assert check(vr, b"x" * 20000 + b"\x01 not checked") is None


# --------------------------------------------------------------------------------------------
# Binary numbers and opaque binary


@pytest.mark.parametrize(
    ("vr", "value"),
    [
        ("US", b"\x00\x02"),
        ("US", b"\x00\x02\x00\x03"),
        ("SS", b"\xff\xff"),
        ("UL", b"\x01\x00\x00\x00"),
        ("SL", b"\x01\x00\x00\x00"),
        ("FL", b"\x00\x00\x80\x3f"),
        ("FD", b"\x00" * 16),
        ("AT", b"\x08\x00\x20\x00"),
        ("SV", b"\x00" * 8),
        ("UV", b"\x00" * 8),
    ],
)
def test_element_problem_binary_number_whole_values_none(vr: str, value: bytes) -> None:
    assert check(vr, value) is None


@pytest.mark.parametrize(
    ("vr", "value", "size"),
    [
        ("US", b"\x00\x02\x00", 2),
        ("UL", b"\x00" * 6, 4),
        ("FD", b"\x00" * 12, 8),
        ("AT", b"\x00" * 6, 4),
    ],
)
def test_element_problem_binary_number_partial_value_rejected(
    vr: str, value: bytes, size: int
) -> None:
    problem = check(vr, value)
    assert problem is not None
    assert f"is {len(value)} bytes long, which is not a multiple of {size} as {vr} needs" in problem


def test_element_problem_us_python_value_out_of_range_rejected() -> None:
    problem = element_problem(quietly_built(0x00280010, "US", 70000))
    assert problem is not None
    assert "70000 is outside the range 0 to 65535 of US" in problem


def test_element_problem_us_python_values_in_range_none() -> None:
    assert element_problem(DataElement(0x00280010, "US", 512)) is None
    assert element_problem(DataElement(0x00281101, "US", [256, 0, 16])) is None


def test_element_problem_fd_python_value_none() -> None:
    assert element_problem(DataElement(0x00189087, "FD", 1000.0)) is None


def test_element_problem_at_python_value_none() -> None:
    assert element_problem(DataElement(0x00209165, "AT", [0x00200032, 0x00209157])) is None


@pytest.mark.parametrize("vr", ["OB", "OW", "OF", "OD", "OL", "OV", "UN"])
def test_element_problem_opaque_binary_anything_none(vr: str) -> None:
    assert element_problem(raw(0x00091001, vr, b"\xff\x00\x01")) is None


def test_element_problem_ambiguous_dictionary_vr_handled() -> None:
    """Implicit-VR elements with "US or SS" in the dictionary still get a length check."""
    assert element_problem(raw(0x00280106, None, b"\x00\x00")) is None
    problem = element_problem(raw(0x00280106, None, b"\x00"))
    assert problem is not None
    assert "not a multiple of 2" in problem


def test_element_problem_implicit_vr_uses_dictionary_vr() -> None:
    problem = element_problem(raw(0x00200013, None, b"12a "))
    assert problem is not None
    assert problem.startswith("(0020,0013) InstanceNumber:")
    assert "is not a valid IS value" in problem


# --------------------------------------------------------------------------------------------
# Character sets


def test_dataset_problems_undecodable_utf8_reported() -> None:
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 192"),
        raw(0x00100010, "PN", b"Doe^\xff\xfe "),
    )
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x00100010
    assert "cannot be decoded using character set ISO_IR 192" in problem.message


def test_dataset_problems_valid_utf8_accepted() -> None:
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 192"),
        raw(0x00100010, "PN", "Müller^Jürgen".encode()),
        raw(0x00100020, "LO", "患者".encode()),
    )
    assert dataset_problems(ds) == []


def test_dataset_problems_utf8_length_counted_in_characters() -> None:
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 192"),
        raw(0x00080050, "SH", "é".encode() * 16),
    )
    assert dataset_problems(ds) == []


def test_repeated_values_are_judged_under_each_instances_own_character_set() -> None:
    """The same bytes, remembered from one instance, must not decide for the next one."""
    name = raw(0x00100010, "PN", b"M\xfcller^J")
    latin1 = dataset_of(name)
    utf8 = dataset_of(raw(0x00080005, "CS", b"ISO_IR 192"), name)
    for _ in range(2):
        assert dataset_problems(latin1) == []
        [problem] = dataset_problems(utf8)
        assert "cannot be decoded using character set ISO_IR 192" in problem.message


def test_repeated_values_keep_their_own_tag_in_the_message() -> None:
    bad_date = b"2024-01-01"
    first = dataset_problems(dataset_of(raw(0x00080020, "DA", bad_date)))
    second = dataset_problems(dataset_of(raw(0x00100030, "DA", bad_date)))
    assert [p.tag for p in first] == [0x00080020] and "StudyDate" in first[0].message
    assert [p.tag for p in second] == [0x00100030] and "PatientBirthDate" in second[0].message


def test_dataset_problems_latin1_without_character_set_accepted() -> None:
    """Undeclared Latin-1 is common in the wild; pydicom reads it, and so does the service."""
    ds = dataset_of(raw(0x00100010, "PN", "Müller^Jürgen".encode("latin-1")))
    assert dataset_problems(ds) == []


def test_dataset_problems_unknown_character_set_term_does_not_raise() -> None:
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 999"),
        raw(0x00100010, "PN", b"Doe^John"),
    )
    assert dataset_problems(ds) == []


def test_dataset_problems_item_character_set_overrides_parent() -> None:
    item = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 100"),
        raw(0x00100010, "PN", "Müller".encode("latin-1")),
    )
    ds = dataset_of(raw(0x00080005, "CS", b"ISO_IR 192"))
    ds.OtherPatientIDsSequence = Sequence([item])
    assert dataset_problems(ds) == []


def test_dataset_problems_item_inherits_parent_character_set() -> None:
    item = dataset_of(raw(0x00100010, "PN", b"M\xfcller"))
    ds = dataset_of(raw(0x00080005, "CS", b"ISO_IR 192"))
    ds.OtherPatientIDsSequence = Sequence([item])
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x00101002
    assert "cannot be decoded using character set ISO_IR 192" in problem.message


# --------------------------------------------------------------------------------------------
# Sequences


def _sequence_dataset(*items: Dataset) -> Dataset:
    ds = Dataset()
    ds.ReferencedSeriesSequence = Sequence(list(items))
    return ds


def test_dataset_problems_sequence_problem_reported_under_top_level_tag() -> None:
    ds = _sequence_dataset(dataset_of(raw(0x00080020, "DA", b"2023")))
    assert dataset_problems(ds) == [
        AttributeProblem(
            0x00081115,
            "ReferencedSeriesSequence",
            '(0008,1115) ReferencedSeriesSequence > item 1 > (0008,0020) StudyDate: "2023" '
            "is not a valid DA value (expected YYYYMMDD)",
        )
    ]


def test_dataset_problems_sequence_several_problems_first_only() -> None:
    ds = _sequence_dataset(
        dataset_of(raw(0x00080020, "DA", b"bad1"), raw(0x00200013, "IS", b"bad2")),
        dataset_of(raw(0x00080030, "TM", b"bad3")),
    )
    [problem] = dataset_problems(ds)
    assert "item 1 > (0008,0020) StudyDate" in problem.message
    assert "bad2" not in problem.message
    assert "bad3" not in problem.message


def test_dataset_problems_sequence_problem_in_second_item_numbered() -> None:
    ds = _sequence_dataset(Dataset(), dataset_of(raw(0x0020000E, "UI", b"1.2.x#")))
    [problem] = dataset_problems(ds)
    assert "> item 2 > (0020,000E) SeriesInstanceUID:" in problem.message


def test_dataset_problems_nested_sequence_reported_under_outermost_tag() -> None:
    inner = Dataset()
    inner.ReferencedSOPSequence = Sequence([dataset_of(raw(0x00081155, "UI", b"1.2.x#"))])
    ds = _sequence_dataset(inner)
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x00081115
    assert problem.keyword == "ReferencedSeriesSequence"
    assert (
        "(0008,1115) ReferencedSeriesSequence > item 1 > (0008,1199) ReferencedSOPSequence "
        "> item 1 > (0008,1155) ReferencedSOPInstanceUID:" in problem.message
    )


def test_dataset_problems_clean_and_empty_sequences_none() -> None:
    ds = _sequence_dataset(dataset_of(raw(0x0020000E, "UI", b"1.2.3\x00")), Dataset())
    ds.OtherPatientIDsSequence = Sequence([])
    assert dataset_problems(ds) == []


def test_dataset_problems_raw_explicit_sequence_parsed_and_checked() -> None:
    # One defined-length item holding StudyDate "abcd", explicit VR little endian.
    value = b"\xfe\xff\x00\xe0\x0c\x00\x00\x00" + b"\x08\x00\x20\x00DA\x04\x00abcd"
    ds = dataset_of(raw(0x00081115, "SQ", value))
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x00081115
    assert '(0008,0020) StudyDate: "abcd" is not a valid DA value' in problem.message


def test_dataset_problems_raw_sequence_without_item_tag_reported() -> None:
    ds = dataset_of(raw(0x00081115, "SQ", b"\x01\x02\x03\x04garbage!"))
    [problem] = dataset_problems(ds)
    assert "sequence does not start with an item tag" in problem.message


def test_dataset_problems_truncated_element_in_raw_sequence_reported() -> None:
    # An undefined-length item whose StudyDate declares 8 bytes but only 6 follow.
    value = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + b"\x08\x00\x20\x00DA\x08\x00202401"
    ds = dataset_of(RawDataElement(BaseTag(0x00081115), "SQ", 0xFFFFFFFF, value, 0, False, True))
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x00081115
    assert problem.message.endswith(
        "item 1 > (0008,0020) StudyDate: value is truncated (6 of 8 declared bytes present)"
    )


def test_element_problem_truncated_raw_value_reported() -> None:
    elem = RawDataElement(BaseTag(0x00080020), "DA", 8, b"2024", 0, False, True)
    assert element_problem(elem) == (
        "(0008,0020) StudyDate: value is truncated (4 of 8 declared bytes present)"
    )


def test_dataset_problems_item_with_unknown_character_set_still_checked() -> None:
    item = b"\x08\x00\x05\x00CS\x08\x00ISO_IR 9" + b"\x08\x00\x20\x00DA\x04\x00abcd"
    value = b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item
    [problem] = dataset_problems(dataset_of(raw(0x00081115, "SQ", value)))
    assert '(0008,0020) StudyDate: "abcd" is not a valid DA value' in problem.message


def test_dataset_problems_implicit_vr_file_sequence_item_checked() -> None:
    ds = read_test_file(bundled_file("rtplan.dcm"))
    beam = ds.BeamSequence[0]
    beam[0x00080020] = raw(0x00080020, None, b"2024-01-01")
    [problem] = dataset_problems(ds)
    assert problem.tag == 0x300A00B0
    assert problem.keyword == "BeamSequence"
    assert '(0008,0020) StudyDate: "2024-01-01" is not a valid DA value' in problem.message


# --------------------------------------------------------------------------------------------
# Whole datasets


def test_dataset_problems_empty_dataset_none() -> None:
    assert dataset_problems(Dataset()) == []


def test_dataset_problems_several_attributes_in_tag_order() -> None:
    ds = dataset_of(
        raw(0x00200013, "IS", b"x "),
        raw(0x00080020, "DA", b"bad "),
        raw(0x00100010, "PN", b"A=B=C=D "),
        raw(0x00080060, "CS", b"CT"),
    )
    problems = dataset_problems(ds)
    assert [p.tag for p in problems] == [0x00080020, 0x00100010, 0x00200013]
    assert [p.keyword for p in problems] == ["StudyDate", "PatientName", "InstanceNumber"]


def test_dataset_problems_one_problem_per_attribute() -> None:
    ds = dataset_of(raw(0x00080008, "CS", b"bad\\worse\\x-y"))
    [problem] = dataset_problems(ds)
    assert 'value 1 "bad"' in problem.message


def test_dataset_problems_group_length_file_meta_and_pixel_data_skipped() -> None:
    ds = dataset_of(
        raw(0x00080000, "UL", b"\x00\x00\x00"),
        raw(0x00020010, "UI", b"not a uid!"),
        raw(0x00000000, "UL", b"\x00"),
        raw(0x7FE00010, "OW", b"\x00\x01\x02"),
    )
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta[0x00020010] = raw(0x00020010, "UI", b"not a uid!")
    assert dataset_problems(ds) == []


def test_dataset_problems_private_attribute_checked_without_keyword() -> None:
    ds = dataset_of(raw(0x00090010, "LO", b"ACME 1.0"), raw(0x00091001, "DA", b"bad "))
    [problem] = dataset_problems(ds)
    assert problem == AttributeProblem(
        0x00091001, "", '(0009,1001): "bad" is not a valid DA value (expected YYYYMMDD)'
    )


def test_dataset_problems_raw_elements_left_unconverted() -> None:
    ds = dataset_of(raw(0x00200013, "IS", b"x "), raw(0x00081115, "SQ", b""))
    dataset_problems(ds)
    assert isinstance(ds.get_item(0x00200013), RawDataElement)
    assert isinstance(ds.get_item(0x00081115), RawDataElement)


def test_dataset_problems_invalid_values_emit_no_warnings() -> None:
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 192"),
        raw(0x00200013, "IS", b"1.5 "),
        raw(0x00180050, "DS", b"abc "),
        raw(0x00100010, "PN", b"\xff"),
        # pydicom warns about the item's unknown character set while parsing the sequence.
        raw(
            0x00081115,
            "SQ",
            b"\xfe\xff\x00\xe0\x18\x00\x00\x00\x08\x00\x05\x00CS\x08\x00ISO_IR 9"
            b"\x08\x00\x20\x00DA\x00\x00",
        ),
        raw(0x00080020, "DA", b"bad "),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        problems = dataset_problems(ds)
    assert caught == []
    assert len(problems) == 4


def test_dataset_problems_python_values_checked() -> None:
    ds = Dataset()
    ds.StudyDate = "20240230"
    ds.add(quietly_built(0x00080060, "CS", "mr"))
    ds.PatientID = ""
    ds.StudyInstanceUID = "1.2.3"
    problems = dataset_problems(ds)
    assert [p.keyword for p in problems] == ["StudyDate", "Modality"]


def test_dataset_problems_odd_python_value_reported_not_raised() -> None:
    ds = Dataset()
    ds.add(DataElement(0x00280010, "US", 5))
    ds[0x00280010]._value = object()  # what a buggy caller could leave behind
    [problem] = dataset_problems(ds)
    assert "is not an integer, which US needs" in problem.message


def test_dataset_problems_required_attribute_missing_not_a_problem_here() -> None:
    """Presence of required attributes is the store service's decision, not this module's."""
    ds = Dataset()
    ds.Modality = "CT"
    assert dataset_problems(ds) == []


def test_dataset_problems_messages_single_line() -> None:
    ds = dataset_of(
        raw(0x00100020, "LO", b"a\nb"),
        raw(0x00080020, "DA", b"\r\n\x00x"),
        raw(0x00100010, "PN", b"\x1b\x07"),
    )
    problems = dataset_problems(ds)
    assert len(problems) == 3
    for problem in problems:
        assert "\n" not in problem.message
        assert "\r" not in problem.message


# --------------------------------------------------------------------------------------------
# Real files from pydicom's test data


CLEAN_FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "rtstruct.dcm",
    "waveform_ecg.dcm",
    "JPEG2000.dcm",
    "MR_small_RLE.dcm",
    "emri_small.dcm",
    "SC_rgb.dcm",
]


@pytest.mark.parametrize("name", CLEAN_FILES)
def test_dataset_problems_real_clean_file_none(name: str) -> None:
    ds = read_test_file(bundled_file(name))
    assert dataset_problems(ds) == []


@pytest.mark.parametrize(
    "name",
    ["chrH31.dcm", "chrH32.dcm", "chrX1.dcm", "chrX2.dcm", "chrSQEncoding.dcm", "chrRuss.dcm"],
)
def test_dataset_problems_real_charset_file_none(name: str) -> None:
    [path] = get_charset_files(name)
    assert dataset_problems(read_test_file(path)) == []


# What real, slightly wrong data looks like; recorded so the store's warnings can be predicted.
KNOWN_PROBLEMS = {
    "ExplVR_BigEnd.dcm": [
        '(0008,0020) StudyDate: "1997.04.24" is not a valid DA value (expected YYYYMMDD)',
        '(0008,0030) StudyTime: "14:04:38" is not a valid TM value (expected HH[MM[SS[.FFFFFF]]])',
    ],
    "badVR.dcm": [
        '(0028,0008) NumberOfFrames: "1A" is not a valid IS value (expected an integer)',
    ],
    "color-pl.dcm": [
        '(0008,0020) StudyDate: "1994.11.05" is not a valid DA value (expected YYYYMMDD)',
        '(0008,0023) ContentDate: "1994.11.05" is not a valid DA value (expected YYYYMMDD)',
        '(0008,0030) StudyTime: "11:20:00" is not a valid TM value (expected HH[MM[SS[.FFFFFF]]])',
    ],
    "gdcm-US-ALOKA-16.dcm": [
        '(0008,0008) ImageType: value 3 "ABDOM/RAD" contains a character other than uppercase '
        "letters, digits, space or underscore, which CS does not allow",
    ],
    "bad_sequence.dcm": [
        '(0010,1010) PatientAge: "22Y" is not a valid AS value (expected nnnD, nnnW, nnnM or nnnY)',
        '(0020,0010) StudyID: "d6e895774587360288a394441a225639d97f7ae4374153c9e1ff53dc3bafa128"'
        " is 64 characters long; at most 16 are allowed for SH",
    ],
}


@pytest.mark.parametrize("name", sorted(KNOWN_PROBLEMS))
def test_dataset_problems_real_imperfect_file_reports_known_problems(name: str) -> None:
    ds = read_test_file(bundled_file(name))
    assert [p.message for p in dataset_problems(ds)] == KNOWN_PROBLEMS[name]


def test_dataset_problems_every_local_test_file_never_raises() -> None:
    roots = [Path(pydicom.data.__file__).parent]
    try:
        import data_store  # pydicom-data's package

        roots.append(Path(data_store.__file__).parent)
    except ImportError:  # pragma: no cover - pydicom-data is a dev requirement
        pass
    checked = 0
    for root in roots:
        for path in sorted(root.rglob("*.dcm")):
            try:
                ds = read_test_file(path)
            except Exception:
                continue
            problems = dataset_problems(ds)
            assert all(isinstance(p, AttributeProblem) for p in problems)
            checked += 1
    assert checked > 50


# --------------------------------------------------------------------------------------------
# Robustness


VRS = sorted(TAG_FOR_VR) + ["SQ"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(vr=st.sampled_from(VRS), value=st.binary(max_size=80), little_endian=st.booleans())
def test_dataset_problems_arbitrary_bytes_never_raise(
    vr: str, value: bytes, little_endian: bool
) -> None:
    tag = 0x00081115 if vr == "SQ" else TAG_FOR_VR[vr]
    ds = dataset_of(
        raw(0x00080005, "CS", b"ISO_IR 192"),
        raw(tag, vr, value, little_endian=little_endian),
    )
    problems = dataset_problems(ds)
    assert all(p.tag == tag and "\n" not in p.message for p in problems)
    assert len(problems) <= 1


@settings(max_examples=200, deadline=None)
@given(vr=st.sampled_from(sorted(set(TAG_FOR_VR) - {"OB", "OW", "UN"})), text=st.text(max_size=40))
def test_element_problem_arbitrary_text_never_raises(vr: str, text: str) -> None:
    elem = raw(TAG_FOR_VR[vr], vr, text.encode("utf-8"))
    result = element_problem(elem)
    assert result is None or result.startswith(f"({TAG_FOR_VR[vr] >> 16:04X},")
