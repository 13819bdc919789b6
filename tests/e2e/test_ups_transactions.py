"""UPS-RS create, retrieve, update, change state and request cancellation over HTTP
(conformance statement, "Worklist Service (UPS-RS)"): every state path, every lock rule and
the status codes of the spec's tables."""

from __future__ import annotations

import httpx
import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.nesting import MAX_SEQUENCE_DEPTH
from tests.support.ups import (
    DICOM_JSON,
    HEADERS,
    STATE,
    TRANSACTION_UID,
    change_state,
    code,
    create,
    element,
    final_state_attributes,
    finish,
    new_workitem,
    retrieve,
    state_of,
    update,
    workitem,
)

# -- create ------------------------------------------------------------------------------------


def test_create_with_uid_in_dataset_answers_201_with_location(client: httpx.Client) -> None:
    uid = generate_uid()
    response = create(client, workitem(uid))
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(f"/v2/workitems/{uid}")
    assert response.headers["content-location"] == response.headers["location"]
    assert response.content == b""
    stored = retrieve(client, uid)
    assert stored["00080018"]["Value"] == [uid]
    assert stored[STATE]["Value"] == ["SCHEDULED"]


@pytest.mark.parametrize("form", ["?{uid}", "?AffectedSOPInstanceUID={uid}"])
def test_create_with_uid_in_url(client: httpx.Client, form: str) -> None:
    uid = generate_uid()
    response = create(client, workitem(), form.format(uid=uid))
    assert response.status_code == 201, response.text
    assert retrieve(client, uid)["00080018"]["Value"] == [uid]


def test_create_works_on_v1(client: httpx.Client) -> None:
    uid = generate_uid()
    response = client.post("/v1/workitems", json=[workitem(uid)], headers=HEADERS)
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith(f"/v1/workitems/{uid}")


def test_create_twice_is_409(client: httpx.Client) -> None:
    uid = generate_uid()
    assert create(client, workitem(uid)).status_code == 201
    response = create(client, workitem(uid))
    assert response.status_code == 409
    assert uid in response.json()["message"]


def test_create_without_any_uid_is_400(client: httpx.Client) -> None:
    response = create(client, workitem())
    assert response.status_code == 400
    assert "UID" in response.json()["message"]


def test_create_with_differing_uids_is_400(client: httpx.Client) -> None:
    response = create(client, workitem(generate_uid()), f"?{generate_uid()}")
    assert response.status_code == 400


def test_create_with_invalid_uid_is_400(client: httpx.Client) -> None:
    assert create(client, workitem(), "?not-a-uid").status_code == 400


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"])
def test_create_with_a_subscription_uid_is_400(client: httpx.Client, uid: str) -> None:
    """A review created one: its update route is the subscriptions' (501), so it could never
    reach a final state."""
    for response in (create(client, workitem(uid)), create(client, workitem(), f"?{uid}")):
        assert response.status_code == 400, response.text
        assert "subscriptions" in response.json()["message"]
    assert client.get(f"/v2/workitems/{uid}", headers=HEADERS).status_code == 404


@pytest.mark.parametrize(
    ("tag", "keyword"),
    [
        ("00741200", "ScheduledProcedureStepPriority"),
        ("00741204", "ProcedureStepLabel"),
        ("00404005", "ScheduledProcedureStepStartDateTime"),
        ("00404041", "InputReadinessState"),
        ("00100010", "PatientName"),
        ("0040A370", "ReferencedRequestSequence"),
        (TRANSACTION_UID, "TransactionUID"),
        ("00380010", "AdmissionID"),
        ("00101002", "OtherPatientIDsSequence"),
        ("00741002", "ProcedureStepProgressInformationSequence"),
    ],
)
def test_create_missing_required_attribute_is_400(
    client: httpx.Client, tag: str, keyword: str
) -> None:
    dataset = workitem(generate_uid())
    del dataset[tag]
    response = create(client, dataset)
    assert response.status_code == 400
    assert keyword in response.json()["message"]


def test_create_type1_attribute_empty_is_400(client: httpx.Client) -> None:
    dataset = workitem(generate_uid(), **{"00741204": element("LO")})
    response = create(client, dataset)
    assert response.status_code == 400
    assert "ProcedureStepLabel" in response.json()["message"]


