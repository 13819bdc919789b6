"""The blob export sink: an export to a Blob Storage container, Azure's destination.

Whichever storage backend the app runs on, an export to ``azureblob`` goes through here (the
composition root imports this module only when a request names such a destination). The
container is reached as the request says:

- ``connectionString`` and ``blobContainerName``: keys or a SAS in the connection string
  (Azurite in the tests and on laptops);
- ``blobContainerUri`` with a SAS in its query: the SAS alone;
- ``blobContainerUri`` without one: the app's own identity (``DefaultAzureCredential``, the
  managed identity named by ``AzureWebJobsStorage__credential``/``__clientId`` in Azure), which
  needs Storage Blob Data Contributor on the container. Azure asks for
  ``useManagedIdentity: true`` here; it is accepted and implied.

Instances stream from the stored file to the destination (``upload_blob`` of the reader's
chunks with the length known: 1 MiB blocks, a few in flight), so memory stays bounded
whatever their size, and a block blob is only visible once committed whole. The error log is
an append blob, ``{operation}/errors.log``, created empty when the export starts, as Azure's.
Its ``errorHref`` is the blob's URL without the query, so no SAS shows in the operation.

The destination's host must match ``DICOM_EXPORT_BLOB_HOSTS`` (by default Azure Storage's
``*.blob.core.windows.net``) and be reached over https, checked before any request leaves:
an identity-based destination is signed with the app's own token, which an arbitrary host
would otherwise receive (and a host that answered with a bearer challenge could ask for a
token of another resource); nor may a request point the server at internal addresses.
Plain http is accepted for a loopback host alone (Azurite), when that host is allowed.
"""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.identity import CredentialUnavailableError
from azure.storage.blob.aio import ContainerClient

from dicom_core.domain.export import BlobDestination, error_log_path, result_path
from dicom_core.domain.model import InstanceKey
from dicom_core.storage.azure.clients import identity_credential, quiet_sdk_logging
from dicom_core.storage.azure.retry import status_of
from dicom_core.storage.ports import ExportDestinationError

