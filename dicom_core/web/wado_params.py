"""Reading WADO-RS request parameters: frame numbers, quality, the original-version header.

Every malformed value is a 400 whose message names the parameter and what was wrong, before
any lookup happens. The UIDs of the path are read by ``dicom_core.web.context``, as for every
other transaction.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from dicom_core.domain.render import DEFAULT_QUALITY
from dicom_core.errors import BadRequest
from dicom_core.web.query_params import query_values

#: Request header selecting the original version of an instance after a bulk update
#: (conformance statement, "Retrieve original version").
ORIGINAL_VERSION_HEADER: Final = "msdicom-request-original"
_MAX_FRAMES_PER_REQUEST: Final = 100_000


def original_version(request: Request) -> bool:
    """True when the client asks for the original version (``msdicom-request-original``).

    Study, series and instance retrieve and metadata honour it: each instance's version as
    first stored, kept when a bulk update rewrote it (the current one if none did). Frames and
    rendered images parse it but serve the current version, as Azure does: a bulk update
    changes attributes only, never pixels. Anything but true or false (any case) is refused
    rather than silently ignored.
    """
    raw = request.headers.get(ORIGINAL_VERSION_HEADER)
    if raw is None:
        return False
    value = raw.strip().lower()
    if value in {"true", "false"}:
        return value == "true"
    raise BadRequest(f"The {ORIGINAL_VERSION_HEADER} header must be true or false, got {raw!r}.")


def frame_numbers(raw: str) -> list[int]:
    """Parse a frame list such as ``1,3,5``: 1-based frame numbers, in the order asked."""
    parts = [part.strip() for part in raw.split(",")]
    if not raw.strip() or any(not part for part in parts):
        raise BadRequest(
            f"The frame list {raw!r} is malformed; give frame numbers (from 1) separated by"
            " commas, for example frames/1,2,3."
        )
    if len(parts) > _MAX_FRAMES_PER_REQUEST:
        raise BadRequest(f"At most {_MAX_FRAMES_PER_REQUEST} frames can be requested at once.")
    numbers: list[int] = []
    for part in parts:
        # At most 9 digits before int(): Python refuses to convert over 4,300 (a 500), and
        # Azure reads frame numbers as 32-bit integers.
        if not part.isascii() or not part.isdigit() or len(part) > 9 or int(part) < 1:
            raise BadRequest(
                f"Frame number {part!r} is invalid; frame numbers are integers starting at 1."
            )
        numbers.append(int(part))
    return numbers


def frame_number(raw: str) -> int:
    """The single frame of a rendered-frame URL."""
    numbers = frame_numbers(raw)
    if len(numbers) != 1:
        raise BadRequest("A rendered image shows one frame; give a single frame number.")
    return numbers[0]


def quality(request: Request) -> int:
    """The ``quality`` query parameter: an integer from 1 to 100, 100 when absent."""
    values = query_values(request, "quality")  # given twice, the last one counts
    if not values:
        return DEFAULT_QUALITY
    raw = values[-1].strip()
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 100:
        raise BadRequest(f"The quality parameter must be an integer from 1 to 100, got {raw!r}.")
    return int(raw)
