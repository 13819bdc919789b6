"""Export requests (Azure's "Export DICOM files"): what to copy, and where to.

The body of ``POST /v{n}/export`` names a source and a destination, each a ``type`` with its
``settings``::

    {"source": {"type": "identifiers",
                "settings": {"values": ["<study>[/<series>[/<instance>]]", ...]}},
     "destination": {"type": "azureblob",
                     "settings": {"blobContainerUri": "https://acct.blob.core.windows.net/c"}}}

A blob destination is either ``blobContainerUri`` (with a SAS in its query, or reached with
the app's identity; ``useManagedIdentity`` is accepted) or ``connectionString`` with
``blobContainerName``. Beyond Azure, ``{"type": "file", "settings": {"uri": "file:///dir"}}``
writes to a directory on this machine (the server confines it; see the directory sink).
Property names and type names match case-insensitively, as the Azure service's JSON binding
does (its own how-to writes ``UseManagedIdentity`` next to ``blobContainerUri``).

Everything is checked here, before an operation starts: a bad request is one 400 naming the
property or value at fault. Every UID is validated before it can become a path segment of an
exported file. What is written where, and the error log's line format, are fixed here too,
so the blob and directory sinks lay files out alike (Azure's layout:
``{operation}/results/{study}/{series}/{instance}.dcm`` and ``{operation}/errors.log``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import orjson

from dicom_core.domain.identifiers import identifier_problem
from dicom_core.domain.model import InstanceKey


class ExportRequestError(ValueError):
    """The export request cannot be run as sent; the message names what is wrong."""


SOURCE_IDENTIFIERS: Final = "identifiers"
DESTINATION_AZURE_BLOB: Final = "azureblob"
DESTINATION_FILE: Final = "file"

# Azure's rules for a container name: 3-63 lower-case letters, digits and single hyphens,
# starting and ending with a letter or digit.
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class ExportIdentifier:
    """A study, a series of it, or an instance of that series: what one source value names."""

    study_uid: str
    series_uid: str | None = None
    sop_uid: str | None = None

    @property
    def level(self) -> str:
        if self.sop_uid is not None:
            return "instance"
        return "series" if self.series_uid is not None else "study"

    def __str__(self) -> str:
        return "/".join(u for u in (self.study_uid, self.series_uid, self.sop_uid) if u)

    @classmethod
    def parse(cls, value: Any) -> ExportIdentifier:
        """``"<study>[/<series>[/<instance>]]"``; every UID checked."""
        if not isinstance(value, str):
            raise ExportRequestError(
                f"Every source value must be a string of the form"
                f" '<study>[/<series>[/<instance>]]', not {orjson.dumps(value).decode()}."
            )
        parts = value.split("/")
        if not 1 <= len(parts) <= 3:
            raise ExportRequestError(
                f"The source value '{value}' is not of the form '<study>[/<series>[/<instance>]]'."
            )
        for part in parts:
            problem = identifier_problem(part)
            if problem is not None:
                raise ExportRequestError(
                    f"The source value '{value}' does not name a study, series or instance:"
                    f" {problem}."
                )
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class BlobDestination:
    """A Blob Storage container. Secrets stay out of ``repr`` (and so out of logs)."""

    container_uri: str | None = field(default=None, repr=False)
    connection_string: str | None = field(default=None, repr=False)
    container_name: str | None = None
    use_managed_identity: bool = False

    @property
    def has_sas(self) -> bool:
        """Whether the container URI carries a shared access signature (then no identity)."""
        return self.container_uri is not None and "sig=" in urlsplit(self.container_uri).query

    def to_settings(self) -> dict[str, Any]:
        if self.container_uri is not None:
            return {
                "blobContainerUri": self.container_uri,
                "useManagedIdentity": self.use_managed_identity,
            }
        return {
            "connectionString": self.connection_string,
            "blobContainerName": self.container_name,
        }


@dataclass(frozen=True, slots=True)
class DirectoryDestination:
    """A directory of this machine's file system, named by an absolute ``file://`` URI."""

    uri: str
    path: str
    """The absolute path the URI names (not yet confined: the directory sink does that)."""

    def to_settings(self) -> dict[str, Any]:
        return {"uri": self.uri}


ExportDestination = BlobDestination | DirectoryDestination


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A checked export request: the identifiers in the order given, and the destination."""

    identifiers: tuple[ExportIdentifier, ...]
    destination: ExportDestination

    def to_body(self) -> bytes:
        """The request as a request body again (what ``parse_export_request`` reads back)."""
        kind = (
            DESTINATION_FILE
            if isinstance(self.destination, DirectoryDestination)
            else DESTINATION_AZURE_BLOB
        )
        return orjson.dumps(
            {
                "source": {
                    "type": SOURCE_IDENTIFIERS,
                    "settings": {"values": [str(i) for i in self.identifiers]},
                },
                "destination": {"type": kind, "settings": self.destination.to_settings()},
            }
        )


def _field(body: dict[str, Any], name: str, where: str, *, required: bool = True) -> Any:
    """``body[name]`` matched case-insensitively; None when optional and absent."""
    found = [key for key in body if isinstance(key, str) and key.lower() == name.lower()]
    if len(found) > 1:
        raise ExportRequestError(f"The {where} has '{name}' more than once: {', '.join(found)}.")
    if not found:
        if required:
            raise ExportRequestError(f"The {where} has no '{name}'.")
        return None
    return body[found[0]]


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ExportRequestError(f"The {what} must be a JSON object.")
    return value


def _text(body: dict[str, Any], name: str, where: str) -> str | None:
    value = _field(body, name, where, required=False)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ExportRequestError(f"'{name}' of the {where} must be a string.")
    return value.strip() or None


def _typed(body: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The ``type`` (lower-cased) and ``settings`` of the request's ``source`` or
    ``destination``."""
    part = _object(_field(body, name, "request"), f"'{name}'")
    kind = _field(part, "type", f"'{name}'")
    if not isinstance(kind, str):
        raise ExportRequestError(f"The '{name}' type must be a string.")
    settings = _object(_field(part, "settings", f"'{name}'"), f"'{name}' settings")
    return kind.strip().lower(), settings


