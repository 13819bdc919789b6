"""The service's UID rule: 1 to 64 letters, digits, '.' or '-'.

This is more lenient than DICOM's digits-and-dots rule (PS3.5 9.1), because that is what
clients of the real service rely on. URL segments and dataset values are checked with it.
"""

from __future__ import annotations

import re

from dicom_core.domain.validation.messages import show

UID_MAX_LENGTH = 64

_UID_RE = re.compile(r"[0-9A-Za-z.\-]+")


def uid_rule(value: str) -> str | None:
    """The reason a non-empty UID breaks the service's rule, phrased to follow a quoted value."""
    if _UID_RE.fullmatch(value) is None:
        return 'contains a character other than letters, digits, "." or "-"'
    if len(value) > UID_MAX_LENGTH:
        return f"is {len(value)} characters long; at most {UID_MAX_LENGTH} are allowed"
    return None


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` satisfies the service's UID rule (1..64 of ``[0-9A-Za-z.-]``).

    No padding is stripped: callers validating a URL segment must not get a trailing space
    accepted silently. Values from a dataset go through :func:`dataset_problems`, which does
    strip DICOM padding first.
    """
    return uid_problem(value) is None


def uid_problem(value: str) -> str | None:
    """Explain why ``value`` is not an acceptable UID, or return ``None`` if it is.

    The message has no trailing period so callers can embed it in their own sentences.
    """
    if value == "":
        return "UID is empty"
    if _UID_RE.fullmatch(value) is None:
        return f'UID {show(value)} contains a character other than letters, digits, "." or "-"'
    if len(value) > UID_MAX_LENGTH:
        return f"UID is {len(value)} characters long; at most {UID_MAX_LENGTH} are allowed"
    return None
