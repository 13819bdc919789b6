"""UIDs from URLs and datasets: validated before they touch a path or a query.

The service's rule (conformance statement): 1 to 64 characters, letters, digits, '.' and '-'.
We also refuse a UID made only of dots, because UIDs become path segments of stored files.
"""

from __future__ import annotations

from dicom_core.domain.validation import uid_problem
from dicom_core.errors import BadRequest


def identifier_problem(value: str) -> str | None:
    """Why ``value`` cannot identify a study, series or instance here, or None if it can."""
    problem = uid_problem(value)
    if problem is None and value.strip(".") == "":
        problem = f'UID "{value}" has no digits or letters'
    return problem


def check_uid(value: str, what: str) -> str:
    """Return ``value`` if it is a valid UID, else raise a 400 that names ``what`` is wrong."""
    problem = identifier_problem(value)
    if problem is not None:
        raise BadRequest(f"The {what} is not a valid UID: {problem}.")
    return value


def blob_key_for(study_uid: str, series_uid: str, sop_uid: str, version: int | str) -> str:
    """The stored file's key. ``version`` keeps two versions of one instance apart.

    It is the watermark where the index hands one out before the file is written (Cosmos),
    and a random token where the file is placed before its index entry exists (local).
    """
    return f"{study_uid}/{series_uid}/{sop_uid}_{version}.dcm"