def test_create_with_an_empty_type_3_1_attribute_is_400(client: httpx.Client) -> None:
    """ExpectedCompletionDateTime is 3/1 on create as on update: absent, or with a value."""
    response = create(client, workitem(generate_uid(), **{"00404011": element("DT")}))
    assert response.status_code == 400
    assert "ExpectedCompletionDateTime (0040,4011) must not be empty" in response.json()["message"]
    assert (
        create(
            client, workitem(generate_uid(), **{"00404011": element("DT", "20260102")})
        ).status_code
        == 201
    )


def test_create_checks_the_items_of_its_sequences(client: httpx.Client) -> None:
    """Table CC.2.5-3 below the top level: a code needs its meaning (Azure refuses it too)."""
    station = element("SQ", {"00080100": element("SH", "ST1"), "00080102": element("SH", "L")})
    uid = generate_uid()
    response = create(client, workitem(uid, **{"00404025": station}))
    assert response.status_code == 400
    assert (
        "ScheduledStationNameCodeSequence (0040,4025) item 1 > CodeMeaning (0008,0104) is"
        " required" in response.json()["message"]
    )
    assert client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON}).status_code == 404


def test_create_reads_item_tags_in_either_case(client: httpx.Client) -> None:
    """DICOM JSON tags may be lower case, inside items too: the requirements find them, and
    the workitem is served with upper-case tags."""
    parameter = {
        "0040a040": element("CS", "TEXT"),
        "0040a043": element("SQ", code("P1")),
        "0040a160": element("UT", "slow"),
    }
    uid = generate_uid()
    response = create(client, workitem(uid, **{"00741210": element("SQ", parameter)}))
    assert response.status_code == 201, response.text
    item = retrieve(client, uid)["00741210"]["Value"][0]
    assert sorted(item) == ["0040A040", "0040A043", "0040A160"]


def test_create_type2_attribute_may_be_empty(client: httpx.Client) -> None:
    dataset = workitem(generate_uid(), **{"00100010": element("PN")})
    assert create(client, dataset).status_code == 201


def test_create_with_a_transaction_uid_value_is_400(client: httpx.Client) -> None:
    dataset = workitem(generate_uid(), **{TRANSACTION_UID: element("UI", generate_uid())})
    response = create(client, dataset)
    assert response.status_code == 400
    assert "TransactionUID (0008,1195) must be empty" in response.json()["message"]


@pytest.mark.parametrize("lock", [element("UI"), {"vr": "UI", "Value": []}])
def test_create_with_empty_transaction_uid_answers_201(
    client: httpx.Client, lock: dict[str, object]
) -> None:
    # PS3.4 Table CC.2.5-3: Transaction UID is type 2 on N-CREATE, sent empty
    uid = generate_uid()
    response = create(client, workitem(uid, **{TRANSACTION_UID: lock}))
    assert response.status_code == 201, response.text
    assert TRANSACTION_UID not in retrieve(client, uid)


def test_create_fills_the_attributes_table_cc_2_5_3_gives_the_provider(
    client: httpx.Client,
) -> None:
    # given: no state, no worklist label, a foreign SOP class and a client modification time
    uid = generate_uid()
    dataset = workitem(
        uid, **{"00080016": element("UI", "1.2.3"), "00404010": element("DT", "1999")}
    )
    del dataset[STATE]
    # when
    response = create(client, dataset)
    # then
    assert response.status_code == 201, response.text
    stored = retrieve(client, uid)
    assert stored[STATE]["Value"] == ["SCHEDULED"]
    assert stored["00741202"] == element("LO", "worklist")
    assert stored["00080016"] == element("UI", "1.2.840.10008.5.1.4.34.6.1")
    assert stored["00404010"]["vr"] == "DT"
    assert stored["00404010"]["Value"][0] > "2025"


def test_create_keeps_a_given_worklist_label(client: httpx.Client) -> None:
    uid = generate_uid()
    assert create(client, workitem(uid, **{"00741202": element("LO", "CT")})).status_code == 201
    assert retrieve(client, uid)["00741202"]["Value"] == ["CT"]


