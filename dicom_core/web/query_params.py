"""Query parameters every JSON endpoint reads alike: bounded integers, booleans, and the
lookup of a parameter by name.

One home for their rules and their 400 messages, so paging through tag errors and through the
change feed refuses a bad ``limit`` in the same words.

Names match in any case (``endtime`` is ``endTime``), as they do in Azure, whose ASP.NET model
binding ignores case: Microsoft's own change feed page spells ``endtime`` and
``includemetadata`` so. QIDO's and the worklist's reserved names (``limit``, ``offset``,
``includefield``, ``fuzzymatching``) are matched the same way by their parsers.
"""

from __future__ import annotations

from starlette.requests import Request

from dicom_core.domain.integers import decimal_integer
from dicom_core.errors import BadRequest


def query_values(request: Request, name: str) -> list[str]:
    """Every value of the query parameter ``name``, in any case, in the order given."""
    folded = name.lower()
    return [value for key, value in request.query_params.multi_items() if key.lower() == folded]


def query_value(request: Request, name: str) -> str | None:
    """The value of the query parameter ``name`` in any case; None if absent.

    Given twice (in any case), it is a 400 rather than a silent pick of one.
    """
    values = query_values(request, name)
    if len(values) > 1:
        raise BadRequest(f"The query parameter '{name}' may be given only once.")
    return values[0] if values else None


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """The integer parameter ``name``, from ``minimum`` to ``maximum``; ``default`` if absent."""
    raw = query_value(request, name)
    if raw is None:
        return default
    # .NET's integer parsing also allows white space around the number.
    value = decimal_integer(raw.strip(" \t\n\v\f\r"))
    if value is None:
        raise BadRequest(f"The query parameter '{name}' must be an integer, not {raw!r}.")
    if not minimum <= value <= maximum:
        raise BadRequest(
            f"The query parameter '{name}' is out of range: give {minimum} to {maximum}."
        )
    return value


def bool_param(request: Request, name: str, *, default: bool) -> bool:
    """``true`` or ``false`` in any case; ``default`` if absent."""
    raw = query_value(request, name)
    if raw is None:
        return default
    folded = raw.strip().lower()
    if folded not in {"true", "false"}:
        raise BadRequest(f"The query parameter '{name}' must be true or false, not {raw!r}.")
    return folded == "true"
