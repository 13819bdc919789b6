"""Back doors into the azure backend's stores, for tests: raw Blob listings, raw Cosmos queries,
raw queue peeks. Tests check what the adapters wrote through these, not only through the ports.

Synchronous SDK clients, so that both the synchronous end-to-end tests and the async contract
tests (through ``asyncio.to_thread``) can use them.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from urllib3.exceptions import InsecureRequestWarning

from dicom_core.settings import AzureSettings


@dataclass(frozen=True)
class RemoteFile:
    """A stored blob, shaped like the ``Path`` objects the local backend's tests look at.

    ``open(remote_file)`` works too: the blob is downloaded to a temporary file first.
    """

    key: str
    size: int
    settings: AzureSettings | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def stat(self) -> os.stat_result:
        return types.SimpleNamespace(st_size=self.size)  # type: ignore[return-value]

    def __fspath__(self) -> str:
        from azure.storage.blob import BlobServiceClient

        assert self.settings is not None and self.settings.storage_connection
        handle, path = tempfile.mkstemp(prefix="blob-", suffix=".dcm")
        atexit.register(lambda: os.path.exists(path) and os.unlink(path))
        with (
            BlobServiceClient.from_connection_string(self.settings.storage_connection) as service,
            os.fdopen(handle, "wb") as out,
        ):
            blob = service.get_blob_client(self.settings.blob_container, self.key)
            blob.download_blob(max_concurrency=4).readinto(out)
        return path


def blob_files(settings: AzureSettings) -> list[RemoteFile]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    assert settings.storage_connection
    with BlobServiceClient.from_connection_string(settings.storage_connection) as service:
        container = service.get_container_client(settings.blob_container)
        try:
            return sorted(
                (
                    RemoteFile(blob.name, int(blob.size), settings)
                    for blob in container.list_blobs()
                ),
                key=lambda f: f.key,
            )
        except ResourceNotFoundError:
            return []


def cosmos_query(
    settings: AzureSettings,
    sql: str,
    parameters: dict[str, object] | None = None,
    *,
    container: str | None = None,
) -> list[dict[str, Any]]:
    """A raw cross-partition query on the index container (or ``container``)."""
    from dicom_core.storage.azure.clients import parse_connection_string

    assert settings.cosmos_connection
    parts = parse_connection_string(settings.cosmos_connection)
    with warnings.catch_warnings():
        # The emulator's certificate is self-signed; the SDK skips verification for loopback.
        warnings.simplefilter("ignore", InsecureRequestWarning)
        return _query(parts, settings, sql, parameters, container)


def _query(
    parts: dict[str, str],
    settings: AzureSettings,
    sql: str,
    parameters: dict[str, object] | None,
    container: str | None,
) -> list[dict[str, Any]]:
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    with _cosmos_client(parts) as client:
        target = client.get_database_client(settings.cosmos_database).get_container_client(
            container or settings.cosmos_index_container
        )
        params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
        try:
            return [
                dict(item)
                for item in target.query_items(
                    sql, parameters=params, enable_cross_partition_query=True
                )
            ]
        except CosmosResourceNotFoundError:
            return []


@contextlib.contextmanager
def _cosmos_client(parts: dict[str, str]) -> Iterator[Any]:
    """A sync Cosmos client whose connections are closed however the call ends.

    The client owns an HTTP session it opens in its constructor, which reads the account: when
    that fails (an outage test stopped the server) there is no client to close, and the
    session's TLS socket was left for the garbage collector, which then warned in whatever
    test happened to run. Our own session is closed in every case.
    """
    import requests
    from azure.core.pipeline.transport import RequestsTransport
    from azure.cosmos import CosmosClient

    session = requests.Session()
    try:
        client = CosmosClient(
            parts["accountendpoint"],
            credential=parts["accountkey"],
            enable_endpoint_discovery=False,
            transport=RequestsTransport(session=session, session_owner=False),
        )
        try:
            yield client
        finally:
            client.close()
    finally:
        session.close()


def queue_peek(settings: AzureSettings, queue: str) -> list[str]:
    """The raw texts of the visible messages of a queue, not decoded (at most 32)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    assert settings.storage_connection
    with QueueClient.from_connection_string(settings.storage_connection, queue) as client:
        try:
            return [str(m.content) for m in client.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []


def cosmos_upsert(settings: AzureSettings, document: dict[str, Any]) -> None:
    """Write a raw document into the index container (to fake what a crash leaves behind)."""
    from dicom_core.storage.azure.clients import parse_connection_string

    assert settings.cosmos_connection
    parts = parse_connection_string(settings.cosmos_connection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        with _cosmos_client(parts) as client:
            client.get_database_client(settings.cosmos_database).get_container_client(
                settings.cosmos_index_container
            ).upsert_item(document)


def cosmos_drop_database(settings: AzureSettings) -> None:
    """Delete the Cosmos database of ``settings`` with everything in it, if it exists."""
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    from dicom_core.storage.azure.clients import parse_connection_string

    assert settings.cosmos_connection
    parts = parse_connection_string(settings.cosmos_connection)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        with _cosmos_client(parts) as client, contextlib.suppress(CosmosResourceNotFoundError):
            client.delete_database(settings.cosmos_database)


def blob_put(settings: AzureSettings, key: str, data: bytes) -> None:
    from azure.storage.blob import BlobServiceClient

    assert settings.storage_connection
    from azure.core.exceptions import ResourceExistsError

    with BlobServiceClient.from_connection_string(settings.storage_connection) as service:
        with contextlib.suppress(ResourceExistsError):
            service.create_container(settings.blob_container)
        service.get_blob_client(settings.blob_container, key).upload_blob(data, overwrite=True)