def test_create_with_empty_patient_id_is_400(client: httpx.Client) -> None:
    # 1C/2: optional, but a sent Patient ID needs a value
    response = create(client, workitem(generate_uid(), **{"00100020": element("LO")}))
    assert response.status_code == 400
    assert "PatientID (0010,0020) must not be empty" in response.json()["message"]


def test_create_in_a_state_other_than_scheduled_is_400(client: httpx.Client) -> None:
    dataset = workitem(generate_uid(), **{STATE: element("CS", "IN PROGRESS")})
    assert create(client, dataset).status_code == 400


def test_create_with_performed_information_filled_is_400(client: httpx.Client) -> None:
    performed = element("SQ", {"00404050": element("DT", "20260101100000")})
    dataset = workitem(generate_uid(), **{"00741216": performed})
    response = create(client, dataset)
    assert response.status_code == 400
    assert "must be empty" in response.json()["message"]


def test_create_with_other_content_type_is_415(client: httpx.Client) -> None:
    response = client.post(
        "/v2/workitems",
        json=[workitem(generate_uid())],
        headers={"Content-Type": "application/json+xml", "Accept": DICOM_JSON},
    )
    assert response.status_code == 415


@pytest.mark.parametrize("body", [b"not json", b"[]", b"[1]", b'{"x": 1}', b'{"00100010": 1}'])
def test_create_with_malformed_body_is_400(client: httpx.Client, body: bytes) -> None:
    response = client.post("/v2/workitems", content=body, headers=HEADERS)
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("tag", "sent", "named"),
    [
        ("00100010", {"vr": "XX", "Value": "not-a-list"}, "is not a DICOM VR"),
        ("00100010", {"vr": "PN", "Value": "not-a-list"}, '"Value" must be a JSON array'),
        ("0040A370", {"vr": "SQ", "Value": [1, None, "x"]}, "must be a JSON object"),
        ("00091010", {"vr": "OB", "InlineBinary": "!!!notbase64"}, "not valid base64"),
        ("00100030", {"vr": "DA", "Value": ["2024-13-45"]}, "2024-13-45"),
        ("00100010", {"vr": "DA", "Value": ["20240101"]}, 'VR is "PN"'),
        ("00091010", {"vr": "OB", "BulkDataURI": "file:///etc/passwd"}, "BulkDataURI"),
        ("00020010", {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]}, "file meta"),
    ],
)
def test_create_with_malformed_dicom_json_is_400_naming_the_attribute(
    client: httpx.Client, tag: str, sent: dict[str, object], named: str
) -> None:
    """Found by a fuzzing probe: these were stored as sent (201) and served back to other
    clients, whose DICOM JSON readers then failed on the workitem."""
    uid = generate_uid()
    response = create(client, {**workitem(uid), tag: sent})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert f"({tag[:4]},{tag[4:]})" in message and named in message, message
    assert client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON}).status_code == 404


def test_a_transaction_uid_that_is_no_uid_is_400(client: httpx.Client) -> None:
    """The lock is a UI: a probe claimed workitems with 'not a uid' and 5,000 characters."""
    uid = new_workitem(client)
    for lock in ["not a uid", "1" * 5000, "a/b?c&d=e#f"]:
        response = change_state(client, uid, "IN PROGRESS", lock)
        assert response.status_code == 400, (lock, response.text)
        assert "Transaction" in response.json()["message"], response.text
    assert state_of(client, uid) == "SCHEDULED"
    lock = generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    response = update(client, uid, {"00741204": element("LO", "x")}, "?transaction=not%20a%20uid")
    assert response.status_code == 400
    assert "Transaction UID" in response.json()["message"]


def nested_workitem_body(uid: str, depth: int) -> bytes:
    """A create body whose InputInformationSequence nests ``depth`` sequence levels.

    Written as text, iteratively: JSON encoders recurse per level and stop long before 1,000.
    """
    opening = b'{"0040A730":{"vr":"SQ","Value":['
    leaf = b'{"00080104":{"vr":"LO","Value":["leaf"]}}'
    inner = opening * (depth - 1) + leaf + b"]}}" * (depth - 1)
    # The outer item is a referenced instance as Table CC.2.5-2c requires one.
    reference = orjson.dumps(
        {
            "0040E020": element("CS", "DICOM"),
            "00081199": element(
                "SQ",
                {
                    "00081150": element("UI", "1.2.840.10008.5.1.4.1.1.2"),
                    "00081155": element("UI", generate_uid()),
                },
            ),
        }
    )
    inner = reference[:-1] + b"," + inner[1:]
    base = orjson.dumps([workitem(uid, **{"00404021": element("SQ")})])
    marker = b'"00404021":{"vr":"SQ"}'
    assert marker in base
    return base.replace(marker, b'"00404021":{"vr":"SQ","Value":[' + inner + b"]}")


