"""``received_dataset_problem``: DICOM JSON a client sent (UPS-RS keeps it as sent).

The fuzzing probe's workitems were stored and served back malformed; each of its elements is
a case here, with what a well-formed dataset of every VR looks like beside them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from dicom_core.domain.dicomjson.received import received_dataset_problem
from tests.support.factories import make_dataset

WELL_FORMED: dict[str, Any] = {
    "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
    "00080018": {"vr": "UI", "Value": ["1.2.3.4"]},
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^Jane", "Ideographic": "山田"}]},
    "00100030": {"vr": "DA", "Value": ["19700101"]},
    "00101010": {"vr": "AS", "Value": ["042Y"]},
    "00181020": {"vr": "LO", "Value": ["a", None, "c"]},
    "00280010": {"vr": "US", "Value": [512]},
    "00200013": {"vr": "IS", "Value": [3, "4"]},
    "00181050": {"vr": "DS", "Value": [0.5, "1.25"]},
    "00209165": {"vr": "AT", "Value": ["00100010"]},
    "00189089": {"vr": "FD", "Value": [1.0, 0, -2.5]},
    "00280106": {"vr": "SS", "Value": [-5]},
    "00404010": {"vr": "DT", "Value": ["20240101120000"]},
    "00091010": {"vr": "OB", "InlineBinary": "AAEC"},
    "00091011": {"vr": "UN"},
    "00100020": {"vr": "LO"},
    "0040A370": {
        "vr": "SQ",
        "Value": [{"00080050": {"vr": "SH", "Value": ["A1"]}}, {}],
    },
}


def test_a_well_formed_dataset_of_every_kind_of_value_passes() -> None:
    assert received_dataset_problem(WELL_FORMED) is None


@pytest.mark.parametrize(
    ("element", "tag", "named"),
    [
        ({"vr": "XX", "Value": ["x"]}, "00100020", '"vr" "XX" is not a DICOM VR'),
        ({"vr": "LO", "Value": "not-a-list"}, "00100020", '"Value" must be a JSON array'),
        ({"vr": "SQ", "Value": [1, None, "x"]}, "0040A370", "item 1 must be a JSON object"),
        ({"vr": "OB", "InlineBinary": "!!!notbase64"}, "00091010", "not valid base64"),
        ({"vr": "DA", "Value": ["2024-13-45"]}, "00100030", "2024-13-45"),
        ({"vr": "DA", "Value": ["Doe^Jane"]}, "00100010", 'VR is "PN"'),
        ({"vr": "US", "Value": ["12"]}, "00280010", "US holds integers"),
        ({"vr": "US", "Value": [70000]}, "00280010", "outside the range"),
        ({"vr": "IS", "Value": ["three"]}, "00200013", "three"),
        ({"vr": "DS", "Value": [True]}, "00181050", "DS holds numbers"),
        ({"vr": "PN", "Value": ["Doe^Jane"]}, "00100010", "person name object"),
        ({"vr": "PN", "Value": [{"Given": "Jane"}]}, "00100010", '"Given"'),
        ({"vr": "UI", "Value": ["not a uid"]}, "00080018", "not a uid"),
        ({"vr": "AT", "Value": ["0010"]}, "00209165", "8 hexadecimal digits"),
        ({"vr": "OB", "Value": [1, 2]}, "00091010", "InlineBinary"),
        ({"vr": "LO", "InlineBinary": "AAEC"}, "00100020", "InlineBinary is for binary VRs"),
        ({"vr": "OB", "BulkDataURI": "file:///etc/passwd"}, "00091010", "BulkDataURI is not"),
        ({"vr": "LO", "Value": ["a"], "Extra": 1}, "00100020", '"Extra"'),
        ({"vr": "LO", "Value": ["a"], "InlineBinary": "AA=="}, "00100020", "both"),
        ({"vr": "UL", "Value": [4]}, "00020000", "file meta"),
        ({"vr": "UL", "Value": [4]}, "00000000", "command"),
        ("not an object", "00100020", "must be a JSON object"),
    ],
)
def test_malformed_elements_are_refused_naming_the_attribute(
    element: Any, tag: str, named: str
) -> None:
    problem = received_dataset_problem({**WELL_FORMED, tag: element})
    assert problem is not None
    assert problem.startswith(f"({tag[:4]},{tag[4:]})"), problem
    assert named in problem, problem


def test_a_problem_inside_a_sequence_names_its_path() -> None:
    nested = {
        "0040A370": {
            "vr": "SQ",
            "Value": [{}, {"00080050": {"vr": "SH", "Value": [5]}}],
        }
    }
    problem = received_dataset_problem(nested)
    assert problem is not None
    assert problem.startswith("(0040,A370) ReferencedRequestSequence item 2 > (0008,0050)")
    assert "SH holds JSON strings" in problem


def test_a_key_that_is_no_tag_is_refused() -> None:
    assert "not a tag of 8 hexadecimal digits" in str(received_dataset_problem({"PatientName": {}}))


def test_bulk_data_uris_pass_where_the_caller_takes_them() -> None:
    dataset = {"00091010": {"vr": "OB", "BulkDataURI": "https://host/bulk/1"}}
    assert received_dataset_problem(dataset, bulk_data=True) is None


def test_what_pydicom_also_reads_passes_wrapped_base64_and_un() -> None:
    """From the review: pydicom reads base64 wrapped over lines, and any attribute as UN."""
    wrapped = {"00091010": {"vr": "OB", "InlineBinary": "AAEC\r\nAwQF"}}
    assert received_dataset_problem(wrapped) is None
    assert received_dataset_problem({"00100010": {"vr": "UN", "InlineBinary": "AAEC"}}) is None


def test_private_attributes_may_carry_any_vr() -> None:
    assert received_dataset_problem({"00091012": {"vr": "DA", "Value": ["20240101"]}}) is None


@settings(max_examples=60, deadline=None)
@given(
    name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ^ ", min_size=1, max_size=20),
    ids=st.lists(st.from_regex(r"[A-Z0-9]{1,16}", fullmatch=True), min_size=1, max_size=3),
    rows=st.integers(min_value=1, max_value=65535),
    number=st.integers(min_value=-(2**31), max_value=2**31 - 1),
)
def test_what_pydicom_writes_as_dicom_json_passes(
    name: str, ids: list[str], rows: int, number: int
) -> None:
    """A dataset pydicom writes (as clients such as dicomweb-client send it) is never refused."""
    ds: Dataset = make_dataset(PatientName=name.strip(" ") or "X", rows=16, columns=16)
    ds.OtherPatientIDs = ids
    ds.Rows = rows
    ds.InstanceNumber = number
    del ds.PixelData
    document = ds.to_json_dict()
    assert received_dataset_problem(document) is None, document
