"""UPS-RS over HTTP (conformance statement, "Worklist Service (UPS-RS)").

HTTP concerns only: media types (415 for a body that is not application/dicom+json, 406 for
an Accept that excludes it), the UIDs carried in query strings (``POST ../workitems?{uid}``
and ``POST ../workitems/{uid}?{transaction-uid}``, with ``AffectedSOPInstanceUID=`` and
``transaction=`` accepted as the named forms), Location and Content-Location headers, 204 for
an empty search, and 501 for the Watch and Event subscription routes, which the Azure service
does not implement.

The HTTP ``Warning`` header (PS3.18 11.6.3.2 and 11.7.3.2) repeats the reason of a refused
update or state change (any 4xx the workitem service gives, a workitem already in the
requested final state included), and of a cancellation request on a canceled workitem, as
Azure's controllers set it.

Each transaction but the subscriptions has a partitioned route (``/partitions/{name}/...``):
a handler resolves the data partition first, after the API version (``partition_of``; a
create makes the partition, as Azure's workitem create does), and works in its key. The
subscription routes have no partitioned form, as in Azure.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import DICOM_JSON, JSON
from dicom_core.domain.nesting import MAX_SEQUENCE_DEPTH
from dicom_core.domain.workitems import SUBSCRIPTION_UIDS
from dicom_core.errors import BadRequest, DicomWebError, NotAcceptable, UnsupportedMediaType
from dicom_core.query.workitems import parse_workitem_query
from dicom_core.services.workitems import AlreadyInState, check_workitem_uid
from dicom_core.web.bodies import read_limited
from dicom_core.web.context import api_version, partition_of, path_uid, resource_base
from dicom_core.web.negotiation import parse_accept
from dicom_core.web.responses import dicom_json, error, warning


def _check_accept(request: Request) -> None:
    ranges = parse_accept(request.headers.getlist("accept"))
    if not ranges:
        return
    for media in ranges:
        if media.q > 0 and (media.matches(DICOM_JSON) or media.media_type == JSON):
            return
    raise NotAcceptable("Workitems are offered as application/dicom+json only.")


async def _body(request: Request, services: Services, *, optional: bool = False) -> dict[str, Any]:
    """The request's DICOM JSON dataset (an object, or an array holding one object).

    The body is read with ``DICOM_MAX_JSON_BODY_BYTES`` as its limit (413 past it), so a
    client cannot make the service hold more than that in memory to find out it is too large.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in (DICOM_JSON, JSON):
        raise UnsupportedMediaType(f"The Content-Type must be {DICOM_JSON}, got '{content_type}'.")
    raw = await read_limited(request, services.settings.max_json_body_bytes, what="dataset")
    if optional and not raw.strip() and not content_type:
        return {}
    if not content_type:
        raise UnsupportedMediaType(f"The Content-Type must be {DICOM_JSON}, got 'none'.")
    if optional and not raw.strip():
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc).lower():
            # orjson stops reading at 1024 nested containers: a dataset nested hundreds of
            # sequences deep, refused here for the reason the dataset check would give.
            raise BadRequest(
                f"The dataset is refused: its sequences nest more than {MAX_SEQUENCE_DEPTH}"
                f" levels deep; at most {MAX_SEQUENCE_DEPTH} are accepted."
            ) from None
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
    if isinstance(parsed, list):
        if len(parsed) != 1:
            raise BadRequest(
                f"The request body must hold exactly one dataset, it holds {len(parsed)}."
            )
        parsed = parsed[0]
    if not isinstance(parsed, dict):
        raise BadRequest("The request body must be a DICOM JSON dataset (a JSON object).")
    return parsed


def _query_uid(request: Request, names: tuple[str, ...], what: str) -> str | None:
    """A UID given as the bare query string (``?1.2.3``) or as one named parameter."""
    raw = request.url.query
    if not raw:
        return None
    pairs = parse_qsl(raw, keep_blank_values=True)
    if len(pairs) != 1:
        raise BadRequest(f"The query string must carry only the {what}, got '{raw}'.")
    key, value = pairs[0]
    if value == "":
        return key.strip()
    if key.strip().lower() not in names:
        raise BadRequest(
            f"Unknown query parameter '{key}'; give the {what} as '?{{uid}}' or"
            f" '?{names[0]}={{uid}}'."
        )
    return value.strip()


