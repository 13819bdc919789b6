"""Export request bodies (``dicom_core.domain.export``): Azure's shape, case-insensitive
names, the file destination, and a 400 message naming each problem."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dicom_core.domain.export import (
    BlobDestination,
    DirectoryDestination,
    ExportIdentifier,
    ExportRequestError,
    error_log_line,
    parse_export_request,
    result_path,
)
from dicom_core.domain.model import InstanceKey

CONNECTION = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0;"


def body(values: Any = ("1.2.3",), destination: Any = None, **source: Any) -> bytes:
    return orjson.dumps(
        {
            "source": {"type": "identifiers", "settings": {"values": values}, **source},
            "destination": destination
            or {
                "type": "azureblob",
                "settings": {"connectionString": CONNECTION, "blobContainerName": "export"},
            },
        }
    )


def test_the_learn_example_parses_with_its_mixed_case_names() -> None:
    raw = b"""{
        "Source": {"Type": "Identifiers", "Settings": {"Values": [
            "1.2.3", "12.3/4.5.678", "123.456/7.8/9.1011.12"]}},
        "destination": {"type": "AzureBlob", "settings": {
            "blobContainerUri": "https://dicomexport.blob.core.windows.net/export",
            "UseManagedIdentity": true}}}"""
    request = parse_export_request(raw)
    assert request.identifiers == (
        ExportIdentifier("1.2.3"),
        ExportIdentifier("12.3", "4.5.678"),
        ExportIdentifier("123.456", "7.8", "9.1011.12"),
    )
    assert [i.level for i in request.identifiers] == ["study", "series", "instance"]
    assert request.destination == BlobDestination(
        container_uri="https://dicomexport.blob.core.windows.net/export",
        use_managed_identity=True,
    )
    assert not request.destination.has_sas
    assert parse_export_request(request.to_body()) == request


def test_a_connection_string_destination_keeps_its_secret_out_of_repr() -> None:
    request = parse_export_request(body())
    assert request.destination == BlobDestination(
        connection_string=CONNECTION, container_name="export"
    )
    assert "c2VjcmV0" not in repr(request)
    assert parse_export_request(request.to_body()) == request


def test_a_sas_uri_is_recognised() -> None:
    uri = "https://acct.blob.core.windows.net/export?sv=2022-11-02&sp=cw&sig=abc%3D"
    destination = {"type": "azureblob", "settings": {"blobContainerUri": uri}}
    parsed = parse_export_request(body(destination=destination)).destination
    assert isinstance(parsed, BlobDestination) and parsed.has_sas


def test_a_file_destination_names_an_absolute_directory() -> None:
    destination = {"type": "file", "settings": {"uri": "file:///srv/exports/My%20Dir"}}
    request = parse_export_request(body(destination=destination))
    assert request.destination == DirectoryDestination(
        uri="file:///srv/exports/My%20Dir", path="/srv/exports/My Dir"
    )
    assert parse_export_request(request.to_body()) == request


def blob(**settings: Any) -> dict[str, Any]:
    return {"type": "azureblob", "settings": settings}


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b"[]", "JSON object"),
        (b"{", "not valid JSON"),
        (orjson.dumps({"destination": blob(blobContainerUri="https://a.b/c")}), "'source'"),
        (orjson.dumps({"sources": {}, "destination": {}}), "'source'"),
        (body(values=[]), "non-empty list"),
        (body(values="1.2.3"), "non-empty list"),
        (body(values=[3]), "string"),
        (body(values=["1.2/3.4/5.6/7.8"]), "1.2/3.4/5.6/7.8"),
        (body(values=["1.2//5.6"]), "1.2//5.6"),
        (body(values=["1.2/../5.6"]), "1.2/../5.6"),
        (body(values=["1.2 3"]), "1.2 3"),
        (body(values=["1.2.3", "x" * 65]), "64"),
        (body(type="query"), "identifiers"),
        (body(destination={"type": "s3", "settings": {}}), "'s3'"),
        (body(destination={"type": "azureblob"}), "'settings'"),
        (body(destination=blob()), "blobContainerUri"),
        (body(destination=blob(connectionString=CONNECTION)), "blobContainerName"),
        (
            body(
                destination=blob(
                    blobContainerUri="https://a.blob.core.windows.net/c",
                    connectionString=CONNECTION,
                )
            ),
            "either",
        ),
        (body(destination=blob(blobContainerUri="ftp://a/c")), "https://"),
        (body(destination=blob(blobContainerUri="https://a.blob.core.windows.net")), "container"),
        (body(destination=blob(blobContainerUri="file:///tmp/x")), "'file'"),
        (
            body(destination=blob(connectionString=CONNECTION, blobContainerName="Bad_Name")),
            "Bad_Name",
        ),
        (
            body(destination=blob(blobContainerUri="https://a.b/c", useManagedIdentity="yes")),
            "useManagedIdentity",
        ),
        (body(destination={"type": "file", "settings": {}}), "'uri'"),
        (body(destination={"type": "file", "settings": {"uri": "/tmp/x"}}), "file:///"),
        (body(destination={"type": "file", "settings": {"uri": "file://host/x"}}), "file:///"),
        (
            orjson.dumps({"source": {}, "Source": {}, "destination": {}}),
            "more than once",
        ),
    ],
)
def test_a_bad_request_is_refused_naming_the_problem(raw: bytes, named: str) -> None:
    with pytest.raises(ExportRequestError) as refused:
        parse_export_request(raw)
    assert named.lower() in str(refused.value).lower()


def test_files_are_laid_out_as_azure_lays_them_out() -> None:
    key = InstanceKey("1.2", "3.4", "5.6", partition=1)
    assert result_path("abc", key) == "abc/results/1.2/3.4/5.6.dcm"
    line = error_log_line(
        "1.2/3.4", "The specified series cannot be found.", "2026-01-02T03:04:05Z"
    )
    assert line.endswith(b"\n")
    assert orjson.loads(line) == {
        "Timestamp": "2026-01-02T03:04:05Z",
        "Identifier": "1.2/3.4",
        "Error": "The specified series cannot be found.",
    }
