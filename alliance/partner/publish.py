"""Publishing a segment: read identifiers, normalise, blind, put in a secret-independent order, stream the
points to the exchange, publish, and keep the row -> member map locally (the exchange never gets it).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alliance.partner.blinding import blind_identifiers, sorted_order
from alliance.partner.keystore import AgentStore, LocalSegment
from alliance.partner.progress import Bar
from alliance.partner.psi_client import PsiApi
from privacy.blind import POINT_SIZE
from privacy.keys import epoch_of
from privacy.normalize import DEFAULT_REGION, IdType, normalize_batch

__all__ = ["PublishReport", "publish_canonicals", "publish_identifiers", "read_identifiers"]


@dataclass
class PublishReport:
    """What publishing did: the segment, how many rows were accepted and why others were rejected, and
    where the time went (seconds)."""

    segment_id: str
    size: int
    total_rows: int
    rejected: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)


def read_identifiers(path: str | Path, column: str | None = None) -> list[str | None]:
    """Identifiers from a file. Without ``column``: one identifier per line. With it: a CSV file whose
    ``column`` is a header name, or a 0-based column index of a CSV file without a header row.
    Empty cells come back as ``None`` (counted as rejected, never silently dropped)."""
    with Path(path).open(newline="", encoding="utf-8-sig") as handle:
        if column is None:
            return [line.strip() or None for line in handle.read().splitlines()]
        rows = list(csv.reader(handle))
    if not rows:
        return []
    if column in rows[0]:
        index = rows[0].index(column)
        rows = rows[1:]
    elif column.isdigit():
        index = int(column)
    else:
        raise ValueError(f"no column {column!r} in {path} (columns: {', '.join(rows[0])})")
    return [(row[index].strip() or None) if index < len(row) else None for row in rows]


def publish_identifiers(
    api: PsiApi,
    store: AgentStore,
    values: Sequence[str | None],
    *,
    id_type: IdType | str,
    name: str,
    tags: Sequence[str] = (),
    key_epoch: str | None = None,
    region: str = DEFAULT_REGION,
    executor: Executor | None = None,
    bar: Bar | None = None,
) -> PublishReport:
    """Normalise ``values``, then publish the accepted ones as a new segment (:func:`publish_canonicals`)."""
    started = time.perf_counter()
    normalized = normalize_batch(values, id_type, region=region)
    members = [str(values[a.row]).strip() for a in normalized.accepted]
    seconds = time.perf_counter() - started
    report = publish_canonicals(
        api,
        store,
        normalized.canonicals,
        members,
        id_type=id_type,
        name=name,
        tags=tags,
        key_epoch=key_epoch,
        executor=executor,
        bar=bar,
    )
    report.total_rows = normalized.total
    report.rejected = {str(reason): count for reason, count in normalized.reject_counts().items()}
    report.seconds = {"normalise": seconds, **report.seconds}
    return report


def publish_canonicals(
    api: PsiApi,
    store: AgentStore,
    canonicals: Sequence[bytes],
    members: Sequence[str],
    *,
    id_type: IdType | str,
    name: str,
    tags: Sequence[str] = (),
    key_epoch: str | None = None,
    executor: Executor | None = None,
    bar: Bar | None = None,
) -> PublishReport:
    """Publish already normalised identifiers (``members[i]`` is the brand's id of ``canonicals[i]``).

    The PSI key of ``key_epoch`` (default: the current month) must exist (``keygen``). Raises
    ``PartnerError`` when the exchange refuses a step; a segment left in draft can simply be abandoned.
    """
    if not canonicals:
        raise ValueError("no identifier could be normalised; nothing to publish")
    if len(members) != len(canonicals):
        raise ValueError("one member id per identifier is needed")
    epoch = key_epoch or epoch_of(datetime.now(UTC))
    scalar = store.psi_key(epoch).scalar
    seconds: dict[str, float] = {}
    started = mark = time.perf_counter()
    segment = api.create_segment(name, str(IdType(id_type)), len(canonicals), epoch, list(tags))
    alliance_id = str(segment["alliance_id"]).encode()
    advance = bar("blinding", len(canonicals)) if bar else None
    blinded = blind_identifiers(alliance_id, scalar, canonicals, executor=executor, progress=advance)
    seconds["blind"] = time.perf_counter() - mark

    mark = time.perf_counter()
    order = sorted_order(blinded)
    published = b"".join([blinded[i * POINT_SIZE : (i + 1) * POINT_SIZE] for i in order])
    members_published = [members[i] for i in order]
    del blinded
    seconds["order"] = time.perf_counter() - mark

    mark = time.perf_counter()
    upload = bar("uploading (bytes)", len(published)) if bar else None
    api.upload_items(segment["id"], published, progress=upload)
    api.publish_segment(segment["id"])
    seconds["upload"] = time.perf_counter() - mark
    mark = time.perf_counter()
    store.save_segment(
        LocalSegment(segment["id"], name, str(IdType(id_type)), epoch, len(canonicals), tuple(sorted(set(tags)))),
        members_published,
    )
    seconds["save_map"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return PublishReport(segment["id"], len(canonicals), len(canonicals), {}, seconds)
