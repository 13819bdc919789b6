"""UPS-RS Search Workitems over HTTP (conformance statement, "Search Workitems"): each
searchable attribute, exact, range, fuzzy and wildcard matching, sequence paths, includefield,
limit and offset, 204, and the 400s for what cannot be searched. Every test scopes its searches
by a PatientID no other test uses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.support.ups import (
    DICOM_JSON,
    STATE,
    TRANSACTION_UID,
    change_state,
    new_workitem,
    unique,
)


def search(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/v2/workitems?{query}", headers={"Accept": DICOM_JSON})
    if response.status_code == 204:
        return []
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(DICOM_JSON)
    return list(response.json())


def uids(results: list[dict[str, Any]]) -> set[str]:
    return {str(item["00080018"]["Value"][0]) for item in results}


@pytest.fixture()
def worklist(client: httpx.Client) -> tuple[str, dict[str, str]]:
    """Three workitems of one patient, differing in every searchable attribute."""
    patient = unique()
    made = {
        "a": new_workitem(
            client,
            patient_id=patient,
            patient_name="Müller^Johann",
            accession="ACC-100",
            procedure_id="RP-7",
            start="20260105083000",
            station="CT1",
        ),
        "b": new_workitem(
            client,
            patient_id=patient,
            patient_name="Doe^Jane",
            accession="ACC-200",
            procedure_id="RP-8",
            start="20260110120000",
            station="MR1",
        ),
        "c": new_workitem(
            client,
            patient_id=patient,
            patient_name="Smith^Anna",
            accession="XYZ-1",
            procedure_id="QQ-1",
            start="20260201000000",
            station="CT22",
        ),
    }
    return patient, made


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("PatientName=Müller^Johann", "a"),
        ("PatientName=muller^johann", "a"),
        ("00100010=DOE^JANE", "b"),
        ("ReferencedRequestSequence.AccessionNumber=ACC-200", "b"),
        ("0040A370.00080050=acc-100", "a"),
        ("ReferencedRequestSequence.RequestedProcedureID=QQ-1", "c"),
        ("0040A370.00401001=RP-7", "a"),
        ("ScheduledStationNameCodeSequence.CodeValue=MR1", "b"),
        ("00404025.00080100=CT22", "c"),
        ("ScheduledProcedureStepStartDateTime=20260105083000", "a"),
        ("ScheduledProcedureStepStartDateTime=20260105", "a"),
        ("ScheduledProcedureStepStartDateTime=20260106-20260131", "b"),
        ("ScheduledProcedureStepStartDateTime=20260111-", "c"),
        ("ScheduledProcedureStepStartDateTime=-20260105235959", "a"),
        ("ReferencedRequestSequence.AccessionNumber=ACC-1*", "a"),
        ("ReferencedRequestSequence.AccessionNumber=XYZ-?", "c"),
        ("ScheduledStationNameCodeSequence.CodeValue=CT?", "a"),
        ("ReferencedRequestSequence.RequestedProcedureID=*8", "b"),
    ],
)
def test_matching(
    client: httpx.Client, worklist: tuple[str, dict[str, str]], query: str, expected: str
) -> None:
    patient, made = worklist
    assert uids(search(client, f"PatientID={patient}&{query}")) == {made[expected]}


def test_wildcard_star_matches_several(
    client: httpx.Client, worklist: tuple[str, dict[str, str]]
) -> None:
    patient, made = worklist
    found = search(client, f"PatientID={patient}&0040A370.00080050=ACC*")
    assert uids(found) == {made["a"], made["b"]}
    assert uids(search(client, f"PatientID={patient[:-2]}??")) == set(made.values())
    assert uids(search(client, f"PatientID={patient[:4]}*")) >= set(made.values())


def test_fuzzy_patient_name(client: httpx.Client, worklist: tuple[str, dict[str, str]]) -> None:
    patient, made = worklist
    scope = f"PatientID={patient}&fuzzymatching=true"
    assert uids(search(client, f"{scope}&PatientName=joh")) == {made["a"]}
    assert uids(search(client, f"{scope}&PatientName=mul jo")) == {made["a"]}
    assert uids(search(client, f"{scope}&PatientName=an")) == {made["c"]}
    assert search(client, f"{scope}&PatientName=ohann") == []
    assert search(client, f"PatientID={patient}&PatientName=joh") == []


def test_state_and_study_uid(client: httpx.Client, worklist: tuple[str, dict[str, str]]) -> None:
    patient, made = worklist
    assert change_state(client, made["b"], "IN PROGRESS", generate_uid()).status_code == 200
    assert uids(search(client, f"PatientID={patient}&ProcedureStepState=IN PROGRESS")) == {
        made["b"]
    }
    assert uids(search(client, f"PatientID={patient}&ProcedureStepState=SCHED*")) == {
        made["a"],
        made["c"],
    }
    study = search(client, f"PatientID={patient}&PatientName=Smith^Anna")[0]["0020000D"]
    found = search(client, f"StudyInstanceUID={study['Value'][0]}")
    assert uids(found) == {made["c"]}


def test_results_never_carry_the_transaction_uid(
    client: httpx.Client, worklist: tuple[str, dict[str, str]]
) -> None:
    patient, made = worklist
    assert change_state(client, made["a"], "IN PROGRESS", generate_uid()).status_code == 200
    for query in (f"PatientID={patient}", f"PatientID={patient}&includefield=all"):
        for item in search(client, query):
            assert TRANSACTION_UID not in item
            assert item[STATE]["Value"][0] in {"SCHEDULED", "IN PROGRESS"}


def test_includefield(client: httpx.Client, worklist: tuple[str, dict[str, str]]) -> None:
    patient, _ = worklist
    plain = search(client, f"PatientID={patient}")[0]
    # Azure's default set: the patient's demographics and the scheduling attributes, not the
    # comments or what was performed.
    assert plain["00100040"]["Value"] == ["O"]  # PatientSex
    assert {"00100010", "00100030", "0040A370", "00404021", "00741202"} <= plain.keys()
    assert "00400400" not in plain and "00741216" not in plain
    by_tag = search(client, f"PatientID={patient}&includefield=00400400")[0]
    assert by_tag["00400400"] == {"vr": "LT"}
    by_keyword = search(
        client,
        f"PatientID={patient}&includefield="
        "CommentsOnTheScheduledProcedureStep,UnifiedProcedureStepPerformedProcedureSequence",
    )
    assert {"00400400", "00741216"} <= by_keyword[0].keys()
    everything = search(client, f"PatientID={patient}&includefield=all&includefield=PatientSex")
    assert "00741216" in everything[0]


def test_limit_offset_and_newest_first(
    client: httpx.Client, worklist: tuple[str, dict[str, str]]
) -> None:
    patient, made = worklist
    newest_first = [made["c"], made["b"], made["a"]]
    found = search(client, f"PatientID={patient}")
    assert [item["00080018"]["Value"][0] for item in found] == newest_first
    page = search(client, f"PatientID={patient}&limit=2&offset=1")
    assert [item["00080018"]["Value"][0] for item in page] == newest_first[1:]
    assert len(search(client, f"PatientID={patient}&limit=1")) == 1
    assert len(search(client, f"PatientID={patient}&limit=4000")) == 3


def test_no_match_and_offset_past_the_end_are_204(
    client: httpx.Client, worklist: tuple[str, dict[str, str]]
) -> None:
    patient, _ = worklist
    for query in (f"PatientID={patient}&offset=3", f"PatientID={unique()}"):
        response = client.get(f"/v2/workitems?{query}", headers={"Accept": DICOM_JSON})
        assert response.status_code == 204
        assert response.content == b""


def test_search_on_v1(client: httpx.Client, worklist: tuple[str, dict[str, str]]) -> None:
    patient, made = worklist
    response = client.get(f"/v1/workitems?PatientID={patient}", headers={"Accept": DICOM_JSON})
    assert response.status_code == 200
    assert len(response.json()) == len(made)


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=4001",
        "limit=abc",
        "offset=-1",
        "limit=1&limit=2",
        "PatientSex=O",
        "StudyDescription=x",
        "NotAKeyword=1",
        "ReferencedRequestSequence.PatientID=1",
        "PatientID=",
        "ScheduledProcedureStepStartDateTime=-",
        "ScheduledProcedureStepStartDateTime=2026x",
        "ScheduledProcedureStepStartDateTime=20260201-20260101",
        "fuzzymatching=maybe",
        "includefield=NotAKeyword",
        "PatientID=a&PatientID=b",
    ],
)
def test_bad_queries_are_400(client: httpx.Client, query: str) -> None:
    response = client.get(f"/v2/workitems?{query}", headers={"Accept": DICOM_JSON})
    assert response.status_code == 400, query
    assert response.json()["message"]


def test_search_with_unacceptable_accept_is_406(client: httpx.Client) -> None:
    response = client.get("/v2/workitems", headers={"Accept": "application/dicom"})
    assert response.status_code == 406
