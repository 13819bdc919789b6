"""``MetadataService`` on the fakes: the ETag a revalidation is answered with comes from the
index's version of the resource, and never from reading or hashing the instances' JSON."""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.errors import NotFound
from dicom_core.services.external_metadata import ExternalMetadataService, parse_headers
from dicom_core.services.metadata import MetadataService
from dicom_core.storage.ports import ExternalValue
from tests.fakes import Fakes
from tests.support.index_rows import add_instance

STUDY, SERIES = str(generate_uid()), str(generate_uid())


def external(value: str) -> list[ExternalValue]:
    return parse_headers([("msdicom-meta-LO-00291001", value)])


def service(fakes: Fakes) -> MetadataService:
    return MetadataService(
        fakes.index, external_metadata=ExternalMetadataService(fakes.external_metadata)
    )


async def test_a_revalidation_reads_no_instance_json(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        await add_instance(fakes.index, STUDY, SERIES, generate_uid())
    metadata = service(fakes)
    document = await metadata.retrieve_metadata(STUDY, SERIES, partition=1)

    async def no_json(*args: object, **kwargs: object) -> list[bytes]:
        raise AssertionError("a revalidation read the instances' JSON")

    monkeypatch.setattr(fakes.index, "get_metadata", no_json)
    monkeypatch.setattr(fakes.index, "get_versioned_metadata", no_json)
    assert await metadata.current_etag(STUDY, SERIES, partition=1) == document.etag


async def test_a_200_reads_the_documents_and_their_version_in_one_index_call(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        await add_instance(fakes.index, STUDY, SERIES, generate_uid())
    metadata = service(fakes)

    async def second_read(*args: object, **kwargs: object) -> None:
        raise AssertionError("a 200 read the index twice")

    with monkeypatch.context() as patched:
        patched.setattr(fakes.index, "metadata_version", second_read)
        patched.setattr(fakes.index, "get_metadata", second_read)
        document = await metadata.retrieve_metadata(STUDY, SERIES, partition=1)
    assert document.body.count(b"},{") == 1  # two instances
    assert document.etag == await metadata.current_etag(STUDY, SERIES, partition=1)


async def test_the_etag_changes_with_the_instances_and_not_otherwise(fakes: Fakes) -> None:
    metadata = service(fakes)
    first = generate_uid()
    await add_instance(fakes.index, STUDY, SERIES, first)
    before = await metadata.current_etag(STUDY, SERIES, partition=1)
    assert await metadata.current_etag(STUDY, SERIES, partition=1) == before
    await add_instance(fakes.index, STUDY, SERIES, generate_uid())
    after = await metadata.current_etag(STUDY, SERIES, partition=1)
    assert after != before
    await fakes.index.delete_instances(STUDY, SERIES, first, partition=1)
    assert await metadata.current_etag(STUDY, SERIES, partition=1) not in (before, after)


async def test_a_resource_without_instances_is_404(fakes: Fakes) -> None:
    with pytest.raises(NotFound):
        await service(fakes).current_etag(generate_uid(), partition=1)


async def test_with_external_metadata_the_body_and_its_tag_come_from_one_read(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that changes the study's external value between two reads must not leave a
    body with one value under the tag of another (a later 304 would then keep it)."""
    study_uid = {"0020000D": {"vr": "UI", "Value": [STUDY]}}
    await add_instance(fakes.index, STUDY, SERIES, generate_uid(), metadata=study_uid)
    await fakes.external_metadata.save([STUDY], external("first"), partition=1)
    metadata = service(fakes)
    reads = 0
    original = fakes.external_metadata.study_values

    async def changing(
        study_uids: Sequence[str], *, partition: int
    ) -> dict[str, list[tuple[str, str, str]]]:
        nonlocal reads
        reads += 1
        values = await original(study_uids, partition=partition)
        # A concurrent store changes the value after each read.
        await fakes.external_metadata.save([STUDY], external(f"v{reads}"), partition=1)
        return values

    monkeypatch.setattr(fakes.external_metadata, "study_values", changing)
    document = await metadata.retrieve_metadata(
        STUDY, SERIES, api_version=2, with_external_metadata=True, partition=1
    )
    assert reads == 1
    assert orjson.loads(document.body)[0]["00291001"]["Value"] == ["first"]
    monkeypatch.setattr(fakes.external_metadata, "study_values", original)
    await fakes.external_metadata.save([STUDY], external("first"), partition=1)
    assert (
        await metadata.current_etag(
            STUDY, SERIES, api_version=2, with_external_metadata=True, partition=1
        )
        == document.etag
    )
