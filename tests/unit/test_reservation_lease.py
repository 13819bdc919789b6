"""The reservation lease: two minutes, or less when DICOM_STALE_CREATE_SECONDS says so; the
setting's hour still bounds spool files."""

from __future__ import annotations

import pytest

from dicom_core.settings import RESERVATION_LEASE_SECONDS, Settings


@pytest.mark.parametrize(
    ("stale", "lease"),
    [(None, RESERVATION_LEASE_SECONDS), ("3600", RESERVATION_LEASE_SECONDS), ("1", 1), ("60", 60)],
)
def test_the_lease_is_two_minutes_at_most(stale: str | None, lease: float) -> None:
    values = {} if stale is None else {"DICOM_STALE_CREATE_SECONDS": stale}
    settings = Settings.from_mapping(values)
    assert settings.reservation_lease_seconds == lease
    assert settings.stale_create_seconds == int(stale or 3600)
