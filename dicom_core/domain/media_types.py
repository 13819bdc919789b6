"""The media types DICOMweb speaks (PS3.18 8.7.3, 8.7.4; conformance statement).

Why here, in the domain: rendering (``domain.render``) chooses its image encoding by media
type, and the web layer negotiates, parses and writes the same names. One module keeps one
spelling for each, whichever layer uses it; wildcards (``*/*``, ``image/*``) belong to
negotiation and stay there.
"""

from __future__ import annotations

from typing import Final

DICOM: Final = "application/dicom"
DICOM_JSON: Final = "application/dicom+json"
JSON: Final = "application/json"
OCTET_STREAM: Final = "application/octet-stream"
MULTIPART_RELATED: Final = "multipart/related"
JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
IMAGE_JP2: Final = "image/jp2"
