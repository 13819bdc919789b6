"""What every handler needs from a request: the services, the API version, the UIDs of the
path, the base URL.

``ServiceContainer`` builds the services lazily on first use (never at import time, so
importing ``function_app`` builds nothing and no bad setting can fail it; the timers' schedules
(events, study expiry) are the only settings read then, and they have defaults) and can be
reconfigured by tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services, build_services
from dicom_core.domain.identifiers import check_uid
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.partitions import Partition
from dicom_core.errors import DependencyFailed, DependencyUnavailable, DicomWebError, NotFound
from dicom_core.settings import Settings, SettingsError
from dicom_core.storage.ports import (
    BlobDamaged,
    BlobNotFound,
    StorageFull,
    StorageUnavailable,
)
from dicom_core.web import responses
from dicom_core.web.gate import Gate
from dicom_core.web.versions import SUPPORTED_VERSIONS, version_of

log = logging.getLogger(__name__)


class ServiceContainer:
    def __init__(
        self, settings_factory: Callable[[], Settings] = Settings.from_environment
    ) -> None:
        self._settings_factory = settings_factory
        self._services: Services | None = None
        self._gate: Gate | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Services:
        if self._services is None:
            async with self._lock:
                if self._services is None:
                    built = build_services(self._settings_factory())
                    try:
                        # Partitions turned off while some exist: every request and job
                        # fails (503, misconfigured), as Azure's service fails to start.
                        await built.partitions.check_startup()
                    except BaseException:
                        await built.close()
                        raise
                    self._services = built
        return self._services

    async def close(self) -> None:
        """Release the services' connections (network-backed stores hold some) at shutdown."""
        async with self._lock:
            if self._services is not None:
                await self._services.close()
            self._services = None

    async def configure(self, settings: Settings) -> None:
        """Replace the services (tests point the app at their own data directory)."""
        async with self._lock:
            if self._services is not None:
                await self._services.close()
            self._services = None
            self._gate = None
            self._settings_factory = lambda: settings

    def gate(self) -> Gate:
        """CORS and auth for this app, built once from the settings (keeps the key cache)."""
        if self._gate is None:
            self._gate = Gate(self._settings_factory())
        return self._gate


def api_version(request: Request) -> int:
    raw = str(request.path_params.get("version", ""))
    version = version_of(raw)
    if version is None:
        raise NotFound(
            f"API version 'v{raw}' is not supported; use one of: "
            f"{', '.join('/' + v for v in SUPPORTED_VERSIONS)}."
        )
    return version


#: What each UID segment of a route template names, for the 400 a malformed one gets.
_PATH_UIDS: Final = {
    "study": "study instance UID in the URL",
    "series": "series instance UID in the URL",
    "instance": "SOP instance UID in the URL",
    "workitem": "workitem UID in the URL",
}


def path_uid(request: Request, name: str) -> str:
    """The UID of the route's ``{name}`` segment, checked: a 400 names the segment."""
    return check_uid(str(request.path_params.get(name, "")), _PATH_UIDS[name])


def optional_path_uid(request: Request, name: str) -> str | None:
    """``path_uid`` where the route has a ``{name}`` segment, None where it has none (one
    handler serves the study, series and instance routes of a transaction)."""
    return path_uid(request, name) if name in request.path_params else None


def study_uid(request: Request) -> str:
    return path_uid(request, "study")


def series_uid(request: Request) -> str | None:
    return optional_path_uid(request, "series")


def sop_uid(request: Request) -> str | None:
    return optional_path_uid(request, "instance")


def instance_key(request: Request, partition: Partition) -> InstanceKey:
    """The instance an instance-level route (frames, rendered) names."""
    series, sop = series_uid(request), sop_uid(request)
    assert series is not None and sop is not None, "route without series and instance"
    return InstanceKey(study_uid(request), series, sop, partition=partition.key)