@pytest.mark.parametrize("depth", [10, MAX_SEQUENCE_DEPTH])
def test_create_with_nested_sequences_within_limit_is_stored_and_served(
    client: httpx.Client, depth: int
) -> None:
    uid = generate_uid()
    response = client.post(
        "/v2/workitems", content=nested_workitem_body(uid, depth), headers=HEADERS
    )
    assert response.status_code == 201, response.text
    item = retrieve(client, uid)["00404021"]["Value"][0]
    levels = 1
    while "0040A730" in item:
        item = item["0040A730"]["Value"][0]
        levels += 1
    assert levels == depth
    assert item == {"00080104": {"vr": "LO", "Value": ["leaf"]}}


@pytest.mark.parametrize("depth", [MAX_SEQUENCE_DEPTH + 1, 100, 1000])
def test_create_with_nested_sequences_past_limit_is_400_with_a_reason(
    client: httpx.Client, depth: int
) -> None:
    uid = generate_uid()
    response = client.post(
        "/v2/workitems", content=nested_workitem_body(uid, depth), headers=HEADERS
    )
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert f"nest more than {MAX_SEQUENCE_DEPTH} levels deep" in message
    assert client.get(f"/v2/workitems/{uid}", headers={"Accept": DICOM_JSON}).status_code == 404


# -- retrieve ----------------------------------------------------------------------------------


def test_retrieve_unknown_workitem_is_404(client: httpx.Client) -> None:
    response = client.get(f"/v2/workitems/{generate_uid()}", headers={"Accept": DICOM_JSON})
    assert response.status_code == 404


def test_retrieve_with_invalid_uid_is_400(client: httpx.Client) -> None:
    response = client.get("/v2/workitems/not-a-uid", headers={"Accept": DICOM_JSON})
    assert response.status_code == 400


def test_retrieve_never_returns_the_transaction_uid(client: httpx.Client) -> None:
    uid = new_workitem(client)
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
    stored = retrieve(client, uid)
    assert TRANSACTION_UID not in stored
    assert stored[STATE]["Value"] == ["IN PROGRESS"]


