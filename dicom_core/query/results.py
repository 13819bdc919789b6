"""What an index returns for a search: one ``SearchMatch`` per result, newest first."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SearchMatch:
    """One study, series or instance that matched, with what the response is built from.

    ``*_watermark`` name the latest stored instance of the result's study and series (and the
    instance itself), whose precomputed DICOM JSON (UTF-8 bytes or text) the ``*_metadata``
    fields hold when the search asked for that level's metadata (None otherwise). The counts
    and modalities are the index's aggregates: NumberOfStudyRelatedSeries/Instances,
    ModalitiesInStudy and, for series and instances, NumberOfSeriesRelatedInstances.
    """

    study_uid: str
    series_uid: str | None
    sop_uid: str | None
    study_watermark: int
    series_watermark: int | None
    instance_watermark: int | None
    study_series: int
    study_instances: int
    modalities: tuple[str, ...]
    series_instances: int | None
    study_metadata: bytes | str | None = None
    series_metadata: bytes | str | None = None
    instance_metadata: bytes | str | None = None