# Another party's account: a few short SDK retries, then the step fails and is retried whole.
_CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 10,
    "read_timeout": 120,
    "retry_total": 3,
    "initial_backoff": 1,
    "increment_base": 2,
    "max_single_put_size": 1 << 20,
    "max_block_size": 1 << 20,
}
_UPLOAD_CONCURRENCY = 4
# An append block takes at most 4 MiB (the service's limit before version 2022-11-02).
_APPEND_BLOCK = 4 << 20


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _check_endpoint(destination: BlobDestination, allowed: Sequence[str]) -> None:
    """Refuse a destination whose account endpoint is not an allowed host over https."""
    if destination.connection_string is not None:
        assert destination.container_name is not None
        try:
            url = ContainerClient.from_connection_string(
                destination.connection_string, destination.container_name
            ).url
        except ValueError as exc:
            raise ExportDestinationError(
                f"The destination's connection string cannot be read: {_first_line(exc)}"
            ) from exc
    else:
        assert destination.container_uri is not None
        url = destination.container_uri
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed):
        raise ExportDestinationError(
            f"The destination host '{host}' is not one this server exports to"
            f" (DICOM_EXPORT_BLOB_HOSTS: {', '.join(allowed) or 'none'})."
        )
    if parts.scheme.lower() != "https" and not (
        parts.scheme.lower() == "http" and host in _LOOPBACK
    ):
        raise ExportDestinationError(
            f"The destination must be reached over https, not {parts.scheme or 'no scheme'}."
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class BlobExportSink:
    """``ExportSink`` on one blob container."""

    def __init__(
        self,
        destination: BlobDestination,
        operation_id: str,
        *,
        identity: tuple[str | None, str | None] = (None, None),
        allowed_hosts: Sequence[str] = ("*.blob.core.windows.net",),
    ) -> None:
        quiet_sdk_logging()
        _check_endpoint(destination, allowed_hosts)
        self._operation_id = operation_id
        self._credential: AsyncTokenCredential | None = None
        try:
            if destination.connection_string is not None:
                assert destination.container_name is not None
                self._container = ContainerClient.from_connection_string(
                    destination.connection_string, destination.container_name, **_CLIENT_OPTIONS
                )
            else:
                assert destination.container_uri is not None
                if not destination.has_sas:
                    self._credential = identity_credential(*identity)
                self._container = ContainerClient.from_container_url(
                    destination.container_uri, credential=self._credential, **_CLIENT_OPTIONS
                )
        except ValueError as exc:
            # The SDK's own words name the part at fault; they never quote the secret.
            raise ExportDestinationError(
                f"The destination's blob container cannot be addressed: {_first_line(exc)}"
            ) from exc
        scheme, netloc, path, _, _ = urlsplit(self._container.url)
        self._container_url = urlunsplit((scheme, netloc, path.rstrip("/"), "", ""))

    @property
    def _where(self) -> str:
        return f"the blob container {self._container_url}"

    @property
    def error_href(self) -> str:
        return f"{self._container_url}/{error_log_path(self._operation_id)}"

    def _refused(self, exc: BaseException) -> ExportDestinationError:
        # A credential that got no token at all (no status: the storage account never answered).
        no_token = isinstance(exc, ClientAuthenticationError) and status_of(exc) is None
        if isinstance(exc, CredentialUnavailableError) or (no_token and self._credential):
            return ExportDestinationError(
                f"The server has no identity to reach {self._where} with (a managed identity"
                " in Azure, or a developer sign-in); give a SAS in blobContainerUri or a"
                f" connection string instead. {_first_line(exc)}"
            )
        if isinstance(exc, ClientAuthenticationError):
            return ExportDestinationError(
                f"The storage account refused the credentials for {self._where}: {_first_line(exc)}"
            )
        if isinstance(exc, HttpResponseError) and status_of(exc) is not None:
            return ExportDestinationError(
                f"Writing to {self._where} failed ({status_of(exc)}): {_first_line(exc)}"
            )
        return ExportDestinationError(
            f"The blob container {self._container_url} cannot be reached: {_first_line(exc)}"
        )

    async def prepare(self) -> None:
        """Creating the error log is the check: it needs no more than the permission to
        write (a SAS of ``cw``), where asking whether the container exists would need more."""
        try:
            await self._create_error_log()
        except ResourceNotFoundError as exc:
            raise ExportDestinationError(
                f"The blob container {self._container_url} does not exist."
            ) from exc
        except Exception as exc:
            raise self._refused(exc) from exc

    async def _create_error_log(self) -> None:
        log = self._container.get_blob_client(error_log_path(self._operation_id))
        # One there already (a repeated start or step) is kept as it is.
        with contextlib.suppress(ResourceExistsError):
            await log.create_append_blob(match_condition=MatchConditions.IfMissing)

    async def write_instance(
        self, key: InstanceKey, chunks: AsyncIterator[bytes], size: int
    ) -> None:
        blob = self._container.get_blob_client(result_path(self._operation_id, key))
        try:
            await blob.upload_blob(
                chunks, length=size, overwrite=True, max_concurrency=_UPLOAD_CONCURRENCY
            )
        except (ClientAuthenticationError, ResourceNotFoundError) as exc:
            raise self._refused(exc) from exc
        except HttpResponseError as exc:
            status = status_of(exc)
            if status is not None and 400 <= status < 500:
                raise self._refused(exc) from exc
            raise

    async def append_errors(self, lines: bytes) -> None:
        log = self._container.get_blob_client(error_log_path(self._operation_id))
        for start in range(0, len(lines), _APPEND_BLOCK):
            block = lines[start : start + _APPEND_BLOCK]
            try:
                await log.append_block(block)
            except ResourceNotFoundError:
                # Someone deleted the log meanwhile: start a new one.
                await self._create_error_log()
                await log.append_block(block)

    async def close(self) -> None:
        await self._container.close()
        if self._credential is not None:
            await self._credential.close()
