"""Timer-triggered functions, invoked on their NCRONTAB schedule as the Functions host does.

Each function's ``schedule`` is the host's six-field NCRONTAB (seconds first, in UTC, as on
Azure's Consumption plan). A ``%NAME%`` schedule is read from the app setting ``NAME``, as the
host resolves binding expressions, so a deployment can slow a timer down without code. The
invocation carries the TimerInfo JSON the host sends (``Schedule``, ``ScheduleStatus`` with
``Last`` and ``Next``, ``IsPastDue``), which azure-functions decodes into a ``TimerRequest``.

Like the host, a timer runs on one instance only: the host takes a blob lease per function;
here the serving processes share a lock file, and the process holding it runs every timer.
A failed invocation is logged and the next occurrence runs as scheduled, as in Azure.

Differences from Azure, on purpose: the host's schedule monitor (``useMonitor``) records the
last run in storage so that an occurrence missed while no instance ran is made up once at
start (``IsPastDue``); this host keeps no such record, and a missed occurrence is skipped. The
app's timers (study expiry, event publishing) find their work from stored state, so a skipped
tick only delays them to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson
from croniter import croniter

from functions_host.queues import cancel_all
from functions_host.worker import IndexedFunction, RuntimeWorker

log = logging.getLogger("functions_host.timers")

#: An occurrence invoked this late (seconds) is past due, as the host flags it.
PAST_DUE_SECONDS = 1.0

_SETTING = re.compile(r"^%([A-Za-z0-9_.-]+)%$")


class ScheduleError(ValueError):
    """A timer function's schedule is not a six-field NCRONTAB expression."""


def resolve_schedule(schedule: str, environ: Mapping[str, str]) -> str:
    """The schedule's expression, reading a ``%NAME%`` binding expression from the app
    settings; raises ``ScheduleError`` for a missing setting or an invalid expression."""
    expression = schedule.strip()
    named = _SETTING.match(expression)
    if named:
        setting = named.group(1)
        if not environ.get(setting):
            raise ScheduleError(f"the schedule's app setting {setting} is not set")
        expression = environ[setting].strip()
    if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
        raise ScheduleError(
            f"{expression!r} is not a six-field NCRONTAB expression"
            " ({second} {minute} {hour} {day} {month} {day-of-week})"
        )
    return expression


def timer_info(last: datetime | None, due: datetime, following: datetime, now: datetime) -> str:
    """The TimerInfo JSON the host passes as the trigger's value."""
    return orjson.dumps(
        {
            "Schedule": {"AdjustForDST": True},
            "ScheduleStatus": {
                "Last": (last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": following.isoformat(),
                "LastUpdated": due.isoformat(),
            },
            "IsPastDue": (now - due).total_seconds() > PAST_DUE_SECONDS,
        }
    ).decode()


class TimerPump:
    """Invokes each timer-triggered function at its schedule's occurrences, while this
    process holds the timers' lock."""

    def __init__(
        self,
        worker: RuntimeWorker,
        functions: list[IndexedFunction],
        lock_path: Path,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._worker = worker
        self._functions = functions
        self._lock_path = lock_path
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._lock: IO[bytes] | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self._functions:
            return
        schedules: dict[str, str] = {}
        for function in self._functions:
            try:
                schedules[function.name] = resolve_schedule(
                    str(function.trigger.get("schedule", "")), self._environ
                )
            except ScheduleError as exc:
                # The host marks such a function in error and runs the others.
                log.error("timer function %s is disabled: %s", function.name, exc)
        if not schedules or not self._take_lock():
            return
        for function in self._functions:
            if function.name not in schedules:
                continue
            runs_at_start = bool(function.trigger.get("runOnStartup"))
            self._tasks.append(
                asyncio.create_task(self._run(function, schedules[function.name], runs_at_start))
            )

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_all(self._tasks)
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def _take_lock(self) -> bool:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self._lock_path.open("ab")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock = handle
        return True

    async def _run(self, function: IndexedFunction, expression: str, at_start: bool) -> None:
        schedule = croniter(expression, self._clock(), second_at_beginning=True)
        last: datetime | None = None
        if at_start:
            now = self._clock()
            await self._invoke(function, last, now, now)
            last = now
        due: datetime = schedule.get_next(datetime)
        while not self._stopping.is_set():
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
                if self._stopping.is_set():
                    return
            following: datetime = schedule.get_next(datetime)
            # Occurrences that passed while an invocation ran are skipped, as the host does
            # not overlap a timer with itself.
            while following <= self._clock():
                following = schedule.get_next(datetime)
            await self._invoke(function, last, due, following)
            last, due = due, following

    async def _invoke(
        self, function: IndexedFunction, last: datetime | None, due: datetime, following: datetime
    ) -> None:
        protos: Any = self._worker.protos
        binding = protos.ParameterBinding(
            name=str(function.trigger["name"]),
            data=protos.TypedData(json=timer_info(last, due, following, self._clock())),
        )
        try:
            response = await self._worker.invoke(function, [binding])
        except TimeoutError:
            log.error("timer function %s timed out (host.json functionTimeout)", function.name)
            return
        except Exception:
            log.exception("timer function %s could not be invoked", function.name)
            return
        if not self._worker.succeeded(response):
            log.error("timer function %s failed: %s", function.name, self._worker.failure(response))