async def partition_of(request: Request, services: Services, *, create: bool = False) -> Partition:
    """The data partition the request is in (``PartitionService.resolve``): a handler asks
    first, after the API version, as Azure checks it before the action. ``create`` for the
    requests that create a partition by naming it (STOW, workitem create)."""
    name = request.path_params.get("partition")
    return await services.partitions.resolve(None if name is None else str(name), create=create)


def resource_base(request: Request, version: int, partition: Partition) -> str:
    """The URL the resources of ``partition`` sit under: ``base_url``, then
    ``/partitions/{name}`` where the request came through a partition route (always, when
    partitions are on). STOW's RetrieveURLs and a workitem's Location start with it; an
    operation's does not (operations are global, as in Azure)."""
    base = base_url(request, version)
    if "partition" not in request.path_params:
        return base
    return f"{base}/partitions/{partition.name}"


def base_url(request: Request, version: int) -> str:
    """The service root as the client sees it, behind proxies too (X-Forwarded-*)."""
    headers = request.headers
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = (
        headers.get("x-forwarded-host", "").split(",")[0].strip()
        or headers.get("host")
        or request.url.netloc
    )
    # The version as the request spelt it, so a v1.0-prerelease client's links stay there.
    raw = str(request.path_params.get("version", ""))
    segment = raw if version_of(raw) == version else str(version)
    return f"{proto}://{host}/v{segment}"


Handler = Callable[[Request, Services], Awaitable[Response]]


async def guard(
    request: Request, container: ServiceContainer, run: Callable[[], Awaitable[Response]]
) -> Response:
    """CORS and authentication around ``run`` (see ``dicom_core.web.gate``)."""
    try:
        gate = container.gate()
    except SettingsError as exc:
        return responses.error(503, f"The service is misconfigured: {exc}")
    return await gate.guard(request, run)


async def handle(request: Request, container: ServiceContainer, handler: Handler) -> Response:
    """Run a handler behind the gate (CORS, token) and map known errors to status codes."""
    return await guard(request, container, lambda: _run(request, container, handler))


async def _run(request: Request, container: ServiceContainer, handler: Handler) -> Response:
    """Run a handler and turn known errors into their status codes; never a bare 500."""
    try:
        services = await container.get()
        return await handler(request, services)
    except DicomWebError as exc:
        if isinstance(exc, DependencyFailed | DependencyUnavailable):
            # A store failed us: the client reads the message, the operator needs the cause
            # (the SDK's error and its status), which the answer leaves out.
            log.warning(
                "%s %s answered %d: %s",
                request.method,
                request.url.path,
                exc.status,
                exc,
                exc_info=exc,
            )
        return responses.error(exc.status, exc.message)
    except StorageFull as exc:
        # Not a 503: waiting will not help until someone makes room.
        log.error("%s %s answered 507: %s%s", request.method, request.url.path, exc, _cause(exc))
        return responses.error(507, f"The service cannot store more data: {exc}.")
    except StorageUnavailable as exc:
        log.warning("%s %s answered 503: %s%s", request.method, request.url.path, exc, _cause(exc))
        return responses.error(503, f"The service is unavailable: {exc}", {"Retry-After": "5"})
    except BlobDamaged as exc:
        log.error("indexed file damaged: %s", exc)
        return responses.error(
            424, "A stored file the index refers to is damaged: it is not the size stored."
        )
    except BlobNotFound as exc:
        log.error("indexed file missing: %s", exc)
        return responses.error(424, "A stored file the index refers to is missing.")
    except SettingsError as exc:
        return responses.error(503, f"The service is misconfigured: {exc}")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return responses.error(500, "The server encountered an internal error.")


def _cause(exc: BaseException) -> str:
    """`` (cause: ...)`` naming the error ``exc`` was raised from, if any, for a log line."""
    cause = exc.__cause__
    return f" (cause: {type(cause).__name__}: {cause})" if cause is not None else ""
