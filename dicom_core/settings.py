"""Settings, read once from a mapping (the environment, or a dict in tests).

Nothing reads ``os.environ`` at import time: ``Settings.from_mapping`` is called by the
composition root when the first request needs services, so tests can pass plain dicts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3
MIB = 1024**2


class SettingsError(ValueError):
    """A setting has a value the service cannot work with; the message names the setting."""


def _int(values: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = values.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(values: Mapping[str, str], name: str, default: bool) -> bool:
    raw = values.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the service reads. Documented one by one in local.settings.json.example."""

    storage: str = "local"
    data_dir: Path = Path(".data")
    max_request_bytes: int = 4 * GIB
    max_transcode_bytes: int = 100 * MIB
    stale_create_seconds: int = 3600
    staging_dir: Path | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        storage = (values.get("DICOM_STORAGE") or "local").strip().lower()
        if storage not in {"local", "azure"}:
            raise SettingsError(f"DICOM_STORAGE must be 'local' or 'azure', got {storage!r}")
        data_dir = Path(values.get("DATA_DIR") or ".data")
        staging = values.get("DICOM_STAGING_DIR")
        return cls(
            storage=storage,
            data_dir=data_dir,
            max_request_bytes=_int(values, "DICOM_MAX_REQUEST_BYTES", 4 * GIB, minimum=1),
            max_transcode_bytes=_int(values, "DICOM_MAX_TRANSCODE_BYTES", 100 * MIB, minimum=1),
            stale_create_seconds=_int(values, "DICOM_STALE_CREATE_SECONDS", 3600, minimum=1),
            staging_dir=Path(staging) if staging else None,
        )

    @classmethod
    def from_environment(cls) -> Settings:
        return cls.from_mapping(os.environ)

    @property
    def effective_staging_dir(self) -> Path:
        """Where request bodies are spooled while a STOW part is parsed.

        On the local backend it sits inside the data directory, so a stored file is moved into
        place with a rename instead of being copied a second time.
        """
        return self.staging_dir or (self.data_dir / "staging")


__all__ = ["GIB", "MIB", "Settings", "SettingsError"]
