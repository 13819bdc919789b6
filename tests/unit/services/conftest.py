"""Services wired to the in-memory fakes (``tests.fakes``): no server, no emulator, no disk
beyond the parts a store receives."""

from __future__ import annotations

import pytest

from tests.fakes import Fakes


@pytest.fixture()
def fakes() -> Fakes:
    return Fakes()
