"""HTTP for bulk update: ``POST /v{n}/studies/$bulkUpdate`` (Azure's "Update DICOM files").

The body names the studies and the attributes to change (``dicom_core.domain.bulk_update``
checks it all before anything starts); the answer is 202 with the operation's id and href,
whose record reports progress and results (``dicom_core.jobs.bulk_update``). A study another
unfinished operation is updating makes the request a 409 naming it.

A change dataset with refused attributes gets Azure's answer: 400 with a DICOM JSON dataset
whose FailedAttributesSequence (0074,1048) holds one ErrorComment (0000,0902) per attribute,
"DICOM100: " (Azure's validation-failure number) and then our message naming the attribute and
the reason. A body that is not a request at all (not JSON, no studies, a bad study UID) gets
the JSON error every other 400 gets, as Azure throws a BadRequestException for those.

Azure serves the route from v2 on and answers 404 on v1; here v1 serves it too, because
Microsoft's own Postman collection calls it under a ``baseUrl`` that ends in ``/v1``.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.bulk_update import BulkUpdateRequestError, parse_bulk_update_request
from dicom_core.domain.media_types import DICOM_JSON, JSON
from dicom_core.domain.validation.checks import AttributeProblem
from dicom_core.errors import BadRequest, Conflict
from dicom_core.storage.ports import OperationConflict
from dicom_core.web.bodies import read_json_bytes
from dicom_core.web.context import api_version, base_url, partition_of
from dicom_core.web.operations import operation_reference


async def start_bulk_update(request: Request, services: Services) -> Response:
    version = api_version(request)
    partition = await partition_of(request, services)
    body = await read_json_bytes(request, services.settings.max_json_body_bytes)
    try:
        parsed = parse_bulk_update_request(body)
    except BulkUpdateRequestError as exc:
        if exc.problems:
            return Response(
                orjson.dumps(failed_attributes(exc.problems)),
                status_code=400,
                media_type=DICOM_JSON,
            )
        raise BadRequest(str(exc)) from exc
    try:
        operation = await services.bulk_update.start(parsed, partition=partition.key)
    except OperationConflict as exc:
        raise Conflict(
            f"The study {exc.resource} is being updated by operation {exc.operation_id};"
            " start another update of it once that one has finished."
        ) from exc
    reference = operation_reference(operation.operation_id, base_url(request, version))
    return Response(
        orjson.dumps(reference),
        status_code=202,
        media_type=JSON,
        headers={"Location": reference["href"]},
    )


def failed_attributes(problems: tuple[AttributeProblem, ...]) -> dict[str, object]:
    """The DICOM JSON dataset of a refused change dataset: one ErrorComment per attribute."""
    comments = [
        {"00000902": {"vr": "LO", "Value": [problem.error_comment]}} for problem in problems
    ]
    return {"00741048": {"vr": "SQ", "Value": comments}}
