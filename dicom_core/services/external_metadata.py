"""External metadata (spec/external-metadata.md): study-level private values sent as STOW
headers ``msdicom-meta-{VR}-{TagPath}``, returned and searchable with ``msdicom-request-meta``.

Why validation happens before the body is read: one bad header, or a VR that contradicts the
VR the tag was first stored with, fails the whole transaction, so nothing may be stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dicom_core.errors import BadRequest, Conflict
from dicom_core.query.attributes import matching_for_vr
from dicom_core.query.conditions import EXTERNAL_METADATA_PATH, QueryAttribute, QueryLevel
from dicom_core.query.indexed_values import InvalidValue, index_value
from dicom_core.storage.ports import ExternalMetadataStore, ExternalValue, ExternalVrConflict

HEADER_PREFIX = "msdicom-meta-"
REQUEST_HEADER = "msdicom-request-meta"
#: External metadata is a v2 feature: v1 requests neither store nor return it.
FIRST_API_VERSION = 2
STUDY_INSTANCE_UID = "0020000D"
PRIVATE_CREATOR = "Microsoft"
# The spec's table: the extended query tag VRs without DS.
SUPPORTED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "FD", "FL", "IS", "LO", "PN", "SH", "SL", "SS", "TM", "UI"}
    | {"UL", "US"}
)
_NAME = re.compile(r"([A-Za-z]{2})-([0-9A-Fa-f]{8})")


def attribute(tag: str, vr: str) -> QueryAttribute:
    return QueryAttribute(
        tag=tag,
        keyword=tag,
        vr=vr,
        level=QueryLevel.STUDY,
        matching=matching_for_vr(vr),
        extended=True,
        path=(EXTERNAL_METADATA_PATH, tag),
        private_creator=PRIVATE_CREATOR,
    )


def creator_tag(tag: str) -> str | None:
    """The private creator element of a private tag (``001910FF`` -> ``00190010``); None for
    an element of the creators' own block (``gggg,0010-00FF``, such as the spec's example
    ``001900FF``), whose "creator" would be the group length (``gggg,0000``)."""
    if tag[4:6] == "00":
        return None
    return f"{tag[:4]}00{tag[4:6]}"


def requested(headers: Mapping[str, str]) -> bool:
    return headers.get(REQUEST_HEADER, "").strip().lower() == "true"


def parse_headers(headers: Iterable[tuple[str, str]]) -> list[ExternalValue]:
    """Validate the ``msdicom-meta-*`` headers; 400 naming the first bad one."""
    values: dict[str, ExternalValue] = {}
    for name, raw in headers:
        lowered = name.lower()
        if not lowered.startswith(HEADER_PREFIX):
            continue
        match = _NAME.fullmatch(name[len(HEADER_PREFIX) :])
        if match is None:
            raise BadRequest(
                f"The header '{name}' is not of the form msdicom-meta-{{VR}}-{{TagPath}}"
                " (TagPath: 8 hex digits)."
            )
        vr, tag = match.group(1).upper(), match.group(2).upper()
        if vr not in SUPPORTED_VRS:
            raise BadRequest(f"The header '{name}' has the unsupported VR {vr}.")
        group = int(tag[:4], 16)
        if group % 2 == 0 or group <= 0x0007 or group == 0xFFFF:
            raise BadRequest(
                f"The header '{name}' names {tag}, which is not a private tag; only private"
                " tags can be external metadata."
            )
        if int(tag[4:], 16) < 0x0010:
            raise BadRequest(f"The header '{name}' names a reserved private element {tag}.")
        if tag in values:
            raise BadRequest(f"The tag {tag} is given in more than one msdicom-meta header.")
        try:
            indexed = index_value(raw, attribute(tag, vr))
        except InvalidValue as exc:
            raise BadRequest(f"The header '{name}' has an invalid value: {exc}") from exc
        if indexed is None:
            continue  # empty values are not stored (the spec: null or empty is not indexed)
        values[tag] = ExternalValue(tag=tag, vr=vr, value=raw.strip(), indexed=indexed)
    return list(values.values())


class ExternalMetadataService:
    def __init__(self, store: ExternalMetadataStore) -> None:
        self._store = store

    async def check(self, values: Sequence[ExternalValue]) -> None:
        """409 when a tag exists with another VR: the VR of a tag is fixed once created."""
        if not values:
            return
        existing = await self._store.tag_vrs([v.tag for v in values])
        for value in values:
            known = existing.get(value.tag)
            if known is not None and known != value.vr:
                raise Conflict(
                    f"The external metadata tag {value.tag} exists with VR {known};"
                    f" it cannot be stored as {value.vr}."
                )

    async def save(
        self, study_uids: Sequence[str], values: Sequence[ExternalValue], *, partition: int
    ) -> None:
        if values and study_uids:
            try:
                await self._store.save(sorted(set(study_uids)), values, partition=partition)
            except ExternalVrConflict as exc:
                raise Conflict(
                    f"The external metadata tag {exc.tag} exists with VR {exc.vr}."
                ) from exc

    async def elements(
        self, study_uids: Sequence[str], *, partition: int
    ) -> dict[str, dict[str, Any]]:
        """DICOM JSON elements (with the private creator ``Microsoft``) per study of the
        partition."""
        out: dict[str, dict[str, Any]] = {}
        found = await self._store.study_values(study_uids, partition=partition)
        for study, rows in found.items():
            elements: dict[str, Any] = {}
            for tag, vr, value in rows:
                creator = creator_tag(tag)
                if creator is not None:
                    elements[creator] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
                elements[tag] = {"vr": vr, "Value": [_json_value(vr, value)]}
            out[study] = elements
        return out

    async def attributes(self) -> list[QueryAttribute]:
        return [attribute(tag, vr) for tag, vr in (await self._store.known_tags()).items()]

    async def add_to(
        self, datasets: Sequence[dict[str, Any]], *, partition: int
    ) -> list[dict[str, Any]] | None:
        """DICOM JSON datasets of the partition (search results, instance metadata) with their
        studies' external elements, which win over the dataset's own; a dataset given some is
        re-sorted into tag order, the others are returned as they are. None when no study has
        any (the caller keeps what it has, a stored metadata document and its ETag for
        instance)."""
        studies = sorted({_study_of(d) for d in datasets})
        return merge(datasets, await self.elements(studies, partition=partition))


def merge(
    datasets: Sequence[dict[str, Any]], elements: dict[str, dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """``datasets`` with the external ``elements`` of their studies (as ``elements`` reads
    them), for a caller that read them already; None when there are none."""
    if not elements:
        return None
    merged: list[dict[str, Any]] = []
    for dataset in datasets:
        extra = elements.get(_study_of(dataset))
        merged.append(dict(sorted({**dataset, **extra}.items())) if extra else dataset)
    return merged


def _study_of(dataset: dict[str, Any]) -> str:
    values = dataset.get(STUDY_INSTANCE_UID, {}).get("Value") or [""]
    return str(values[0])


def _json_value(vr: str, value: str) -> Any:
    if vr == "PN":
        return {"Alphabetic": value}
    if vr in ("FD", "FL"):
        return float(value)
    if vr in ("IS", "SL", "SS", "UL", "US"):
        return int(float(value))
    return value
