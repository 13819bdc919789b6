"""The azure adapters' pure parts: settings, clients, retries, documents, the query compiler.

Everything that talks to a store is tested against the real emulators in tests/contract and
tests/e2e; these are the rules that need no server.
"""

from __future__ import annotations

import re

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError

from dicom_core.domain.model import InstanceKey
from dicom_core.errors import DependencyFailed
from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.settings import AzureSettings, Settings, SettingsError
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure.clients import StorageClients, parse_connection_string
from dicom_core.storage.azure.cosmos_change_feed import plan_sequencing
from dicom_core.storage.azure.cosmos_placement import placement_of
from dicom_core.storage.azure.cosmos_query import compile_search, element_regex_for, regex_for
from dicom_core.storage.azure.factory import build_backend
from dicom_core.storage.azure.retry import RetryPolicy, is_transient, unexpected
from dicom_core.storage.ports import StorageUnavailable

IDENTITY = {
    "DICOM_STORAGE": "azure",
    "AzureWebJobsStorage__accountName": "dicomstore",
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
    "COSMOS__accountEndpoint": "https://dicom.documents.azure.com:443/",
    "COSMOS__credential": "managedidentity",
    "COSMOS__clientId": "00000000-0000-0000-0000-000000000001",
}


def test_settings_use_the_functions_connection_names() -> None:
    azure = Settings.from_mapping(IDENTITY).azure
    assert azure.storage_account == "dicomstore"
    assert azure.storage_credential == "managedidentity"
    assert azure.cosmos_endpoint == "https://dicom.documents.azure.com:443/"
    assert (azure.cosmos_database, azure.cosmos_index_container, azure.blob_container) == (
        "dicom",
        "index",
        "dicom-files",
    )
    azure.check()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"DICOM_COSMOS_CONNECTION": "AccountEndpoint=x;AccountKey=y;"}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}, "DICOM_COSMOS_CONNECTION"),
    ],
)
def test_missing_connections_are_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        AzureSettings.from_mapping(values).check()


async def test_identity_settings_build_clients_without_keys_or_resources() -> None:
    settings = Settings.from_mapping(IDENTITY)
    backend = build_backend(settings)
    index, blobs, queue = backend.index, backend.blobs, backend.queue
    # The Cosmos stores create resources through their one session.
    session = index.session  # type: ignore[attr-defined]
    assert (session._create, blobs._create, queue._create) == (False, False, False)  # type: ignore[attr-defined]
    clients = StorageClients(settings.azure)
    try:
        assert clients.blob_service().url.startswith("https://dicomstore.blob.core.windows.net")
        assert clients.queue_service().url.startswith("https://dicomstore.queue.core.windows.net")
        assert type(clients._credential).__name__ == "ManagedIdentityCredential"
    finally:
        await clients.close()
        await backend.close()


async def test_keys_let_the_app_create_what_it_needs_unless_told_otherwise() -> None:
    keys = {
        "DICOM_STORAGE": "azure",
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DICOM_COSMOS_CONNECTION": "AccountEndpoint=https://127.0.0.1:8081/;AccountKey=a2V5;",
    }
    for extra, expected in (({}, True), ({"DICOM_AZURE_CREATE_RESOURCES": "false"}, False)):
        backend = build_backend(Settings.from_mapping({**keys, **extra}))
        index, blobs, queue = backend.index, backend.blobs, backend.queue
        session = index.session  # type: ignore[attr-defined]
        assert (session._create, blobs._create, queue._create) == (expected,) * 3  # type: ignore[attr-defined]
        await backend.close()


def test_connection_strings_keep_equals_signs_in_values() -> None:
    parts = parse_connection_string("AccountEndpoint=https://h:1/;AccountKey=abc==;")
    assert parts == {"accountendpoint": "https://h:1/", "accountkey": "abc=="}
    with pytest.raises(SettingsError):
        parse_connection_string("nonsense")


