"""Timer schedules as the host reads them: six-field NCRONTAB, or an app setting's value."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import orjson
import pytest

from dicom_core.settings import (
    DEFAULT_BLOB_DEBT_SCHEDULE,
    DEFAULT_EXPIRY_SCHEDULE,
    blob_debt_schedule,
    expiry_schedule,
)
from functions_host.timers import ScheduleError, resolve_schedule, timer_info


def test_a_six_field_expression_is_taken_as_written() -> None:
    assert resolve_schedule(" 0 */5 * * * * ", {}) == "0 */5 * * * *"


def test_a_binding_expression_reads_the_app_setting() -> None:
    assert resolve_schedule("%EXPIRY%", {"EXPIRY": "*/10 * * * * *"}) == "*/10 * * * * *"


@pytest.mark.parametrize(
    ("schedule", "environ", "named"),
    [
        ("%MISSING%", {}, "MISSING is not set"),
        ("*/5 * * * *", {}, "six-field"),  # five fields: Unix cron, not NCRONTAB
        ("61 * * * * *", {}, "six-field"),
        ("%BAD%", {"BAD": "every minute"}, "six-field"),
    ],
)
def test_a_bad_schedule_is_refused_with_the_reason(
    schedule: str, environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ScheduleError, match=named):
        resolve_schedule(schedule, environ)


def test_the_timer_info_flags_a_late_occurrence_as_past_due() -> None:
    due = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    following = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    on_time = orjson.loads(timer_info(None, due, following, due))
    late = orjson.loads(timer_info(due, due, following, following))
    assert on_time["IsPastDue"] is False and late["IsPastDue"] is True
    assert on_time["ScheduleStatus"]["Next"] == "2026-01-01T12:00:05+00:00"


def test_the_expiry_schedule_defaults_to_every_minute_and_follows_its_setting() -> None:
    assert expiry_schedule({}) == DEFAULT_EXPIRY_SCHEDULE == "0 * * * * *"
    assert expiry_schedule({"DICOM_EXPIRY_SCHEDULE": " * * * * * * "}) == "* * * * * *"
    assert resolve_schedule(DEFAULT_EXPIRY_SCHEDULE, {}) == DEFAULT_EXPIRY_SCHEDULE


def test_the_app_declares_the_expiry_timer_with_that_schedule() -> None:
    import function_app
    from dicom_core.web.unmatched import app_functions

    [timer] = [
        f for f in app_functions(function_app.app) if f.get_function_name() == "jobs_expire_studies"
    ]
    trigger = timer.get_trigger()
    assert type(trigger).__name__ == "TimerTrigger"
    assert trigger.schedule == expiry_schedule(os.environ)


def test_the_app_declares_the_blob_debt_timer_with_its_schedule() -> None:
    import function_app
    from dicom_core.web.unmatched import app_functions

    assert blob_debt_schedule({}) == DEFAULT_BLOB_DEBT_SCHEDULE == "0 */5 * * * *"
    assert blob_debt_schedule({"DICOM_BLOB_DEBT_SCHEDULE": "* * * * * *"}) == "* * * * * *"
    [timer] = [
        f
        for f in app_functions(function_app.app)
        if f.get_function_name() == "jobs_settle_blob_debts"
    ]
    trigger = timer.get_trigger()
    assert type(trigger).__name__ == "TimerTrigger"
    assert trigger.schedule == blob_debt_schedule(os.environ)
