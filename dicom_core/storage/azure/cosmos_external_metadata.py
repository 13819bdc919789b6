"""External metadata (STOW ``msdicom-meta-*`` headers) on Cosmos DB.

Values are documents of the ``system`` container next to the extended query tag values
(``kind`` "xval" in ``pk`` = ``v|{study}``, ``v|{dp}|{study}`` outside Microsoft.Default, see
``cosmos_extended_values``, which also holds the QIDO over them). Each tag's VR is fixed by
the first store that uses it, in a create-only registry: ``kind`` "xtag", ``id`` the tag,
``pk`` = "xmeta-tags".
"""

from __future__ import annotations

from collections.abc import Sequence

from azure.cosmos.exceptions import CosmosResourceExistsError

from dicom_core.storage.azure.cosmos_extended_values import EXTERNAL_KIND
from dicom_core.storage.azure.cosmos_io import query_items, read_item
from dicom_core.storage.azure.cosmos_placement import placement_of
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession
from dicom_core.storage.ports import ExternalValue, ExternalVrConflict

XTAG_PARTITION = "xmeta-tags"
XTAG_KIND = "xtag"


class CosmosExternalMetadataStore:
    """``ExternalMetadataStore`` on Cosmos DB: a create-only registry fixes each tag's VR."""

    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def known_tags(self) -> dict[str, str]:
        rows = await self._session.run(
            lambda c: query_items(
                c.system,
                "SELECT c.tag, c.vr FROM c WHERE c.pk = @pk",
                {"@pk": XTAG_PARTITION},
                partition=XTAG_PARTITION,
            )
        )
        return {str(r["tag"]): str(r["vr"]) for r in rows}

    async def tag_vrs(self, tags: Sequence[str]) -> dict[str, str]:
        wanted = set(tags)
        return {t: vr for t, vr in (await self.known_tags()).items() if t in wanted}

    async def save(
        self, study_uids: Sequence[str], values: Sequence[ExternalValue], *, partition: int
    ) -> None:
        """Register every tag's VR first (a conflict writes no value), then the values.

        A tag's VR is one for every data partition, as Azure's external metadata tags are."""
        placement = placement_of(partition)

        async def write(c: Containers) -> None:
            for value in values:
                entry = {"id": value.tag, "pk": XTAG_PARTITION, "kind": XTAG_KIND}
                try:
                    await c.system.create_item({**entry, "tag": value.tag, "vr": value.vr})
                except CosmosResourceExistsError:
                    found = await read_item(c.system, value.tag, XTAG_PARTITION)
                    vr = str(found["vr"]) if found else value.vr
                    if vr != value.vr:  # another request fixed it first
                        raise ExternalVrConflict(value.tag, vr) from None
            for study in study_uids:
                for value in values:
                    await c.system.upsert_item(
                        {
                            "id": f"x|{value.tag}",
                            "pk": placement.values_partition(study),
                            **placement.fields(),
                            "kind": EXTERNAL_KIND,
                            "study": study,
                            "tag": value.tag,
                            "vr": value.vr,
                            "text": value.value,
                            "num": value.indexed.number,
                            "norm": value.indexed.norm,
                        }
                    )

        await self._session.run(write)

    async def study_values(
        self, study_uids: Sequence[str], *, partition: int
    ) -> dict[str, list[tuple[str, str, str]]]:
        placement = placement_of(partition)

        async def read(c: Containers) -> dict[str, list[tuple[str, str, str]]]:
            out: dict[str, list[tuple[str, str, str]]] = {}
            for study in study_uids:
                values = placement.values_partition(study)
                rows = await query_items(
                    c.system,
                    "SELECT c.tag, c.vr, c.text FROM c WHERE c.pk = @pk AND c.kind = @kind",
                    {"@pk": values, "@kind": EXTERNAL_KIND},
                    partition=values,
                )
                if rows:
                    out[study] = sorted((str(r["tag"]), str(r["vr"]), str(r["text"])) for r in rows)
            return out

        return await self._session.run(read)
