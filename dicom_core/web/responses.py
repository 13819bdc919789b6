"""Building HTTP responses: DICOM JSON bodies and JSON error bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from dicom_core.domain.media_types import DICOM_JSON, JSON
from dicom_core.web.versions import SUPPORTED_VERSIONS, version_of


def dicom_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=DICOM_JSON, headers=headers)


def raw_dicom_json(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, media_type=DICOM_JSON, headers=headers)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A JSON error body; ``message`` names the problem for the client."""
    return Response(
        orjson.dumps({"status": status, "message": message}),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


WARNING_TEXT_LIMIT = 1024
"""Characters of a message a ``Warning`` header carries at most."""


def warning(message: str) -> str:
    """An HTTP ``Warning`` value (RFC 7234 5.5) carrying ``message``: code 299 ("miscellaneous
    persistent warning"), the agent left anonymous (``-``), the text as a quoted string.

    Header values are Latin-1 on the wire and a quoted string cannot hold control
    characters, so the text keeps printable ASCII only (anything else becomes ``?``; the JSON
    body carries the message whole), escapes quotes and backslashes, and stops at
    ``WARNING_TEXT_LIMIT`` characters, escapes counted: a message that quotes a client's value
    stays a header.
    """
    pieces = [
        "\\" + c if c in '"\\' else c if " " <= c <= "~" else "?"
        for c in message[: WARNING_TEXT_LIMIT + 1]
    ]
    text = "".join(pieces)
    if len(text) > WARNING_TEXT_LIMIT:  # cut between pieces, never inside an escape
        kept, used = [], 0
        for piece in pieces:
            if used + len(piece) > WARNING_TEXT_LIMIT - 3:
                break
            kept.append(piece)
            used += len(piece)
        text = "".join(kept) + "..."
    return '299 - "' + text + '"'


def unknown_route(path: str) -> Response:
    """404 for a path no route serves; the hint about versions only where one is missing."""
    shown = "/" + path.lstrip("/")
    first = shown.split("/")[1]
    if first[:1] in ("v", "V") and version_of(first[1:]) is not None:
        return error(
            404,
            f"No resource at '{shown}'. Check the path after the version against the"
            " service's routes (for example /v2/studies/{study}/series/{series}).",
        )
    return error(
        404,
        f"No resource at '{shown}'. URLs start with an API version: "
        f"{', '.join('/' + v for v in SUPPORTED_VERSIONS)} (for example /v2/studies).",
    )
