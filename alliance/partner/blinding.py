"""The agent's bulk crypto: hash-and-blind its own identifiers, re-blind a counterparty's points, and put
records in a secret-independent order - all spread over a process pool when one is given.

Order ("shuffle"): the agent sorts blinded records by value instead of drawing a random permutation.
The values are pseudorandom to anyone without the blinding scalar, so the sorted order is a
deterministic function of the *set* alone and says nothing about the input order - the property a
shuffle exists for (DESIGN.md §3) - while costing a fraction of a CSPRNG shuffle of a million records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from itertools import repeat

from privacy.blind import POINT_SIZE, blind_batch, hash_and_blind_batch

__all__ = ["WORK_CHUNK", "blind_identifiers", "reblind", "sorted_order", "sorted_records"]

WORK_CHUNK = 16_384  # items per job handed to a worker process (and per progress step)


def blind_identifiers(
    alliance_id: bytes,
    scalar: bytes,
    canonicals: Sequence[bytes],
    *,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = WORK_CHUNK,
) -> bytes:
    """``X25519(scalar, hash_to_point(alliance_id, x))`` for every identifier, in input order.

    Work smaller than one chunk stays in this process, so a pool's workers start only when needed."""
    chunks = [list(canonicals[i : i + chunk]) for i in range(0, len(canonicals), chunk)]
    mapper = executor.map if executor is not None and len(chunks) > 1 else map
    parts = []
    for part in mapper(hash_and_blind_batch, repeat(alliance_id), repeat(scalar), chunks):
        parts.append(part)
        if progress is not None:
            progress(len(part) // POINT_SIZE)
    return b"".join(parts)


def reblind(
    scalar: bytes,
    points: bytes,
    *,
    executor: Executor | None = None,
    progress: Callable[[int], None] | None = None,
    chunk: int = WORK_CHUNK,
) -> bytes:
    """``X25519(scalar, p)`` for every 32-byte record of ``points``, in input order."""
    step = chunk * POINT_SIZE
    chunks = [points[i : i + step] for i in range(0, len(points), step)]
    mapper = executor.map if executor is not None and len(chunks) > 1 else map
    parts = []
    for part in mapper(blind_batch, repeat(scalar), chunks):
        parts.append(part)
        if progress is not None:
            progress(len(part) // POINT_SIZE)
    return b"".join(parts)


def _records(points: bytes) -> list[bytes]:
    return [points[i : i + POINT_SIZE] for i in range(0, len(points), POINT_SIZE)]


def sorted_order(points: bytes) -> list[int]:
    """The permutation that sorts the records by value: published position j holds input row order[j]."""
    records = _records(points)
    return sorted(range(len(records)), key=records.__getitem__)


def sorted_records(points: bytes) -> bytes:
    """The records sorted by value (the agent's shuffle of a re-blinded set)."""
    records = _records(points)
    records.sort()
    return b"".join(records)
