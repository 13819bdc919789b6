"""Errors that services raise and the web layer turns into status codes.

Services never build HTTP responses; they raise one of these, and ``dicom_core.web`` maps
``status`` to the response. The message is written for the client: it names the problem.
"""

from __future__ import annotations


class DicomWebError(Exception):
    """Base class: an error with the HTTP status the conformance statement gives for it."""

    status: int = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(DicomWebError):
    status = 400


class NotFound(DicomWebError):
    status = 404


class NotAcceptable(DicomWebError):
    status = 406


class Conflict(DicomWebError):
    status = 409


class PayloadTooLarge(DicomWebError):
    status = 413


class UriTooLong(DicomWebError):
    status = 414


class UnsupportedMediaType(DicomWebError):
    status = 415


class DependencyUnavailable(DicomWebError):
    """A store the service depends on (index, blobs, queue) cannot be reached: 503."""

    status = 503


class DependencyFailed(DicomWebError):
    """A store answered, but not in a way the service can work with: 424."""

    status = 424


def resource_not_found(
    study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
) -> NotFound:
    """The 404 for a study, series or instance that is not stored, naming the narrowest one."""
    if sop_uid is not None:
        return NotFound(
            f"Instance {sop_uid} was not found in series {series_uid} of study {study_uid}."
        )
    if series_uid is not None:
        return NotFound(f"Series {series_uid} was not found in study {study_uid}.")
    return NotFound(f"Study {study_uid} was not found.")
