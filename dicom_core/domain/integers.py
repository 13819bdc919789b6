"""Decimal integers from request text, read as Azure's .NET parsing reads them.

Python's ``int()`` is the wrong reader for a URL or a header: it takes ``1_0`` and other
scripts' digits, and it refuses to convert more than 4,300 digits with a ``ValueError``,
which a caller that only screened for digits turned into a 500. Every request integer that
has a range (query ``limit`` and ``offset``, Content-Length) goes through here.
"""

from __future__ import annotations

import re
from typing import Final

_INTEGER: Final = re.compile(r"([+-]?)([0-9]+)")
#: What a number of more than 19 significant digits reads as: past every range this service
#: has (the largest is a 64-bit integer), without converting thousands of digits.
PAST_ANY_RANGE: Final = 10**19


def decimal_integer(text: str) -> int | None:
    """``text`` as an optional sign and ASCII digits, or None if it is anything else; one of
    more than 19 significant digits is ``PAST_ANY_RANGE`` (negated for a minus)."""
    parsed = _INTEGER.fullmatch(text)
    if parsed is None:
        return None
    sign, digits = parsed.groups()
    significant = digits.lstrip("0") or "0"
    value = int(significant) if len(significant) <= 19 else PAST_ANY_RANGE
    return -value if sign == "-" else value
