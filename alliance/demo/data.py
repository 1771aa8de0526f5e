"""Synthetic member bases for the demo brands: real-looking CN mobile numbers with a chosen overlap
structure, a few formatting variants and a few rows that do not normalise. Deterministic for a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from itertools import combinations

__all__ = ["BRANDS", "MIN_SCALE", "OVERLAP", "DemoBrand", "MemberBases", "member_bases", "pair_rate"]


@dataclass(frozen=True)
class DemoBrand:
    key: str
    name: str
    category: str


BRANDS: tuple[DemoBrand, ...] = (
    DemoBrand("cotton", "棉里 Cotton Home", "home cotton goods"),
    DemoBrand("fruit", "鲜果时光 Fruit Time", "fruit chain"),
    DemoBrand("bakery", "麦香 Golden Wheat Bakery", "bakery"),
    DemoBrand("appliances", "智家 SmartHome Appliances", "home appliances"),
    DemoBrand("travel", "行远 Voyage Travel", "travel"),
    DemoBrand("school", "言语 Lingo School", "language school"),
)

MIN_SCALE = 1000  # segments smaller than the exchange's minimum size (ALLIANCE_PSI_MIN_SEGMENT_SIZE) are refused

# Share of a brand's members also in the other brand's base (both brands have the same size).
OVERLAP: dict[frozenset[str], float] = {
    frozenset(("bakery", "fruit")): 0.22,
    frozenset(("travel", "school")): 0.18,
    frozenset(("appliances", "cotton")): 0.09,
    frozenset(("cotton", "bakery")): 0.05,
    frozenset(("cotton", "fruit")): 0.04,
    frozenset(("fruit", "appliances")): 0.03,
    frozenset(("travel", "appliances")): 0.03,
    frozenset(("school", "bakery")): 0.02,
    frozenset(("travel", "cotton")): 0.02,
    frozenset(("fruit", "travel")): 0.02,
    frozenset(("bakery", "appliances")): 0.015,
    frozenset(("school", "fruit")): 0.015,
    frozenset(("travel", "bakery")): 0.01,
    frozenset(("school", "cotton")): 0.01,
    frozenset(("school", "appliances")): 0.004,
}

# Mobile prefixes that `phonenumbers` accepts as CN mobile numbers.
_PREFIXES = (
    *range(130, 140),
    *(150, 151, 152, 153, 155, 156, 157, 158, 159),
    *range(180, 190),
)
_INVALID = ("", "12345", "not a phone", "+86 100 0000 0000", "138-1234", "n/a")


def pair_rate(a: str, b: str) -> float:
    return OVERLAP[frozenset((a, b))]


@dataclass
class MemberBases:
    """Per brand key: the raw rows of its member file (valid numbers in several formats, duplicates and
    invalid rows), and per pair the exact number of people the two bases share."""

    rows: dict[str, list[str | None]]
    common: dict[frozenset[str], int]
    valid: dict[str, int]


def _format(number: str, style: int) -> str:
    if style == 0:
        return f"+86 {number[:3]} {number[3:7]} {number[7:]}"
    if style == 1:
        return f"{number[:3]}-{number[3:7]}-{number[7:]}"
    return number


def member_bases(scale: int, seed: int) -> MemberBases:
    """About ``scale`` valid members per brand; pair (a, b) shares ``round(rate * scale)`` people exactly
    (people are in at most two bases, so the shared counts are exact and easy to check)."""
    if scale < MIN_SCALE:
        raise ValueError(f"--scale must be at least {MIN_SCALE:,} (the exchange's smallest segment)")
    rng = random.Random(seed)  # noqa: S311 - synthetic, repeatable demo data, not secrets
    keys = [b.key for b in BRANDS]
    blocks = {pair: round(OVERLAP[frozenset(pair)] * scale) for pair in combinations(keys, 2)}
    unique = {k: scale - sum(size for pair, size in blocks.items() if k in pair) for k in keys}
    if min(unique.values()) < 0:
        raise ValueError("the overlap rates of a brand add up to more than 100 %")
    population = sum(unique.values()) + sum(blocks.values())
    drawn = rng.sample(range(len(_PREFIXES) * 10**8), population)
    numbers = [f"{_PREFIXES[n // 10**8]}{n % 10**8:08d}" for n in drawn]
    members: dict[str, list[str]] = {k: [] for k in keys}
    at = 0
    for pair, size in blocks.items():
        for k in pair:
            members[k].extend(numbers[at : at + size])
        at += size
    for k in keys:
        members[k].extend(numbers[at : at + unique[k]])
        at += unique[k]
    rows: dict[str, list[str | None]] = {}
    for k in keys:
        own = members[k]
        rng.shuffle(own)
        raw: list[str | None] = [_format(n, rng.randrange(8)) for n in own]
        extras = max(3, scale // 1000)
        raw.extend(rng.choice(own) for _ in range(extras))  # the same member entered twice
        raw.extend(rng.choice(_INVALID) or None for _ in range(extras))
        rng.shuffle(raw)
        rows[k] = raw
    return MemberBases(rows, {frozenset(p): s for p, s in blocks.items()}, {k: len(members[k]) for k in keys})
