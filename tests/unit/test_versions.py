"""URL version segments read as Azure's API versioning reads them."""

from __future__ import annotations

import pytest

from dicom_core.web.versions import version_of


@pytest.mark.parametrize(
    ("segment", "version"),
    [
        ("1", 1),
        ("1.0", 1),
        ("01", 1),
        ("1.0-prerelease", 1),
        ("1.0-PreRelease", 1),
        ("2", 2),
        ("2.0", 2),
    ],
)
def test_the_versions_azure_serves(segment: str, version: int) -> None:
    assert version_of(segment) == version


@pytest.mark.parametrize(
    "segment", ["", "3", "1.1", "2-prerelease", "1.0-beta", "1.0.0", "v1", "\u0661", "9" * 6]
)
def test_other_segments_are_no_version(segment: str) -> None:
    assert version_of(segment) is None
