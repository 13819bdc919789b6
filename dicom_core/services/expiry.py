"""Study expiry: STOW's ``msdicom-expiry-*`` headers, and the sweep that deletes expired studies.

The Azure DICOM service documents the feature in its v2 conformance statement ("Store DICOM
file with Expiry"): a store request may say, with three headers, that its study is to be
deleted some time after it is stored.

- ``msdicom-expiry-time-milliseconds``: required, an integer greater than 0;
- ``msdicom-expiry-option``: optional, ``RelativeToNow`` (the only option);
- ``msdicom-expiry-level``: optional, ``Study`` (the only level).

The last store request to a study decides: its headers set the study's expiry anew, and a
store without them clears it. A bad header fails the whole request with a 400 that names it,
before the body is read, so nothing is stored. The deadline is taken when each instance is
committed (``ExpiryRequest.deadline``), in the same index step, so the study expires that
long after its last instance of the request was stored.

The sweep (``ExpirySweep``, run by the timer-triggered ``jobs_expire_studies``) takes a page
of expired studies from the index and deletes each through ``DeleteService``, as a DELETE
would: the change feed records every instance and the files go. The delete is conditional
(``IndexStore.delete_instances(expired_by=...)``), so a study whose expiry a store moved or
cleared after the page was read is kept. Work per tick is one page; what a crash or an error
leaves is still expired, so the next tick finds it again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dicom_core.domain.timestamps import utc_now
from dicom_core.errors import BadRequest
from dicom_core.services.delete import DeleteService
from dicom_core.storage.ports import IndexStore

log = logging.getLogger(__name__)

HEADER_PREFIX = "msdicom-expiry-"
TIME_HEADER = "msdicom-expiry-time-milliseconds"
OPTION_HEADER = "msdicom-expiry-option"
LEVEL_HEADER = "msdicom-expiry-level"
RELATIVE_TO_NOW = "RelativeToNow"
STUDY_LEVEL = "Study"
#: Expiry is a v2 feature (documented in the v2 conformance statement only): v1 requests are
#: stores without expiry headers, whatever they send.
FIRST_API_VERSION = 2
#: Expired studies one sweep deletes at most; the rest wait for the next tick.
SWEEP_STUDIES = 50

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, slots=True)
class ExpiryRequest:
    """A store request's valid expiry headers: its studies expire this long after a store."""

    milliseconds: int

    def deadline(self, now: datetime) -> datetime:
        return now + timedelta(milliseconds=self.milliseconds)


def parse_expiry_headers(headers: Iterable[tuple[str, str]]) -> ExpiryRequest | None:
    """The request's expiry, None when it sends no expiry header; 400 naming a bad header.

    Names are matched case-insensitively, as HTTP header names are; so are the two values
    (``RelativeToNow``, ``Study``). Headers under the prefix that Azure does not define are
    ignored, as any other unknown header.
    """
    given: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered not in (TIME_HEADER, OPTION_HEADER, LEVEL_HEADER):
            continue
        if lowered in given:
            raise BadRequest(f"The header {lowered} is given more than once.")
        given[lowered] = value.strip()
    if not given:
        return None
    option = given.get(OPTION_HEADER)
    if option is not None and option.lower() != RELATIVE_TO_NOW.lower():
        raise BadRequest(
            f"The header {OPTION_HEADER} must be {RELATIVE_TO_NOW}, the only option supported;"
            f" got '{option}'."
        )
    level = given.get(LEVEL_HEADER)
    if level is not None and level.lower() != STUDY_LEVEL.lower():
        raise BadRequest(
            f"The header {LEVEL_HEADER} must be {STUDY_LEVEL}, the only level supported;"
            f" got '{level}'."
        )
    raw = given.get(TIME_HEADER)
    if raw is None:
        raise BadRequest(
            f"The header {TIME_HEADER} is required with {OPTION_HEADER} and {LEVEL_HEADER}:"
            " it says how many milliseconds after the store the study is deleted."
        )
    if not _DIGITS.fullmatch(raw) or int(raw) <= 0:
        raise BadRequest(
            f"The header {TIME_HEADER} must be an integer greater than 0 (milliseconds until"
            f" the study is deleted); got '{raw}'."
        )
    expiry = ExpiryRequest(int(raw))
    try:
        expiry.deadline(utc_now())
    except OverflowError:
        raise BadRequest(
            f"The header {TIME_HEADER} is too large: the study would expire after the year 9999."
        ) from None
    return expiry


def expiry_of_request(headers: Iterable[tuple[str, str]], api_version: int) -> ExpiryRequest | None:
    """What a store request of ``api_version`` says about its studies' expiry (None: they
    never expire); v1 requests send no expiry, whatever their headers."""
    if api_version < FIRST_API_VERSION:
        return None
    return parse_expiry_headers(headers)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: the studies it deleted, those a store kept (their expiry moved
    or cleared after the page was read), and those that failed (left for the next tick)."""

    deleted: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class ExpirySweep:
    """Deletes expired studies, one page per call, through the delete service."""

    def __init__(
        self, index: IndexStore, delete: DeleteService, *, page_size: int = SWEEP_STUDIES
    ) -> None:
        self._index = index
        self._delete = delete
        self._page_size = page_size

    async def sweep(self, now: datetime | None = None) -> SweepResult:
        """One page of the studies expired at ``now`` (default: the clock), each deleted
        unless a store moved or cleared its expiry meanwhile. A study that fails is logged
        and left for the next sweep; the others go on."""
        moment = now or utc_now()
        deleted: list[str] = []
        kept: list[str] = []
        failed: list[str] = []
        for study in await self._index.expired_studies(moment, self._page_size):
            study_uid = study.study_uid
            try:
                count = await self._delete.delete_expired_study(study, moment)
            except Exception:
                log.exception("deleting expired study %s failed; the next sweep retries", study_uid)
                failed.append(study_uid)
                continue
            if count:
                log.info("deleted expired study %s (%d instances)", study_uid, count)
                deleted.append(study_uid)
            else:
                kept.append(study_uid)
        return SweepResult(tuple(deleted), tuple(kept), tuple(failed))
