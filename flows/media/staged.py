"""An input staged for the API: what the tasks that stage it and the provenance that records it share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StagedMedia:
    """An input ready for the API: the URL it fetches, and where it sits in storage (None for plain URLs)."""

    url: str
    key: str | None
    name: str
    sha256: str | None = None
