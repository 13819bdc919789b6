"""Workitem search parsing and matching (dicom_core.query.workitems), without a server."""

from __future__ import annotations

import pytest

from dicom_core.errors import BadRequest
from dicom_core.query.conditions import RangeMatch, WildcardMatch
from dicom_core.query.workitems import (
    MAX_WORKITEM_LIMIT,
    attribute_values,
    parse_workitem_query,
    workitem_matches,
)

DATASET = {
    "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Hans"}]},
    "00100020": {"vr": "LO", "Value": ["PID-1"]},
    "00404005": {"vr": "DT", "Value": ["20260105083000"]},
    "0040A370": {
        "vr": "SQ",
        "Value": [
            {"00080050": {"vr": "SH", "Value": ["ACC-1"]}},
            {"00080050": {"vr": "SH", "Value": ["ACC-2"]}},
        ],
    },
}


def matches(query: str) -> bool:
    pairs = [tuple(item.split("=", 1)) for item in query.split("&")]
    parsed = parse_workitem_query(pairs, partition=1)  # type: ignore[arg-type]
    return workitem_matches(parsed, DATASET)


def test_sequence_values_come_from_every_item() -> None:
    assert attribute_values(DATASET, ("0040A370", "00080050")) == ["ACC-1", "ACC-2"]
    assert attribute_values(DATASET, ("00404025", "00080100")) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ReferencedRequestSequence.AccessionNumber=ACC-2", True),
        ("0040A370.00080050=acc-1", True),
        ("0040A370.00080050=ACC-3", False),
        ("PatientName=MULLER^HANS", True),
        ("PatientName=hans&fuzzymatching=true", True),
        ("PatientName=ans&fuzzymatching=true", False),
        ("PatientID=PID-?", True),
        ("PatientID=P*1", True),
        ("PatientID=*", True),
        ("ScheduledProcedureStepStartDateTime=20260101-20260110", True),
        ("ScheduledProcedureStepStartDateTime=20260106-", False),
        ("ProcedureStepState=SCHEDULED", False),  # absent: never matches
    ],
)
def test_matching(query: str, expected: bool) -> None:
    assert matches(query) is expected


def test_parsed_conditions_and_paging() -> None:
    query = parse_workitem_query(
        [
            ("ScheduledProcedureStepStartDateTime", "20260101-"),
            ("PatientID", "A*"),
            ("limit", str(MAX_WORKITEM_LIMIT)),
            ("offset", "5"),
            ("includefield", "00404021"),
        ],
        partition=1,
    )
    assert isinstance(query.conditions[0], RangeMatch)
    assert isinstance(query.conditions[1], WildcardMatch)
    assert (query.limit, query.offset, query.include.tags) == (4000, 5, ("00404021",))
    assert parse_workitem_query([], partition=1).limit == 100


@pytest.mark.parametrize(
    "pairs",
    [
        [("limit", "4001")],
        [("limit", "0")],
        [("PatientSex", "M")],
        [("Bogus", "1")],
        [("0040A370.Bogus", "1")],
        [("PatientID", "")],
        [("PatientID", "a"), ("00100020", "b")],
    ],
)
def test_rejections(pairs: list[tuple[str, str]]) -> None:
    with pytest.raises(BadRequest):
        parse_workitem_query(pairs, partition=1)
