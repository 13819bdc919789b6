"""Azure Functions route templates, translated and ranked like the Functions host."""

from __future__ import annotations

import pytest

from dicom_core.web.routing import compile_template, sort_key


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("v{version}/studies", "/v2/studies", {"version": "2"}),
        ("v{version}/studies", "/V2/Studies/", {"version": "2"}),
        ("v{version}/studies/{study}", "/v1/studies/1.2.3", {"version": "1", "study": "1.2.3"}),
        ("items/{id:int}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/x", None),
        ("files/{name?}", "/files", {}),
        ("files/{name?}", "/files/a", {"name": "a"}),
        ("{*path}", "/anything/at/all", {"path": "anything/at/all"}),
        ("{*path}", "/", {}),
        ("v{version}/studies", "/studies", None),
        ("v{version}/studies", "/v2/studies/extra", None),
    ],
)
def test_compile_template_matches_like_the_functions_host(
    template: str, path: str, expected: dict[str, str] | None
) -> None:
    assert compile_template(template).match(path) == expected


def test_sort_key_puts_literals_before_parameters_and_catch_all_last() -> None:
    templates = ["{*path}", "v{version}/studies/{study}", "v{version}/studies", "v2/studies"]
    ranked = sorted((compile_template(t) for t in templates), key=sort_key)
    assert [r.template for r in ranked] == [
        "v2/studies",
        "v{version}/studies",
        "v{version}/studies/{study}",
        "{*path}",
    ]