async def test_retries_transient_failures_then_answers_unavailable() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ServiceRequestError("connection refused")
        return "ok"

    assert await RetryPolicy(5, first_delay=0.01).run(flaky, "store") == "ok"
    assert calls == 3

    async def down() -> None:
        raise ServiceRequestError("connection refused")

    with pytest.raises(StorageUnavailable):
        await RetryPolicy(0.05, first_delay=0.01).run(down, "store")

    async def missing() -> None:
        raise ResourceNotFoundError("no such blob")

    with pytest.raises(ResourceNotFoundError):  # not transient: the caller decides
        await RetryPolicy(5).run(missing, "store")


def test_which_errors_are_transient_and_what_the_rest_become() -> None:
    throttled = HttpResponseError("busy")
    throttled.status_code = 429
    forbidden = HttpResponseError("no")
    forbidden.status_code = 403
    assert is_transient(throttled) and not is_transient(forbidden)
    assert isinstance(unexpected("Cosmos DB", throttled), StorageUnavailable)
    assert isinstance(unexpected("Cosmos DB", forbidden), DependencyFailed)


def test_metadata_is_compressed_and_split_only_when_too_large() -> None:
    small = b'{"00100010": {"vr": "PN"}}' * 10
    assert docs.unpack_metadata(docs.pack_metadata(small)) == small
    assert docs.split_metadata(docs.pack_metadata(small)) == []
    packed = "x" * (docs.INLINE_METADATA_CHARS + 5)
    parts = docs.split_metadata(packed)
    assert len(parts) == 2 and "".join(parts) == packed


def test_wildcards_become_anchored_regexes_with_literals_escaped() -> None:
    assert regex_for("a*b?c") == "a.*b.c"
    assert regex_for("x[1].(y)") == r"x\[1\]\.\(y\)"
    element = element_regex_for("c*")
    assert re.search(element, docs.joined(["ct", "mr"]))
    assert not re.search(element_regex_for("c*r"), docs.joined(["ct", "mr"]))


def test_request_values_never_enter_the_query_text() -> None:
    hostile = "x' OR 1=1 --"
    query = parse_query(
        [("PatientID", hostile), ("StudyDescription", "a*b"), ("limit", "5"), ("offset", "2")],
        QueryResource.ALL_STUDIES,
        partition=1,
    )
    compiled = compile_search(query)
    assert "OR 1=1" not in compiled.sql and "a*b" not in compiled.sql
    assert "x' or 1=1 --" in compiled.parameters.values()
    assert compiled.sql.startswith("SELECT TOP @p")
    assert compiled.parameters[compiled.sql.split()[2]] == 7  # offset + limit
    assert "ORDER BY c.latestWm DESC" in compiled.sql
    assert compiled.partition is None


def test_a_study_scoped_search_is_a_single_partition_query() -> None:
    query = parse_query([], QueryResource.STUDY_SERIES, study_uid="1.2.3", partition=1)
    compiled = compile_search(query)
    assert compiled.partition == "1.2.3"
    assert "c.pk = " in compiled.sql


def test_a_data_partition_s_search_names_its_prefix_and_its_dp() -> None:
    """Outside Microsoft.Default a search is routed by the prefix [dp] of the hierarchical key
    and says c.dp too (the test server ignores the key); one study's is a full-key query."""
    query = parse_query([("PatientID", "X")], QueryResource.ALL_STUDIES, partition=7)
    compiled = compile_search(query)
    assert compiled.partition == ["7"]
    assert "c.dp = @dp" in compiled.sql and compiled.parameters["@dp"] == "7"
    scoped = parse_query([], QueryResource.STUDY_SERIES, study_uid="1.2.3", partition=7)
    compiled = compile_search(scoped)
    assert compiled.partition == ["7", "1.2.3"]
    assert "c.dp = @dp" in compiled.sql and "c.pk = " in compiled.sql


def test_microsoft_default_keeps_its_layout_and_the_others_carry_dp() -> None:
    default, other = placement_of(1), placement_of(7)
    assert (default.key("1.2"), default.scope(), default.fields()) == ("1.2", None, {})
    assert (other.key("1.2"), other.scope(), other.fields()) == (["7", "1.2"], ["7"], {"dp": "7"})
    params: dict[str, object] = {}
    assert default.where(params) is None and params == {}
    assert default.system_where(params) == "NOT IS_DEFINED(c.dp)"
    assert other.study("1.2").where(params) == "c.pk = @pk AND c.dp = @dp"
    assert params == {"@pk": "1.2", "@dp": "7"}
    assert default.values_partition("1.2") == "v|1.2"
    assert other.values_partition("1.2") == "v|7|1.2"
    key = InstanceKey("1.2", "1.2.3", "1.2.3.4", partition=7)
    change = docs.pending_change_document("create", key, 5, "20260101T000000.000000Z")
    assert change["dp"] == "7" and docs.document_partition(change) == 7
    assert "dp" not in _pending("create", "1.2.3.4", 5)


