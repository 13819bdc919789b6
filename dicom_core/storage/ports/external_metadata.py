"""The external-metadata port: study-level private values sent as STOW headers
(spec/external-metadata.md), each tag's VR fixed the first time it is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dicom_core.query.indexed_values import IndexedValue


@dataclass(frozen=True, slots=True)
class ExternalValue:
    """One validated header: the tag, its VR, the raw value and its index forms."""

    tag: str
    vr: str
    value: str
    indexed: IndexedValue


class ExternalVrConflict(Exception):
    """The tag was fixed with another VR (by a concurrent request); the store answers 409."""

    def __init__(self, tag: str, vr: str) -> None:
        super().__init__(f"{tag} {vr}")
        self.tag = tag
        self.vr = vr


class ExternalMetadataStore(Protocol):
    """The known external tags with their VRs, and the values stored per study."""

    async def tag_vrs(self, tags: Sequence[str]) -> dict[str, str]:
        """The VR each of ``tags`` was fixed with (tags never stored are absent)."""
        ...

    async def save(
        self, study_uids: Sequence[str], values: Sequence[ExternalValue], *, partition: int
    ) -> None:
        """Fix each new tag's VR (tags are global) and upsert the values of the partition's
        studies (all or nothing)."""
        ...

    async def study_values(
        self, study_uids: Sequence[str], *, partition: int
    ) -> dict[str, list[tuple[str, str, str]]]:
        """(tag, vr, value) per study of the partition."""
        ...

    async def known_tags(self) -> dict[str, str]: ...
