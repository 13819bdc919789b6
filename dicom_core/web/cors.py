"""CORS: browser viewers (OHIF) on another origin calling QIDO-RS and WADO-RS.

Applied in the function path, so the local host and Azure answer alike, to every response:
successes, errors, 404s of unknown paths and streamed bodies (only headers are added, the
body iterator is left alone). Preflight requests (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) are answered here before any token is asked for, because
browsers never send credentials with a preflight. The Function App's platform CORS must stay
unset: when set, the platform answers preflights itself and these settings are ignored.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.settings import CorsSettings
from dicom_core.web import responses


def is_preflight(request: Request) -> bool:
    return (
        request.method.upper() == "OPTIONS"
        and "origin" in request.headers
        and "access-control-request-method" in request.headers
    )


class CorsPolicy:
    """Which origins may read our answers, and what their preflights are told."""

    def __init__(self, settings: CorsSettings) -> None:
        self._settings = settings
        self._any = "*" in settings.origins
        self._origins = frozenset(settings.origins)
        self._headers_wildcard = "*" in settings.headers

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    def allows(self, origin: str) -> bool:
        return self._any or origin.rstrip("/").lower() in self._origins

    def _allow_origin(self, origin: str) -> str:
        # "*" is only sent when no credentials are allowed; otherwise the origin is echoed.
        return "*" if self._any and not self._settings.allow_credentials else origin

    def preflight(self, request: Request) -> Response:
        origin = request.headers["origin"]
        if not self.allows(origin):
            return responses.error(403, f"Cross-origin requests from {origin} are not allowed.")
        settings = self._settings
        if self._headers_wildcard:
            # Echo what was asked: a literal "*" does not cover Authorization in browsers.
            allow_headers = request.headers.get("access-control-request-headers", "")
        else:
            allow_headers = ", ".join(settings.headers)
        headers = {
            "Access-Control-Allow-Origin": self._allow_origin(origin),
            "Access-Control-Allow-Methods": ", ".join(settings.methods),
            "Access-Control-Max-Age": str(settings.max_age),
            "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        }
        if allow_headers:
            headers["Access-Control-Allow-Headers"] = allow_headers
        if settings.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return Response(status_code=204, headers=headers)

    def decorate(self, request: Request, response: Response) -> Response:
        """Add the CORS headers of an actual request to ``response`` (any status, any body)."""
        origin = request.headers.get("origin")
        if not self.enabled or not origin or not self.allows(origin):
            return response
        settings = self._settings
        response.headers["Access-Control-Allow-Origin"] = self._allow_origin(origin)
        if settings.expose_headers:
            response.headers["Access-Control-Expose-Headers"] = ", ".join(settings.expose_headers)
        if settings.allow_credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"
        vary = response.headers.get("vary")
        if not vary:
            response.headers["Vary"] = "Origin"
        elif "origin" not in vary.lower():
            response.headers["Vary"] = f"{vary}, Origin"
        return response


__all__ = ["CorsPolicy", "is_preflight"]