def _identifiers(kind: str, settings: dict[str, Any]) -> tuple[ExportIdentifier, ...]:
    if kind != SOURCE_IDENTIFIERS:
        raise ExportRequestError(
            f"The source type '{kind}' is not supported; use '{SOURCE_IDENTIFIERS}'."
        )
    values = _field(settings, "values", "source settings")
    if not isinstance(values, list) or not values:
        raise ExportRequestError(
            "'values' of the source settings must be a non-empty list of identifiers."
        )
    return tuple(ExportIdentifier.parse(v) for v in values)


def _blob_destination(settings: dict[str, Any]) -> BlobDestination:
    where = "destination settings"
    uri = _text(settings, "blobContainerUri", where)
    connection = _text(settings, "connectionString", where)
    container = _text(settings, "blobContainerName", where)
    managed = _field(settings, "useManagedIdentity", where, required=False)
    if managed is not None and not isinstance(managed, bool):
        raise ExportRequestError("'useManagedIdentity' of the destination must be true or false.")
    if uri is not None:
        if connection is not None or container is not None:
            raise ExportRequestError(
                "The destination has 'blobContainerUri' and 'connectionString' or"
                " 'blobContainerName': give either the container's URI, or a connection"
                " string and a container name."
            )
        parts = urlsplit(uri)
        if parts.scheme.lower() == "file":
            raise ExportRequestError(
                f"A file:// destination has the type '{DESTINATION_FILE}', with its"
                " 'uri' in the settings."
            )
        if parts.scheme.lower() not in ("https", "http") or not parts.netloc:
            raise ExportRequestError(
                "'blobContainerUri' must be the container's https:// URL"
                " (https://<account>.blob.core.windows.net/<container>)."
            )
        if not parts.path.strip("/"):
            raise ExportRequestError("'blobContainerUri' does not name a container.")
        return BlobDestination(container_uri=uri, use_managed_identity=bool(managed))
    if connection is None or container is None:
        raise ExportRequestError(
            "The destination needs 'blobContainerUri', or 'connectionString' and"
            " 'blobContainerName'."
        )
    if not _CONTAINER_NAME.match(container):
        raise ExportRequestError(
            f"'blobContainerName' '{container}' is not a container name (3-63 lower-case"
            " letters, digits and single hyphens)."
        )
    return BlobDestination(connection_string=connection, container_name=container)


def _directory_destination(settings: dict[str, Any]) -> DirectoryDestination:
    uri = _text(settings, "uri", "destination settings")
    if uri is None:
        raise ExportRequestError("The file destination needs a 'uri' (file:///<directory>).")
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise ExportRequestError(
            f"The file destination's 'uri' must be a file:///<directory> URI, not '{uri}'."
        )
    path = unquote(parts.path)
    if not path.startswith("/") or "\x00" in path:
        raise ExportRequestError(f"The file destination's 'uri' '{uri}' is not absolute.")
    return DirectoryDestination(uri=uri, path=path)


def parse_export_request(body: bytes) -> ExportRequest:
    """The checked request; ``ExportRequestError`` naming the first problem found."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ExportRequestError(f"The request body is not valid JSON: {exc}.") from exc
    request = _object(parsed, "request body")
    identifiers = _identifiers(*_typed(request, "source"))
    kind, settings = _typed(request, "destination")
    destination: ExportDestination
    if kind == DESTINATION_AZURE_BLOB:
        destination = _blob_destination(settings)
    elif kind == DESTINATION_FILE:
        destination = _directory_destination(settings)
    else:
        raise ExportRequestError(
            f"The destination type '{kind}' is not supported; use '{DESTINATION_AZURE_BLOB}'"
            f" (or '{DESTINATION_FILE}' for a directory of the server)."
        )
    return ExportRequest(identifiers, destination)


# --- What is written where ---------------------------------------------------------------

#: What the error log says of an identifier that names nothing stored (Azure's messages).
NOT_FOUND: Final = {
    "study": "The specified study cannot be found.",
    "series": "The specified series cannot be found.",
    "instance": "The specified instance cannot be found.",
}


def result_path(operation_id: str, key: InstanceKey) -> str:
    """Where an exported instance goes in the destination, '/'-separated."""
    return f"{operation_id}/results/{key.study_uid}/{key.series_uid}/{key.sop_uid}.dcm"


def error_log_path(operation_id: str) -> str:
    return f"{operation_id}/errors.log"


def error_log_line(identifier: str, message: str, timestamp: str) -> bytes:
    """One line of the error log: a JSON object with Azure's ``Timestamp``, ``Identifier``
    and ``Error``, ending in a newline."""
    entry = {"Timestamp": timestamp, "Identifier": identifier, "Error": message}
    return orjson.dumps(entry) + b"\n"
