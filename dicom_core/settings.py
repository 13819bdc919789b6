"""Settings, read once from a mapping (the environment, or a dict in tests).

Nothing reads ``os.environ`` at import time: ``Settings.from_mapping`` is called by the
composition root when the first request needs services, so tests can pass plain dicts. The
exceptions are the timers' schedules (``expiry_schedule``; the events timer's), which the
Functions host takes from the functions' metadata when it indexes the app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

GIB = 1024**3
MIB = 1024**2


class SettingsError(ValueError):
    """A setting has a value the service cannot work with; the message names the setting."""


def _int(values: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = values.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    raw = values.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _text(values: Mapping[str, str], name: str) -> str | None:
    raw = values.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


def _path(values: Mapping[str, str], name: str) -> Path | None:
    """An absolute directory path, or None when unset."""
    raw = _text(values, name)
    if raw is None:
        return None
    if not Path(raw).is_absolute():
        raise SettingsError(f"{name} must be an absolute path, got {raw!r}")
    return Path(raw)


@dataclass(frozen=True, slots=True)
class AzureSettings:
    """Where the azure backend finds Cosmos DB, Blob Storage and the job queues.

    Two ways in, as in the Functions host: a connection string (keys: the local emulators, or
    accounts that still allow shared keys), or identity-based settings (an account name or
    service URIs, plus an optional managed identity client id) that use
    ``DefaultAzureCredential``, so no secret is ever an app setting in Azure.
    """

    storage_connection: str | None = None
    storage_account: str | None = None
    blob_service_uri: str | None = None
    queue_service_uri: str | None = None
    storage_credential: str | None = None
    storage_client_id: str | None = None
    cosmos_connection: str | None = None
    cosmos_endpoint: str | None = None
    cosmos_credential: str | None = None
    cosmos_client_id: str | None = None
    cosmos_database: str = "dicom"
    cosmos_index_container: str = "index"
    cosmos_system_container: str = "system"
    cosmos_partitioned_container: str = "partitioned"
    blob_container: str = "dicom-files"
    create_resources: bool | None = None
    retry_seconds: int = 6
    timeout_seconds: int = 20
    """How long a call to Cosmos DB or Storage may wait for the service's answer (the SDKs'
    socket read timeout) before it counts as failed: a frozen service becomes a 503 in under
    a minute, inside the 230 s Azure's front end gives a request, not when it wakes."""
    blob_delete_delay_seconds: int = 600

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> AzureSettings:
        return cls(
            storage_connection=_text(values, "AzureWebJobsStorage"),
            storage_account=_text(values, "AzureWebJobsStorage__accountName"),
            blob_service_uri=_text(values, "AzureWebJobsStorage__blobServiceUri"),
            queue_service_uri=_text(values, "AzureWebJobsStorage__queueServiceUri"),
            storage_credential=_text(values, "AzureWebJobsStorage__credential"),
            storage_client_id=_text(values, "AzureWebJobsStorage__clientId"),
            cosmos_connection=_text(values, "DICOM_COSMOS_CONNECTION"),
            cosmos_endpoint=_text(values, "COSMOS__accountEndpoint"),
            cosmos_credential=_text(values, "COSMOS__credential"),
            cosmos_client_id=_text(values, "COSMOS__clientId"),
            cosmos_database=_text(values, "DICOM_COSMOS_DATABASE") or "dicom",
            cosmos_index_container=_text(values, "DICOM_COSMOS_INDEX_CONTAINER") or "index",
            cosmos_system_container=_text(values, "DICOM_COSMOS_SYSTEM_CONTAINER") or "system",
            cosmos_partitioned_container=(
                _text(values, "DICOM_COSMOS_PARTITIONED_CONTAINER") or "partitioned"
            ),
            blob_container=_text(values, "DICOM_BLOB_CONTAINER") or "dicom-files",
            create_resources=(
                _bool(values, "DICOM_AZURE_CREATE_RESOURCES", False)
                if _text(values, "DICOM_AZURE_CREATE_RESOURCES")
                else None
            ),
            retry_seconds=_int(values, "DICOM_AZURE_RETRY_SECONDS", 6, minimum=0),
            timeout_seconds=_int(values, "DICOM_AZURE_TIMEOUT_SECONDS", 20, minimum=1),
            blob_delete_delay_seconds=_int(
                values, "DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS", 600, minimum=0
            ),
        )

    def check(self) -> None:
        """Fail early, naming the settings, when the azure backend cannot be reached at all."""
        if not (
            self.storage_connection
            or self.storage_account
            or (self.blob_service_uri and self.queue_service_uri)
        ):
            raise SettingsError(
                "DICOM_STORAGE=azure needs AzureWebJobsStorage (a connection string) or"
                " AzureWebJobsStorage__accountName (or __blobServiceUri and __queueServiceUri)"
            )
        if not (self.cosmos_connection or self.cosmos_endpoint):
            raise SettingsError(
                "DICOM_STORAGE=azure needs DICOM_COSMOS_CONNECTION (a connection string) or"
                " COSMOS__accountEndpoint (identity-based)"
            )


