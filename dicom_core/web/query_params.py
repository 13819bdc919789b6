"""Query parameters every JSON endpoint reads alike: bounded integers and booleans.

One home for their rules and their 400 messages, so paging through tag errors and through the
change feed refuses a bad ``limit`` in the same words.
"""

from __future__ import annotations

from starlette.requests import Request

from dicom_core.errors import BadRequest


def int_param(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """The integer parameter ``name``, from ``minimum`` to ``maximum``; ``default`` if absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"The query parameter '{name}' must be an integer.") from exc
    if not minimum <= value <= maximum:
        raise BadRequest(
            f"The query parameter '{name}' is out of range: give {minimum} to {maximum}."
        )
    return value


def bool_param(request: Request, name: str, *, default: bool) -> bool:
    """``true`` or ``false`` in any case; ``default`` if absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    folded = raw.strip().lower()
    if folded not in {"true", "false"}:
        raise BadRequest(f"The query parameter '{name}' must be true or false, not {raw!r}.")
    return folded == "true"