def test_retrieve_with_unacceptable_accept_is_406(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = client.get(f"/v2/workitems/{uid}", headers={"Accept": "application/dicom"})
    assert response.status_code == 406


# -- update ------------------------------------------------------------------------------------


def test_update_scheduled_workitem_without_lock(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = update(client, uid, {"00741204": element("LO", "relabelled")})
    assert response.status_code == 200, response.text
    assert response.headers["content-location"].endswith(f"/v2/workitems/{uid}")
    assert retrieve(client, uid)["00741204"]["Value"] == ["relabelled"]


def test_update_scheduled_workitem_with_a_transaction_uid_is_400(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = update(client, uid, {"00741204": element("LO", "x")}, f"?{generate_uid()}")
    assert response.status_code == 400


@pytest.mark.parametrize("form", ["?{lock}", "?transaction={lock}"])
def test_update_in_progress_workitem_with_its_lock(client: httpx.Client, form: str) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    response = update(client, uid, {"00741204": element("LO", "mine")}, form.format(lock=lock))
    assert response.status_code == 200, response.text
    assert retrieve(client, uid)["00741204"]["Value"] == ["mine"]


def test_update_in_progress_workitem_without_or_with_wrong_lock_is_400(
    client: httpx.Client,
) -> None:
    uid = new_workitem(client)
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
    changes = {"00741204": element("LO", "thief")}
    for refused in (
        update(client, uid, changes),
        update(client, uid, changes, f"?{generate_uid()}"),
    ):
        assert refused.status_code == 400
        # PS3.18 11.6.3.2: the reason in a Warning header too, as Azure's controller sets it.
        assert refused.headers["warning"] == f'299 - "{refused.json()["message"]}"'
        assert "content-location" not in refused.headers
    assert retrieve(client, uid)["00741204"]["Value"] == ["label"]


@pytest.mark.parametrize("final", ["COMPLETED", "CANCELED"])
def test_update_final_workitem_is_400(client: httpx.Client, final: str) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    assert finish(client, uid, lock, final).status_code == 200
    response = update(client, uid, {"00741204": element("LO", "late")}, f"?{lock}")
    assert response.status_code == 400


@pytest.mark.parametrize("tag", [STATE, TRANSACTION_UID, "00080018", "00080016"])
def test_update_of_a_forbidden_attribute_is_400(client: httpx.Client, tag: str) -> None:
    uid = new_workitem(client)
    vr = "CS" if tag == STATE else "UI"
    value = "COMPLETED" if tag == STATE else generate_uid()
    response = update(client, uid, {tag: element(vr, value)})
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("tag", "keyword"),
    [("00100010", "PatientName"), ("00100020", "PatientID"), ("00380010", "AdmissionID")],
)
def test_update_of_the_patient_is_400(client: httpx.Client, tag: str, keyword: str) -> None:
    # the UPS Relationship Module is "not allowed" on N-SET
    uid = new_workitem(client)
    value = {"Alphabetic": "Other^Name"} if tag == "00100010" else "X"
    response = update(client, uid, {tag: element("PN" if tag == "00100010" else "LO", value)})
    assert response.status_code == 400
    assert f"{keyword} ({tag[:4]},{tag[4:]}) must not be present" in response.json()["message"]
    assert retrieve(client, uid)[tag] != element("LO", "X")


def test_update_checks_the_items_of_its_sequences(client: httpx.Client) -> None:
    """A contact in the progress information needs its URI (Table CC.2.5-3 on N-SET)."""
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    contact = element("SQ", {"0074100C": element("LO", "Ward 3")})
    response = update(client, uid, {"00741002": element("SQ", {"00741008": contact})}, f"?{lock}")
    assert response.status_code == 400
    assert "ContactURI (0074,100A) is required" in response.headers["warning"]
    contact["Value"][0]["0074100A"] = element("UR", "tel:+15551234")
    response = update(client, uid, {"00741002": element("SQ", {"00741008": contact})}, f"?{lock}")
    assert response.status_code == 200, response.text


def test_update_sets_the_modification_datetime(client: httpx.Client) -> None:
    uid = new_workitem(client)
    changes = {"00741204": element("LO", "new"), "00404010": element("DT", "19990101")}
    assert update(client, uid, changes).status_code == 200
    assert retrieve(client, uid)["00404010"]["Value"][0] > "2025"


def test_update_emptying_a_type1_attribute_is_400(client: httpx.Client) -> None:
    uid = new_workitem(client)
    assert update(client, uid, {"00741200": element("CS")}).status_code == 400


def test_update_unknown_workitem_is_404(client: httpx.Client) -> None:
    response = update(client, generate_uid(), {"00741204": element("LO", "x")})
    assert response.status_code == 404


def test_update_with_other_content_type_is_415(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = client.post(
        f"/v2/workitems/{uid}", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


# -- change state ------------------------------------------------------------------------------


def test_claim_then_complete(client: httpx.Client) -> None:
    uid, lock = new_workitem(client), generate_uid()
    response = change_state(client, uid, "IN PROGRESS", lock)
    assert response.status_code == 200, response.text
    assert finish(client, uid, lock, "COMPLETED").status_code == 200
    assert state_of(client, uid) == "COMPLETED"


def test_claim_then_cancel(client: httpx.Client) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    assert finish(client, uid, lock, "CANCELED").status_code == 200
    assert state_of(client, uid) == "CANCELED"


def test_completing_without_the_performed_procedure_is_400_naming_it(
    client: httpx.Client,
) -> None:
    """PS3.4 Table CC.2.5-3, Final State "P": the performer records what was done first."""
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    response = change_state(client, uid, "COMPLETED", lock)
    assert response.status_code == 400
    assert (
        "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) needs a value"
        in response.json()["message"]
    )
    assert state_of(client, uid) == "IN PROGRESS"

    # An item without its end time: named, with the sequence it is in.
    performed = final_state_attributes("COMPLETED")
    del performed["00741216"]["Value"][0]["00404051"]
    assert update(client, uid, performed, f"?{lock}").status_code == 200
    response = change_state(client, uid, "COMPLETED", lock)
    assert response.status_code == 400
    assert (
        "UnifiedProcedureStepPerformedProcedureSequence (0074,1216) item 1 >"
        " PerformedProcedureStepEndDateTime (0040,4051) needs a value"
    ) in response.json()["message"]
    assert finish(client, uid, lock, "COMPLETED").status_code == 200
    assert "00741216" in retrieve(client, uid)


def test_canceling_without_a_discontinuation_reason_is_400(client: httpx.Client) -> None:
    """Final State "X": the performer gives the reason; the server records the time."""
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    response = change_state(client, uid, "CANCELED", lock)
    assert response.status_code == 400
    assert (
        "ProcedureStepDiscontinuationReasonCodeSequence (0074,100E)" in response.json()["message"]
    )
    assert state_of(client, uid) == "IN PROGRESS"
    assert finish(client, uid, lock, "CANCELED").status_code == 200
    progress = retrieve(client, uid)["00741002"]["Value"][0]
    assert progress["0074100E"]["Value"][0]["00080100"]["Value"] == ["110514"]
    assert progress["00404052"]["Value"][0] > "2025"


@pytest.mark.parametrize("target", ["COMPLETED", "CANCELED"])
def test_scheduled_cannot_skip_in_progress(client: httpx.Client, target: str) -> None:
    uid = new_workitem(client)
    refused = change_state(client, uid, target, generate_uid())
    assert refused.status_code == 400
    assert refused.headers["warning"] == f'299 - "{refused.json()["message"]}"'  # 11.7.3.2
    assert state_of(client, uid) == "SCHEDULED"


def test_claiming_an_owned_workitem_is_400(client: httpx.Client) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 400
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 400


@pytest.mark.parametrize("target", ["COMPLETED", "CANCELED"])
def test_wrong_lock_cannot_finish(client: httpx.Client, target: str) -> None:
    uid = new_workitem(client)
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
    assert change_state(client, uid, target, generate_uid()).status_code == 400
    assert state_of(client, uid) == "IN PROGRESS"


@pytest.mark.parametrize(
    "lock",
    [
        {"vr": "UI", "Value": [123]},
        {"vr": "UI", "Value": ["1.2.3", "1.2.4"]},
        {"vr": "LO", "Value": ["1.2.3"]},
        {"vr": "UI", "Value": [{"Alphabetic": "1.2.3"}]},
    ],
)
def test_a_lock_that_is_not_one_uid_string_is_400(
    client: httpx.Client, lock: dict[str, object]
) -> None:
    """A number or a second value is not taken as (part of) the lock."""
    uid = new_workitem(client)
    body = {TRANSACTION_UID: lock, STATE: element("CS", "IN PROGRESS")}
    response = client.put(f"/v2/workitems/{uid}/state", json=[body], headers=HEADERS)
    assert response.status_code == 400, response.text
    assert "TransactionUID (0008,1195)" in response.json()["message"]
    assert state_of(client, uid) == "SCHEDULED"


def test_missing_lock_is_400(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = change_state(client, uid, "IN PROGRESS", None)
    assert response.status_code == 400
    assert "TransactionUID" in response.json()["message"]


@pytest.mark.parametrize("state", ["SCHEDULED", "DONE", ""])
def test_illegal_requested_state_is_400(client: httpx.Client, state: str) -> None:
    uid = new_workitem(client)
    body = {
        STATE: element("CS", state) if state else element("CS"),
        TRANSACTION_UID: element("UI", generate_uid()),
    }
    response = client.put(f"/v2/workitems/{uid}/state", json=[body], headers=HEADERS)
    assert response.status_code == 400


@pytest.mark.parametrize("final", ["COMPLETED", "CANCELED"])
def test_same_final_state_again_is_409_with_warning(client: httpx.Client, final: str) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    assert finish(client, uid, lock, final).status_code == 200
    response = change_state(client, uid, final, lock)
    assert response.status_code == 409
    assert f"already in the requested state of {final}" in response.headers["warning"]


@pytest.mark.parametrize(
    ("final", "target"),
    [
        ("COMPLETED", "CANCELED"),
        ("COMPLETED", "IN PROGRESS"),
        ("CANCELED", "COMPLETED"),
        ("CANCELED", "IN PROGRESS"),
    ],
)
def test_final_states_are_final(client: httpx.Client, final: str, target: str) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    assert finish(client, uid, lock, final).status_code == 200
    assert change_state(client, uid, target, lock).status_code == 400
    assert state_of(client, uid) == final


def test_change_state_of_unknown_workitem_is_404(client: httpx.Client) -> None:
    assert change_state(client, generate_uid(), "IN PROGRESS", generate_uid()).status_code == 404


def test_concurrent_claims_have_one_winner(client: httpx.Client) -> None:
    from concurrent.futures import ThreadPoolExecutor

    uid = new_workitem(client)
    locks = [generate_uid() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda lock: change_state(client, uid, "IN PROGRESS", lock), locks))
    assert sorted(r.status_code for r in codes) == [200, 400, 400, 400]


# -- request cancellation ----------------------------------------------------------------------


def cancel(client: httpx.Client, uid: str, body: object = None) -> httpx.Response:
    return client.post(f"/v2/workitems/{uid}/cancelrequest", json=[body or {}], headers=HEADERS)


def test_cancel_request_on_scheduled_is_202(client: httpx.Client) -> None:
    uid = new_workitem(client)
    reason = {"00741238": element("LT", "patient left")}
    response = cancel(client, uid, reason)
    assert response.status_code == 202, response.text
    stored = retrieve(client, uid)
    assert stored[STATE]["Value"] == ["CANCELED"]
    assert stored["00741238"]["Value"] == ["patient left"]
    # Where PS3.4 Table CC.2.5-3 keeps them: the progress information.
    progress = stored["00741002"]["Value"][0]
    assert progress["00741238"]["Value"] == ["patient left"]
    assert progress["00404052"]["Value"][0] > "2025"


def test_cancel_request_on_canceled_is_409_with_warning(client: httpx.Client) -> None:
    uid = new_workitem(client)
    assert cancel(client, uid).status_code == 202
    response = cancel(client, uid)
    assert response.status_code == 409
    assert "The UPS is already in the requested state of CANCELED" in response.headers["warning"]
    assert response.headers["warning"].startswith("299")


def test_cancel_request_on_in_progress_or_completed_is_409(client: httpx.Client) -> None:
    uid, lock = new_workitem(client), generate_uid()
    assert change_state(client, uid, "IN PROGRESS", lock).status_code == 200
    response = cancel(client, uid)
    assert response.status_code == 409
    assert "warning" not in response.headers
    assert finish(client, uid, lock, "COMPLETED").status_code == 200
    assert cancel(client, uid).status_code == 409


def test_cancel_request_on_unknown_workitem_is_404(client: httpx.Client) -> None:
    assert cancel(client, generate_uid()).status_code == 404


def test_cancel_request_with_other_content_type_is_415(client: httpx.Client) -> None:
    uid = new_workitem(client)
    response = client.post(
        f"/v2/workitems/{uid}/cancelrequest", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415


# -- subscriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/workitems/{uid}/subscribers/MYAE"),
        ("DELETE", "/v2/workitems/{uid}/subscribers/MYAE"),
        ("POST", "/v2/workitems/1.2.840.10008.5.1.4.34.5/subscribers/MYAE"),
        ("POST", "/v2/workitems/1.2.840.10008.5.1.4.34.5/subscribers/MYAE/suspend"),
        # The conformance statement's "Suspend subscription" row, on the update route's path.
        ("POST", "/v2/workitems/1.2.840.10008.5.1.4.34.5/"),
        ("POST", "/v2/workitems/1.2.840.10008.5.1.4.34.5"),
        ("POST", "/v2/workitems/1.2.840.10008.5.1.4.34.5.1"),
        ("GET", "/v2/subscribers/MYAE"),
        ("GET", "/v1/subscribers/MYAE"),
    ],
)
def test_subscriptions_are_not_implemented(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path.format(uid=generate_uid()), headers=HEADERS)
    assert response.status_code == 501
    assert "not implemented" in response.json()["message"]
