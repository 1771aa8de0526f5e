"""Wire schemas for segments. The points themselves never travel as JSON: they are streamed as
``application/octet-stream`` bodies of concatenated 32-byte records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from privacy.normalize import IdType

__all__ = ["SegmentCreate", "SegmentOut"]

Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
Epoch = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class SegmentCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Metadata of a new segment. ``size`` is the exact number of points the agent will upload."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
    id_type: IdType
    size: Annotated[int, msgspec.Meta(ge=1)]
    key_epoch: Epoch
    tags: Annotated[list[Tag], msgspec.Meta(max_length=20)] = []


class SegmentOut(msgspec.Struct):
    """A segment as its owner sees it (the manifest, plus upload progress).

    ``alliance_id`` is the domain-separation id agents must hash with (privacy.blind.hash_to_point).
    """

    id: str
    name: str
    id_type: str
    size: int
    key_epoch: str
    tags: list[str]
    status: str
    item_count: int
    items_sha256: str | None
    alliance_id: str
    created_at: datetime
    published_at: datetime | None
