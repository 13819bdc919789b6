"""Sessions that open a fresh Cosmos DB database at the same moment all get their containers.

The host's worker processes each open the database at their first request. On a fresh
database the SDK's ``create_*_if_not_exists`` read first and created on a 404, so all but one
of several sessions opening together got a 409 for the database or a container, and their
first request was answered 424. Each session here has its own client, as each process has.
"""

from __future__ import annotations

import asyncio
import uuid

from dicom_core.settings import Settings
from dicom_core.storage.azure.clients import CosmosClients
from dicom_core.storage.azure.cosmos_session import CosmosSession
from tests.support.azure_backdoor import cosmos_drop_database
from tools.emulators.launcher import Emulators

SESSIONS = 4


async def test_sessions_opening_a_fresh_database_together_all_get_the_containers(
    emulators: Emulators,
) -> None:
    settings = Settings.from_mapping(
        emulators.environment(database=f"open-{uuid.uuid4().hex[:12]}")
    ).azure
    sessions = [
        CosmosSession(CosmosClients(settings), settings, create_resources=True)
        for _ in range(SESSIONS)
    ]
    try:
        opened = await asyncio.gather(
            *(session.containers() for session in sessions), return_exceptions=True
        )
        failures = [repr(result) for result in opened if isinstance(result, BaseException)]
        assert failures == []
        # Every session's clients name the same containers, and each can be read.
        for containers in opened:
            assert not isinstance(containers, BaseException)
            for container in (containers.index, containers.system, containers.partitioned):
                assert (await container.read())["id"] == container.id
    finally:
        for session in sessions:
            await session.close()
        cosmos_drop_database(settings)
