"""The 404 of a path no route serves names the path, and suggests a version only when the
path lacks one (a probe's '/v2/studies;x=y' was told that URLs start with a version)."""

from __future__ import annotations

import orjson

from dicom_core.web.responses import unknown_route


def message(path: str) -> str:
    response = unknown_route(path)
    assert response.status_code == 404
    return str(orjson.loads(bytes(response.body))["message"])


def test_a_path_without_a_version_is_told_to_start_with_one() -> None:
    text = message("studies")
    assert "'/studies'" in text
    assert "URLs start with an API version: /v1.0-prerelease, /v1, /v2" in text


def test_a_path_with_a_version_is_told_to_check_the_rest() -> None:
    for path in ("/v2/studies;x=y", "/v1.0/studies;x=y", "/v1.0-prerelease/nothing"):
        text = message(path)
        assert f"'{path}'" in text and "start with an API version" not in text
        assert "after the version" in text
