"""Helpers for the UPS-RS end-to-end tests: workitem datasets and the requests they send.

The server is shared by the session, so every workitem gets fresh UIDs and a fresh PatientID,
and searches are scoped by that PatientID.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from pydicom.uid import generate_uid

DICOM_JSON = "application/dicom+json"
HEADERS = {"Content-Type": DICOM_JSON, "Accept": DICOM_JSON}
TRANSACTION_UID = "00081195"
STATE = "00741000"


def unique(prefix: str = "P") -> str:
    return f"{prefix[:5]}-{uuid.uuid4().hex[:10]}"


def element(vr: str, *values: Any) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def code(value: str) -> dict[str, Any]:
    return {
        "00080100": element("SH", value),
        "00080102": element("SH", "DCM"),
        "00080104": element("LO", f"code {value}"),
    }


def workitem(
    uid: str | None = None,
    *,
    patient_id: str | None = None,
    patient_name: str = "Doe^John",
    accession: str = "ACC1",
    procedure_id: str = "RP1",
    start: str = "20260101100000",
    station: str = "STATION1",
    **extra: dict[str, Any],
) -> dict[str, Any]:
    """A dataset meeting the create requirements (PS3.4 Table CC.2.5-3, SCU column)."""
    dataset: dict[str, Any] = {
        TRANSACTION_UID: element("UI"),
        "00741200": element("CS", "MEDIUM"),
        "00741204": element("LO", "label"),
        "00404005": element("DT", start),
        "00404041": element("CS", "READY"),
        STATE: element("CS", "SCHEDULED"),
        "00100010": element("PN", {"Alphabetic": patient_name}),
        "00100020": element("LO", patient_id or unique()),
        "00100030": element("DA"),
        "00100040": element("CS", "O"),
        "0020000D": element("UI", generate_uid()),
        "0040A370": element(
            "SQ",
            {
                "00080050": element("SH", accession),
                "00401001": element("SH", procedure_id),
                "0020000D": element("UI", generate_uid()),
                # Type 2 in each item of the request (Table CC.2.5-3): present, here empty.
                "00080051": element("SQ"),  # IssuerOfAccessionNumberSequence
                "00400026": element("SQ"),  # OrderPlacerIdentifierSequence
                "00400027": element("SQ"),  # OrderFillerIdentifierSequence
                "00321060": element("LO"),  # RequestedProcedureDescription
                "00321064": element("SQ"),  # RequestedProcedureCodeSequence
            },
        ),
        "00404025": element("SQ", code(station)),
        "00404026": element("SQ", code("CLASS1")),
        "00404027": element("SQ", code("GEO1")),
        "00404018": element("SQ", code("WORK1")),
        "00404021": element("SQ"),
        "00741210": element("SQ"),
        "00400400": element("LT"),
        "00100021": element("LO"),
        "00100024": element("SQ"),
        "00101002": element("SQ"),
        "00380010": element("LO"),
        "00380014": element("SQ"),
        "00081080": element("LO"),
        "00081084": element("SQ"),
        "00741002": element("SQ"),
        "00741216": element("SQ"),
    }
    if uid is not None:
        dataset["00080018"] = element("UI", uid)
    dataset.update(extra)
    return dataset


def create(client: httpx.Client, dataset: dict[str, Any], query: str = "") -> httpx.Response:
    return client.post(f"/v2/workitems{query}", json=[dataset], headers=HEADERS)


def new_workitem(client: httpx.Client, **kwargs: Any) -> str:
    uid = generate_uid()
    response = create(client, workitem(uid, **kwargs))
    assert response.status_code == 201, response.text
    return uid


def change_state(client: httpx.Client, uid: str, state: str, lock: str | None) -> httpx.Response:
    body: dict[str, Any] = {STATE: element("CS", state)}
    if lock is not None:
        body[TRANSACTION_UID] = element("UI", lock)
    return client.put(f"/v2/workitems/{uid}/state", json=[body], headers=HEADERS)


def update(
    client: httpx.Client, uid: str, changes: dict[str, object], query: str = ""
) -> httpx.Response:
    """Update Workitem; ``query`` carries the lock (``?{transaction-uid}``) once claimed."""
    return client.post(f"/v2/workitems/{uid}{query}", json=[changes], headers=HEADERS)


def retrieve(client: httpx.Client, uid: str) -> dict[str, Any]:
    response = client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict), "one workitem is one DICOM JSON object, as Azure answers"
    return body


def state_of(client: httpx.Client, uid: str) -> str:
    return str(retrieve(client, uid)[STATE]["Value"][0])


def final_state_attributes(target: str) -> dict[str, Any]:
    """What a performer sets with Update Workitem before the workitem may become ``target``
    (COMPLETED or CANCELED): the Final State column of PS3.4 Table CC.2.5-3."""
    if target == "CANCELED":
        return {"00741002": element("SQ", {"0074100E": element("SQ", code("110514"))})}
    output = {
        "0040E020": element("CS", "DICOM"),
        "0020000D": element("UI", generate_uid()),
        "0020000E": element("UI", generate_uid()),
        "00081199": element(
            "SQ",
            {
                "00081150": element("UI", "1.2.840.10008.5.1.4.1.1.2"),
                "00081155": element("UI", generate_uid()),
            },
        ),
    }
    return {
        "00741216": element(
            "SQ",
            {
                "00404028": element("SQ", code("STATION1")),
                "00404050": element("DT", "20260101100000"),
                "00404019": element("SQ", code("WORK1")),
                "00404051": element("DT", "20260101110000"),
                "00404033": element("SQ", output),
            },
        )
    }


def finish(client: httpx.Client, uid: str, lock: str, target: str) -> httpx.Response:
    """Complete or cancel an IN PROGRESS workitem as a conforming performer does: set the
    final state attributes with Update Workitem, then change the state."""
    updated = update(client, uid, final_state_attributes(target), f"?{lock}")
    assert updated.status_code == 200, updated.text
    return change_state(client, uid, target, lock)
