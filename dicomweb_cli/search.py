"""``dicomweb search``: QIDO-RS from the command line, as a table or as DICOM JSON.

The query is the QIDO one (``-q PatientName=doe``, ``--fuzzy``, ``--include``, ``--limit``,
``--offset``); the level and the scope (``--study``, ``--series``) pick the route. The table
shows the level's usual attributes; ``--json`` prints the server's answer as it came, so it
can be piped into jq.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from dicomweb_cli.uids import uid_problem

# The table's columns per level: (heading, tag), the attributes QIDO returns by default.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "studies": [
        ("StudyInstanceUID", "0020000D"),
        ("PatientName", "00100010"),
        ("PatientID", "00100020"),
        ("StudyDate", "00080020"),
        ("Modalities", "00080061"),
        ("StudyDescription", "00081030"),
        ("Instances", "00201208"),
    ],
    "series": [
        ("SeriesInstanceUID", "0020000E"),
        ("Modality", "00080060"),
        ("SeriesNumber", "00200011"),
        ("SeriesDescription", "0008103E"),
        ("Instances", "00201209"),
    ],
    "instances": [
        ("SOPInstanceUID", "00080018"),
        ("InstanceNumber", "00200013"),
        ("SOPClassUID", "00080016"),
    ],
}
LEVELS = tuple(COLUMNS)


class UsageError(ValueError):
    """A level and scope that no QIDO route serves."""


def search_path(level: str, study: str | None, series: str | None) -> str:
    """The QIDO route of ``level`` within the scope given (PS3.18 10.6.1), under the
    DICOMweb root (``service.dicom_root``)."""
    if series and not study:
        raise UsageError("--series needs --study")
    for name, value in (("--study", study), ("--series", series)):
        problem = uid_problem(value) if value is not None else None
        if problem:
            raise UsageError(f"the UID of {name} {problem}")
    if level == "studies":
        if study or series:
            raise UsageError("studies cannot be scoped by --study or --series")
        return "/studies"
    if level == "series":
        if series:
            raise UsageError("series cannot be scoped by --series")
        return f"/studies/{study}/series" if study else "/series"
    if study and series:
        return f"/studies/{study}/series/{series}/instances"
    return f"/studies/{study}/instances" if study else "/instances"


def query_params(
    terms: Sequence[str],
    *,
    fuzzy: bool,
    include: Sequence[str],
    limit: int | None,
    offset: int | None,
) -> list[tuple[str, str]]:
    """``KEY=VALUE`` terms and options as QIDO query parameters, in order (a key may repeat)."""
    params: list[tuple[str, str]] = []
    for term in terms:
        key, equals, value = term.partition("=")
        if not equals or not key:
            raise UsageError(f"a query term is KEY=VALUE, not {term!r}")
        params.append((key, value))
    params.extend(("includefield", field) for field in include)
    if fuzzy:
        params.append(("fuzzymatching", "true"))
    if limit is not None:
        params.append(("limit", str(limit)))
    if offset is not None:
        params.append(("offset", str(offset)))
    return params


def cell(dataset: Mapping[str, Any], tag: str) -> str:
    """An attribute as text: PN by its alphabetic form, several values joined with ``\\``."""
    element = dataset.get(tag)
    if not isinstance(element, Mapping):
        return ""
    values = element.get("Value")
    if not isinstance(values, list):
        return ""
    shown = []
    for value in values:
        if isinstance(value, Mapping):
            shown.append(str(value.get("Alphabetic", "")))
        else:
            shown.append(str(value))
    return "\\".join(shown)


def rows(level: str, answer: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[cell(dataset, tag) for _, tag in COLUMNS[level]] for dataset in answer]


def search(
    client: httpx.Client, path: str, params: Sequence[tuple[str, str]]
) -> tuple[list[dict[str, Any]], httpx.Response]:
    """The matches (empty for 204) and the response (its status, its Warning header)."""
    response = client.get(path, params=list(params), headers={"Accept": "application/dicom+json"})
    if response.status_code == 204:
        return [], response
    response.raise_for_status()
    answer = response.json()
    return (answer if isinstance(answer, list) else []), response
