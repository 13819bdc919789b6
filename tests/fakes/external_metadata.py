"""``FakeExternalMetadataStore``: tag VRs and study values in dicts."""

from __future__ import annotations

from collections.abc import Sequence

from dicom_core.storage.ports import ExternalValue, ExternalVrConflict


class FakeExternalMetadataStore:
    """The ``ExternalMetadataStore`` port: each tag's VR fixed the first time it is saved."""

    def __init__(self) -> None:
        self.vrs: dict[str, str] = {}
        self.values: dict[tuple[int, str], dict[str, tuple[str, str]]] = {}
        """(partition, study UID) -> tag -> (VR, value)."""

    async def tag_vrs(self, tags: Sequence[str]) -> dict[str, str]:
        return {tag: self.vrs[tag] for tag in tags if tag in self.vrs}

    async def save(
        self, study_uids: Sequence[str], values: Sequence[ExternalValue], *, partition: int
    ) -> None:
        for value in values:  # all checked before anything is written: all or nothing
            fixed = self.vrs.get(value.tag)
            if fixed is not None and fixed != value.vr:
                raise ExternalVrConflict(value.tag, fixed)
        for value in values:
            self.vrs.setdefault(value.tag, value.vr)
            for study_uid in study_uids:
                entry = self.values.setdefault((partition, study_uid), {})
                entry[value.tag] = (value.vr, value.value)

    async def study_values(
        self, study_uids: Sequence[str], *, partition: int
    ) -> dict[str, list[tuple[str, str, str]]]:
        return {
            uid: [
                (tag, vr, value)
                for tag, (vr, value) in sorted(self.values[(partition, uid)].items())
            ]
            for uid in study_uids
            if (partition, uid) in self.values
        }

    async def known_tags(self) -> dict[str, str]:
        return dict(self.vrs)
