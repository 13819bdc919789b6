"""The one door every HTTP request passes: CORS preflight, then the token, then the handler.

``context.handle`` (every DICOMweb route) and the catch-all route call ``guard``, so the rules
hold for known routes, unknown paths and errors alike, in the local host and in Azure.
Preflights and other ``OPTIONS`` requests need no token (browsers send none with them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.settings import Settings
from dicom_core.web.auth import Authenticator
from dicom_core.web.cors import CorsPolicy, is_preflight


class Gate:
    """The CORS policy and the authenticator of one settings object (its key cache too)."""

    def __init__(self, settings: Settings) -> None:
        self.cors = CorsPolicy(settings.cors)
        self.auth = Authenticator(settings.auth) if settings.auth.enabled else None

    async def guard(self, request: Request, run: Callable[[], Awaitable[Response]]) -> Response:
        if is_preflight(request) and self.cors.enabled:
            return self.cors.preflight(request)
        denial = None
        if self.auth is not None and request.method.upper() != "OPTIONS":
            denial = await self.auth.check(request)
        response = denial if denial is not None else await run()
        return self.cors.decorate(request, response)


__all__ = ["Gate"]
