"""The checkpoint of an operation that walks the stored instances in watermark order.

Every instance has a watermark, increasing with each store. An operation fixes the highest
watermark when it starts (``until``) and walks ``after < watermark <= until`` one bounded batch
at a time; the checkpoint is how far it got. Instances stored later are not its business (the
store path handles them), and an instance deleted between batches is simply not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class WatermarkCheckpoint:
    """Instances with ``after < watermark <= until`` remain; ``done`` of ``total`` are."""

    after: int
    until: int
    total: int
    done: int

    @classmethod
    def start(cls, until: int, total: int) -> WatermarkCheckpoint:
        return cls(after=0, until=until, total=total, done=0)

    def advanced(
        self, last_watermark: int | None, count: int, *, finished: bool
    ) -> WatermarkCheckpoint:
        """The checkpoint after a batch of ``count`` instances ending at ``last_watermark``
        (None: the batch was empty). ``done`` never passes ``total``, and is ``total`` once
        finished, whatever was deleted meanwhile."""
        return WatermarkCheckpoint(
            after=self.until if last_watermark is None else last_watermark,
            until=self.until,
            total=self.total,
            done=self.total if finished else min(self.done + count, self.total),
        )

    def to_json(self) -> dict[str, Any]:
        return {"after": self.after, "until": self.until, "total": self.total, "done": self.done}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> WatermarkCheckpoint:
        return cls(
            after=int(body["after"]),
            until=int(body["until"]),
            total=int(body["total"]),
            done=int(body["done"]),
        )