def _refused(exc: DicomWebError) -> bool:
    """Whether ``exc`` refuses the request (a 4xx), rather than reporting that the service
    could not do it (424 for a dependency, 5xx): only refusals carry the Warning."""
    return 400 <= exc.status < 500 and exc.status != 424


def _warned(exc: DicomWebError) -> Response:
    """The error answer of a refused transaction, its reason in a ``Warning`` header too."""
    return error(exc.status, exc.message, {"Warning": warning(exc.message)})


def _workitem(request: Request) -> str:
    return check_workitem_uid(path_uid(request, "workitem"), "workitem UID in the URL")


async def create(request: Request, services: Services) -> Response:
    """POST ../workitems and ../workitems?{uid}: 201 with the workitem's location (under
    the partition's URL when the request named one)."""
    version = api_version(request)
    partition = await partition_of(request, services, create=True)
    _check_accept(request)
    url_uid = _query_uid(request, ("affectedsopinstanceuid", "workitem"), "workitem UID")
    dataset = await _body(request, services)
    uid = await services.workitems.create(dataset, url_uid, partition=partition.key)
    location = f"{resource_base(request, version, partition)}/workitems/{uid}"
    return Response(status_code=201, headers={"Location": location, "Content-Location": location})


async def retrieve(request: Request, services: Services) -> Response:
    """GET ../workitems/{uid}: the workitem without its Transaction UID, as one DICOM JSON
    object (not an array of one): the single Workitem the conformance statement's payload
    names, in the shape Azure's controller writes (``Ok(response.Dataset)``) and Microsoft's
    client reads (``RetrieveWorkitemAsync`` deserializes one dataset)."""
    api_version(request)
    partition = await partition_of(request, services)
    _check_accept(request)
    dataset = await services.workitems.retrieve(_workitem(request), partition=partition.key)
    return dicom_json(dataset)


async def update(request: Request, services: Services) -> Response:
    """POST ../workitems/{uid}?{transaction-uid}. The conformance statement lists
    ``POST ../workitems/1.2.840.10008.5.1.4.34.5/`` as "Suspend subscription", on this
    route's path: the subscription UIDs get the subscriptions' 501."""
    version = api_version(request)
    uid = _workitem(request)
    if uid in SUBSCRIPTION_UIDS:  # before the partition, as the subscription routes have none
        return await subscription(request, services)
    partition = await partition_of(request, services)
    lock = _query_uid(request, ("transaction", "transactionuid"), "Transaction UID")
    dataset = await _body(request, services)
    try:
        await services.workitems.update(uid, dataset, lock, partition=partition.key)
    except DicomWebError as exc:
        if not _refused(exc):
            raise
        return _warned(exc)
    location = f"{resource_base(request, version, partition)}/workitems/{uid}"
    return Response(status_code=200, headers={"Content-Location": location})


async def change_state(request: Request, services: Services) -> Response:
    """PUT ../workitems/{uid}/state"""
    api_version(request)
    partition = await partition_of(request, services)
    _check_accept(request)
    uid = _workitem(request)
    dataset = await _body(request, services)
    try:
        await services.workitems.change_state(uid, dataset, partition=partition.key)
    except DicomWebError as exc:
        if not _refused(exc):
            raise
        return _warned(exc)
    return Response(status_code=200)


async def cancel_request(request: Request, services: Services) -> Response:
    """POST ../workitems/{uid}/cancelrequest: 202; 409 when the workitem's state does not
    allow it, with a Warning when it is canceled already (as the conformance statement says
    and Azure's controller does)."""
    api_version(request)
    partition = await partition_of(request, services)
    uid = _workitem(request)
    dataset = await _body(request, services, optional=True)
    try:
        await services.workitems.request_cancellation(uid, dataset, partition=partition.key)
    except AlreadyInState as exc:
        return _warned(exc)
    return Response(status_code=202)


async def search(request: Request, services: Services) -> Response:
    """GET ../workitems?...: 200 with matches, 204 when there are none."""
    api_version(request)
    partition = await partition_of(request, services)
    _check_accept(request)
    query = parse_workitem_query(request.query_params.multi_items(), partition=partition.key)
    results = await services.workitems.search(query)
    if not results:
        return Response(status_code=204)
    return dicom_json(results)


async def subscription(request: Request, services: Services) -> Response:
    """The Watch and Event SOP classes (subscriptions) are not implemented, as in Azure."""
    api_version(request)
    return error(
        501,
        "Workitem subscriptions (UPS Watch and Event: create, suspend, delete subscription,"
        " open subscription channel) are not implemented by this DICOM service.",
    )