# -- the change feed's sequencer (cosmos_change_feed) ----------------------------------------


def _pending(action: str, sop: str, watermark: int, study: str = "1.2") -> dict[str, object]:
    key = InstanceKey(study, "1.2.3", sop, partition=1)
    return docs.pending_change_document(action, key, watermark, "20260101T000000.000000Z")


def _live(sop: str, watermark: int, current: int, etag: str) -> dict[str, object]:
    """An entry already in the feed, as the sequencer reads it."""
    return {"id": f"p|{etag}", "study": "1.2", "series": "1.2.3", "sop": sop, "wm": watermark,
            "cur": current, "seq": 1, "_etag": etag}  # fmt: skip


def test_a_delete_sorts_between_its_version_and_the_next() -> None:
    assert (
        docs.change_order("create", 5)
        < docs.change_order("delete", 5)
        < docs.change_order("create", 6)
        < docs.change_order("update", 7)
    )


def test_changes_of_one_instance_in_one_batch_end_in_the_right_states() -> None:
    changes = [
        _pending("update", "9", 20),
        _pending("delete", "9", 20),
        _pending("create", "9", 30),
        _pending("create", "8", 31),
    ]
    plan = plan_sequencing(
        changes, [_live("9", 10, 10, "e1")], {"last": 7, "_etag": "h"}, budget=100
    )
    # The last change of instance 9 (a create after its delete) sets its version on every
    # entry of the instance, as Azure does: replaced, replaced, replaced, current.
    assert [(e["seq"], e["action"], e["cur"]) for e in plan.entries] == [
        (8, "update", 30),
        (9, "delete", 30),
        (10, "create", 30),
        (11, "create", 31),
    ]
    assert [e["id"] for e in plan.entries] == [c["id"] for c in changes]
    assert [(entry["id"], current) for entry, current in plan.moves] == [("p|e1", 30)]
    assert plan.last == 11
    operations = plan.operations({"last": 7, "_etag": "h"})
    assert operations[-2] == (
        "replace",
        (
            "p|e1",
            {
                "id": "p|e1",
                "study": "1.2",
                "series": "1.2.3",
                "sop": "9",
                "wm": 10,
                "cur": 30,
                "seq": 1,
            },
        ),  # fmt: skip
        {"if_match_etag": "e1"},
    )
    assert operations[-1][0] == "replace" and operations[-1][2] == {"if_match_etag": "h"}
    assert plan.operations(None)[-1] == (
        "create",
        ({"id": "head", "pk": "changefeed", "kind": "feedhead", "last": 11},),
    )


def test_a_batch_takes_the_longest_prefix_that_fits() -> None:
    changes = [_pending("update", "9", 20), _pending("create", "8", 21)]
    live = [_live("9", 10, 10, "e1"), _live("9", 5, 10, "e2")]
    plan = plan_sequencing(changes, live, None, budget=4)  # entry, 2 moves, head
    assert plan.taken == changes[:1]
    assert {current for _, current in plan.moves} == {20}
    assert plan.entries[0]["seq"] == 1


def test_moves_that_cannot_fit_beside_the_entry_are_planned_alone() -> None:
    live = [_live("9", wm, 10, f"e{wm}") for wm in range(1, 11)]
    plan = plan_sequencing([_pending("update", "9", 20)], live, {"last": 3}, budget=5)
    assert plan.taken == [] and plan.entries == []
    assert len(plan.moves) == 10 and {current for _, current in plan.moves} == {20}
    live_after = [{**entry, "cur": 20} for entry in live]
    plan = plan_sequencing([_pending("update", "9", 20)], live_after, {"last": 3}, budget=5)
    assert [e["seq"] for e in plan.entries] == [4] and plan.moves == []