def _list(values: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = values.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


#: How long a reservation stays held without renewal, at most (``reservation_lease_seconds``).
RESERVATION_LEASE_SECONDS = 120

#: When the study expiry sweep runs (six-field NCRONTAB, seconds first, UTC): every minute.
DEFAULT_EXPIRY_SCHEDULE = "0 * * * * *"


def expiry_schedule(values: Mapping[str, str]) -> str:
    """``DICOM_EXPIRY_SCHEDULE``: the expiry timer's NCRONTAB schedule (default every minute).

    Read when the functions are indexed rather than when services are first built: a timer's
    schedule is function metadata (``function_app.py`` says why it is not a ``%NAME%``
    expression). It never raises; the Functions host, and the local one, refuse an invalid one.
    """
    return _text(values, "DICOM_EXPIRY_SCHEDULE") or DEFAULT_EXPIRY_SCHEDULE


#: When the blob debt sweep runs: every five minutes (a debt waits five minutes' grace anyway).
DEFAULT_BLOB_DEBT_SCHEDULE = "0 */5 * * * *"


def blob_debt_schedule(values: Mapping[str, str]) -> str:
    """``DICOM_BLOB_DEBT_SCHEDULE``: the blob debt timer's NCRONTAB schedule (default every
    five minutes); read when the functions are indexed, as ``expiry_schedule`` is."""
    return _text(values, "DICOM_BLOB_DEBT_SCHEDULE") or DEFAULT_BLOB_DEBT_SCHEDULE


OWNER_ROLE = "DicomDataOwner"
READER_ROLE = "DicomDataReader"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Entra ID bearer tokens, validated the same way locally and in Azure.

    Off by default so ``make run`` needs no identity provider; when on, the audience, the
    issuer and the signing keys' URL are required, because a token checked against nothing is
    not checked at all. Lists accept several values: Entra issues v1 tokens (issuer
    ``https://sts.windows.net/{tenant}/``, audience the App ID URI) and v2 tokens (issuer
    ``https://login.microsoftonline.com/{tenant}/v2.0``, audience the client id).
    """

    enabled: bool = False
    audiences: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    jwks_url: str | None = None
    leeway_seconds: int = 60
    jwks_cache_seconds: int = 3600

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> AuthSettings:
        settings = cls(
            enabled=_bool(values, "DICOM_AUTH_ENABLED", False),
            audiences=_list(values, "DICOM_AUTH_AUDIENCE", ()),
            issuers=_list(values, "DICOM_AUTH_ISSUER", ()),
            jwks_url=_text(values, "DICOM_AUTH_JWKS_URL"),
            leeway_seconds=_int(values, "DICOM_AUTH_LEEWAY_SECONDS", 60, minimum=0),
            jwks_cache_seconds=_int(values, "DICOM_AUTH_JWKS_CACHE_SECONDS", 3600, minimum=1),
        )
        if settings.enabled:
            for name, value in (
                ("DICOM_AUTH_AUDIENCE", settings.audiences),
                ("DICOM_AUTH_ISSUER", settings.issuers),
                ("DICOM_AUTH_JWKS_URL", settings.jwks_url),
            ):
                if not value:
                    raise SettingsError(f"DICOM_AUTH_ENABLED=true needs {name}")
        if settings.jwks_url is not None:
            # Keys fetched over plain HTTP (or ftp, data:, ...) could be anyone's, and every
            # token they "verify" with them would be accepted.
            scheme = settings.jwks_url.partition(":")[0].lower()
            if scheme not in ("https", "file") or "://" not in settings.jwks_url:
                raise SettingsError(
                    "DICOM_AUTH_JWKS_URL must be an https:// (or file://) URL, "
                    f"not {settings.jwks_url!r}"
                )
        return settings


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Cross-origin access for browser viewers (OHIF) served from another origin.

    Off while no origin is configured. The default headers are the ones viewers send
    (``Accept``, ``Authorization``, ``Content-Type``); the exposed headers let a page read the
    ones DICOMweb answers carry beyond the CORS-safelisted few.
    """

    origins: tuple[str, ...] = ()
    headers: tuple[str, ...] = ("Accept", "Authorization", "Content-Type")
    methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
    expose_headers: tuple[str, ...] = (
        "Content-Length",
        "Content-Location",
        "Location",
        "Retry-After",
        "Warning",
        "WWW-Authenticate",
    )
    max_age: int = 3600
    allow_credentials: bool = False

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> CorsSettings:
        defaults = cls()
        origins = tuple(o.rstrip("/").lower() for o in _list(values, "DICOM_CORS_ORIGINS", ()))
        settings = cls(
            origins=origins,
            headers=_list(values, "DICOM_CORS_HEADERS", defaults.headers),
            methods=tuple(m.upper() for m in _list(values, "DICOM_CORS_METHODS", defaults.methods)),
            expose_headers=_list(values, "DICOM_CORS_EXPOSE_HEADERS", defaults.expose_headers),
            max_age=_int(values, "DICOM_CORS_MAX_AGE", defaults.max_age, minimum=0),
            allow_credentials=_bool(values, "DICOM_CORS_ALLOW_CREDENTIALS", False),
        )
        # Credentials with any origin would let every site act with a user's cookies.
        if settings.allow_credentials and "*" in settings.origins:
            raise SettingsError(
                "DICOM_CORS_ALLOW_CREDENTIALS=true needs a list of origins in DICOM_CORS_ORIGINS,"
                " not *"
            )
        return settings

    @property
    def enabled(self) -> bool:
        return bool(self.origins)


EVENT_DESTINATIONS = ("off", "queue", "eventgrid")
EVENT_SCHEMAS = ("eventgrid", "cloudevents")
# The event publisher's timer (function_app.py): every 10 seconds while events are on, so an
# event follows its change within seconds, as Azure's do; once a day while they are off, since
# every tick wakes a Consumption-plan app that has scaled to zero (the tick then does nothing).
EVENTS_SCHEDULE_ON = "*/10 * * * * *"
EVENTS_SCHEDULE_OFF = "0 0 0 * * *"


@dataclass(frozen=True, slots=True)
class EventSettings:
    """DICOM events (``dicom_core.jobs.events``): where they go, in which schema, named how.

    Off by default. ``queue`` sends each event as a message of a Storage queue (Azurite on a
    laptop and in the tests); its connection is named as a Functions binding names one
    (``DICOM_EVENTS_QUEUE_CONNECTION``, default ``AzureWebJobsStorage``: the setting of that
    name holds a connection string, or ``<name>__accountName``/``__queueServiceUri`` with
    ``__credential`` and ``__clientId`` an identity). ``eventgrid`` publishes to an Event Grid
    topic with the topic's access key when one is set, else with an identity
    (``DICOM_EVENTS_TOPIC__credential``, ``__clientId``), as Azure's Event Grid binding does.
    """

    destination: str = "off"
    schema: str = "eventgrid"
    queue: str = "dicom-events"
    queue_connection: AzureSettings = field(default_factory=AzureSettings)
    topic_endpoint: str | None = None
    topic_key: str | None = None
    topic_credential: str | None = None
    topic_client_id: str | None = None
    service_host: str = "localhost:7071"
    source: str = "/dicomweb/localhost:7071"
    batch_size: int = 100
    schedule: str = EVENTS_SCHEDULE_OFF

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> EventSettings:
        destination = (_text(values, "DICOM_EVENTS") or "off").lower()
        if destination not in EVENT_DESTINATIONS:
            raise SettingsError(
                f"DICOM_EVENTS must be one of {', '.join(EVENT_DESTINATIONS)}, got {destination!r}"
            )
        schema = (_text(values, "DICOM_EVENTS_SCHEMA") or "eventgrid").lower()
        if schema not in EVENT_SCHEMAS:
            raise SettingsError(
                f"DICOM_EVENTS_SCHEMA must be one of {', '.join(EVENT_SCHEMAS)}, got {schema!r}"
            )
        connection = _text(values, "DICOM_EVENTS_QUEUE_CONNECTION") or "AzureWebJobsStorage"
        # In Azure the platform names the app's host (WEBSITE_HOSTNAME); elsewhere the port.
        host = (
            _text(values, "DICOM_EVENTS_SERVICE_HOST")
            or _text(values, "WEBSITE_HOSTNAME")
            or f"localhost:{_text(values, 'PORT') or '7071'}"
        )
        on = destination != "off"
        settings = cls(
            destination=destination,
            schema=schema,
            queue=_text(values, "DICOM_EVENTS_QUEUE") or "dicom-events",
            queue_connection=AzureSettings(
                storage_connection=_text(values, connection),
                storage_account=_text(values, f"{connection}__accountName"),
                queue_service_uri=_text(values, f"{connection}__queueServiceUri"),
                storage_credential=_text(values, f"{connection}__credential"),
                storage_client_id=_text(values, f"{connection}__clientId"),
                retry_seconds=_int(values, "DICOM_AZURE_RETRY_SECONDS", 6, minimum=0),
            ),
            topic_endpoint=_text(values, "DICOM_EVENTS_TOPIC__topicEndpointUri"),
            topic_key=_text(values, "DICOM_EVENTS_TOPIC_KEY"),
            topic_credential=_text(values, "DICOM_EVENTS_TOPIC__credential"),
            topic_client_id=_text(values, "DICOM_EVENTS_TOPIC__clientId"),
            service_host=host,
            source=_text(values, "DICOM_EVENTS_SOURCE") or f"/dicomweb/{host}",
            batch_size=_int(values, "DICOM_EVENTS_BATCH_SIZE", 100, minimum=1),
            schedule=_text(values, "DICOM_EVENTS_SCHEDULE")
            or (EVENTS_SCHEDULE_ON if on else EVENTS_SCHEDULE_OFF),
        )
        if destination == "eventgrid" and not settings.topic_endpoint:
            raise SettingsError("DICOM_EVENTS=eventgrid needs DICOM_EVENTS_TOPIC__topicEndpointUri")
        if destination == "queue" and not (
            settings.queue_connection.storage_connection
            or settings.queue_connection.storage_account
            or settings.queue_connection.queue_service_uri
        ):
            raise SettingsError(
                f"DICOM_EVENTS=queue needs the storage connection {connection} (a connection"
                f" string, or {connection}__accountName or {connection}__queueServiceUri)"
            )
        return settings

    @property
    def enabled(self) -> bool:
        return self.destination != "off"


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the service reads. Documented one by one in local.settings.json.example."""

    storage: str = "local"
    data_dir: Path = Path(".data")
    max_request_bytes: int = 4 * GIB
    max_parts: int = 10_000
    """Parts one STOW request may carry (``DICOM_MAX_PARTS``); each costs a spool file and a
    parse, so tiny parts by the hundred thousand would hold a worker for minutes."""
    max_json_body_bytes: int = 4 * MIB
    max_transcode_bytes: int = 100 * MIB
    max_decoded_bytes: int = 512 * MIB
    stale_create_seconds: int = 3600
    """How long a spool file, or a reservation no store renews, may be left by an
    interrupted store (``reservation_lease_seconds``)."""
    staging_dir: Path | None = None
    reindex_batch_size: int = 100
    export_batch_size: int = 100
    export_local_root: Path | None = None
    """The directory ``file://`` export destinations must lie in; None turns them off."""
    export_blob_hosts: tuple[str, ...] = ("*.blob.core.windows.net",)
    """Host patterns (fnmatch) a blob export destination may name. The app's identity signs
    requests to identity-based destinations, so an arbitrary host would receive its token."""
    durable_writes: bool = True
    """Local backend: sync file, directory and index before a store is acknowledged."""
    expiry_schedule: str = DEFAULT_EXPIRY_SCHEDULE
    """When the study expiry sweep runs (``expiry_schedule``)."""
    data_partitions: bool = False
    """Data partitions (``/partitions/{name}/...`` routes): Azure's ``enableDataPartitions``.
    Cannot be turned off again once partitions other than Microsoft.Default exist."""
    azure: AzureSettings = field(default_factory=AzureSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    events: EventSettings = field(default_factory=EventSettings)

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        storage = (values.get("DICOM_STORAGE") or "local").strip().lower()
        if storage not in {"local", "azure"}:
            raise SettingsError(f"DICOM_STORAGE must be 'local' or 'azure', got {storage!r}")
        data_dir = Path(values.get("DATA_DIR") or ".data")
        staging = values.get("DICOM_STAGING_DIR")
        return cls(
            storage=storage,
            data_dir=data_dir,
            max_request_bytes=_int(values, "DICOM_MAX_REQUEST_BYTES", 4 * GIB, minimum=1),
            max_parts=_int(values, "DICOM_MAX_PARTS", 10_000, minimum=1),
            max_json_body_bytes=_int(values, "DICOM_MAX_JSON_BODY_BYTES", 4 * MIB, minimum=1),
            max_transcode_bytes=_int(values, "DICOM_MAX_TRANSCODE_BYTES", 100 * MIB, minimum=1),
            max_decoded_bytes=_int(values, "DICOM_MAX_DECODED_BYTES", 512 * MIB, minimum=1),
            stale_create_seconds=_int(values, "DICOM_STALE_CREATE_SECONDS", 3600, minimum=1),
            staging_dir=Path(staging) if staging else None,
            reindex_batch_size=_int(values, "DICOM_REINDEX_BATCH_SIZE", 100, minimum=1),
            export_batch_size=_int(values, "DICOM_EXPORT_BATCH_SIZE", 100, minimum=1),
            export_local_root=_path(values, "DICOM_EXPORT_LOCAL_ROOT"),
            export_blob_hosts=_list(
                values, "DICOM_EXPORT_BLOB_HOSTS", ("*.blob.core.windows.net",)
            ),
            durable_writes=_bool(values, "DICOM_DURABLE_WRITES", True),
            expiry_schedule=expiry_schedule(values),
            data_partitions=_bool(values, "DICOM_DATA_PARTITIONS", False),
            azure=AzureSettings.from_mapping(values),
            auth=AuthSettings.from_mapping(values),
            cors=CorsSettings.from_mapping(values),
            events=EventSettings.from_mapping(values),
        )

    @classmethod
    def from_environment(cls) -> Settings:
        return cls.from_mapping(os.environ)

    @property
    def reservation_lease_seconds(self) -> float:
        """How long a store's reservation stays held without renewal before another store
        may take it over: ``RESERVATION_LEASE_SECONDS``, or less when
        ``DICOM_STALE_CREATE_SECONDS`` says so. A live store renews it every third of that
        while it writes the file, so only an interrupted store's reservation lapses: a retry
        after a crash waits two minutes, not the hour spool files are kept."""
        return float(min(self.stale_create_seconds, RESERVATION_LEASE_SECONDS))

    @property
    def effective_staging_dir(self) -> Path:
        """Where request bodies are spooled while a STOW part is parsed.

        On the local backend it sits inside the data directory, so a stored file is moved into
        place with a rename instead of being copied a second time.
        """
        return self.staging_dir or (self.data_dir / "staging")


__all__ = [
    "DEFAULT_BLOB_DEBT_SCHEDULE",
    "DEFAULT_EXPIRY_SCHEDULE",
    "EVENTS_SCHEDULE_OFF",
    "EVENTS_SCHEDULE_ON",
    "GIB",
    "MIB",
    "OWNER_ROLE",
    "READER_ROLE",
    "AuthSettings",
    "AzureSettings",
    "CorsSettings",
    "EventSettings",
    "Settings",
    "SettingsError",
    "expiry_schedule",
    "blob_debt_schedule",
]
