"""UIDs the client puts into URLs and file names, checked first.

The rule is the service's (its conformance statement): 1 to 64 letters, digits, '.' or '-',
more lenient than DICOM's digits and dots because real data breaks that. It is restated here
because the client imports nothing from the server. Like the server, the client also refuses
a UID of dots alone: ``..`` as a folder name would climb out of the download folder.
"""

from __future__ import annotations

import re

UID_MAX_LENGTH = 64
_UID_RE = re.compile(r"[0-9A-Za-z.\-]+")


def uid_problem(value: str) -> str | None:
    """Why ``value`` is not a usable UID, phrased to follow the UID's name, or None."""
    if not value:
        return "is empty"
    if _UID_RE.fullmatch(value) is None:
        return f'{value!r} has a character other than letters, digits, "." or "-"'
    if len(value) > UID_MAX_LENGTH:
        return f"is {len(value)} characters long; at most {UID_MAX_LENGTH} are allowed"
    if value.strip(".") == "":
        return f"{value!r} has no digits or letters"
    return None
