"""privacy.normalize: canonical forms, reject reasons, batch accounting and idempotence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.normalize import (
    PREFIXES,
    Accepted,
    IdType,
    InvalidIdentifier,
    Rejected,
    RejectReason,
    normalize,
    normalize_batch,
)

KNOWN_ANSWERS = json.loads((Path(__file__).parent / "vectors" / "psi_known_answers.json").read_text("utf-8"))


def _body(canonical: bytes) -> str:
    return canonical.decode("utf-8").split(":", 1)[1]


@pytest.mark.parametrize("case", KNOWN_ANSWERS["normalization"], ids=lambda c: f"{c['id_type']}:{c['input']!r}")
def test_known_answers(case: dict[str, Any]) -> None:
    if "canonical" in case:
        assert normalize(case["input"], case["id_type"], region=case["region"]) == case["canonical"].encode()
    else:
        with pytest.raises(InvalidIdentifier) as excinfo:
            normalize(case["input"], case["id_type"], region=case["region"])
        assert excinfo.value.reason == case["reject_reason"]


@pytest.mark.parametrize(
    "text",
    ["13800138000", "138 0013 8000", "+86 138 0013 8000", "+86-138-0013-8000", "008613800138000", "(+86)13800138000"],
)
def test_phone_forms_agree(text: str) -> None:
    assert normalize(text, IdType.PHONE) == b"phone:+8613800138000"


def test_phone_region_is_configurable() -> None:
    assert normalize("650 253 0000", "phone", region="US") == b"phone:+16502530000"
    with pytest.raises(InvalidIdentifier):
        normalize("650 253 0000", "phone")  # not a valid Chinese number


@pytest.mark.parametrize("text", ["12345", "abc", "+86 138", "1" * 70, "+999 1234567"])
def test_invalid_phones(text: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize(text, "phone")
    assert excinfo.value.reason is RejectReason.INVALID_PHONE
    assert isinstance(excinfo.value, ValueError)


def test_email_trimmed_and_lowercased() -> None:
    assert normalize("  A.B@Example.CN\t", "email") == b"email:a.b@example.cn"


@pytest.mark.parametrize(
    "text",
    [
        "plain",
        "@b.cn",
        "a@",
        "a@b",
        "a@b..cn",
        "a@-b.cn",
        "a b@c.cn",
        "a@@b.cn",
        ".a@b.cn",
        "a..b@c.cn",
        "a@b_c.cn",
        "é@b.cn",
        "x" * 65 + "@b.cn",
    ],
)
def test_invalid_emails(text: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize(text, "email")
    assert excinfo.value.reason is RejectReason.INVALID_EMAIL


def test_email_too_long() -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize("a@" + "b" * 250 + ".cn", "email")
    assert excinfo.value.reason is RejectReason.TOO_LONG


@pytest.mark.parametrize(("id_type", "prefix"), [("unionid", "wx:"), ("openid", "openid:"), ("custom", "custom:")])
def test_opaque_ids_keep_case(id_type: str, prefix: str) -> None:
    assert normalize("  AbC-123_x ", id_type) == f"{prefix}AbC-123_x".encode()
    assert PREFIXES[IdType(id_type)] == prefix


@pytest.mark.parametrize("id_type", list(IdType))
@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_rejected(id_type: IdType, text: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize(text, id_type)
    assert excinfo.value.reason is RejectReason.EMPTY


@pytest.mark.parametrize("text", ["a b", "a\x00b", "a\u200bb"])
def test_opaque_bad_characters(text: str) -> None:
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize(text, "custom")
    assert excinfo.value.reason is RejectReason.INVALID_CHARACTER


def test_opaque_too_long() -> None:
    assert normalize("x" * 256, "unionid") == b"wx:" + b"x" * 256
    with pytest.raises(InvalidIdentifier) as excinfo:
        normalize("x" * 257, "unionid")
    assert excinfo.value.reason is RejectReason.TOO_LONG


def test_wrong_types() -> None:
    with pytest.raises(TypeError):
        normalize(13800138000, "phone")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        normalize(b"a@b.cn", "email")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        normalize("a@b.cn", "fax")
    with pytest.raises(TypeError):
        normalize_batch(["a@b.cn", 5], "email")  # type: ignore[list-item]


def test_batch_accounts_for_every_row() -> None:
    rows = ["13800138000", "", None, "bogus", "+86 138 0013 8000", "13900139000", "  "]
    result = normalize_batch(rows, "phone")
    assert result.accepted == (
        Accepted(0, b"phone:+8613800138000"),
        Accepted(5, b"phone:+8613900139000"),
    )
    assert result.rejected == (
        Rejected(1, RejectReason.EMPTY),
        Rejected(2, RejectReason.EMPTY),
        Rejected(3, RejectReason.INVALID_PHONE),
        Rejected(4, RejectReason.DUPLICATE),
        Rejected(6, RejectReason.EMPTY),
    )
    assert result.total == len(rows)
    assert result.canonicals == [b"phone:+8613800138000", b"phone:+8613900139000"]
    assert result.reject_counts() == {
        RejectReason.EMPTY: 3,
        RejectReason.INVALID_PHONE: 1,
        RejectReason.DUPLICATE: 1,
    }


def test_batch_without_dedupe_keeps_repeats() -> None:
    result = normalize_batch(["a@b.cn", "A@B.CN"], "email", dedupe=False)
    assert result.canonicals == [b"email:a@b.cn", b"email:a@b.cn"]
    assert result.rejected == ()


@settings(max_examples=60)
@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=30), st.sampled_from(list(IdType)))
def test_batch_never_drops_rows(rows: list[str | None], id_type: IdType) -> None:
    result = normalize_batch(rows, id_type)
    indices = sorted([a.row for a in result.accepted] + [r.row for r in result.rejected])
    assert indices == list(range(len(rows)))


_MOBILE = st.builds(lambda prefix, rest: f"{prefix}{rest:08d}", st.sampled_from(["138", "139", "150", "186"]),
                    st.integers(0, 10**8 - 1))  # fmt: skip
_EMAIL = st.builds(
    lambda local, domain, tld: f"{local}@{domain}.{tld}",
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}[A-Za-z0-9]", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True),
    st.sampled_from(["cn", "com", "CN", "net"]),
)


@settings(max_examples=60)
@given(_MOBILE)
def test_phone_idempotent(text: str) -> None:
    canonical = normalize(text, "phone")
    assert normalize(_body(canonical), "phone") == canonical
    assert normalize(_body(canonical), "phone", region="US") == canonical  # E.164 needs no region


@settings(max_examples=60)
@given(_EMAIL)
def test_email_idempotent(text: str) -> None:
    try:
        canonical = normalize(text, "email")
    except InvalidIdentifier:
        return  # e.g. ".." in the local part; idempotence is about accepted values
    assert normalize(_body(canonical), "email") == canonical


@settings(max_examples=60)
@given(st.text(min_size=1, max_size=40), st.sampled_from([IdType.UNIONID, IdType.OPENID, IdType.CUSTOM]))
def test_opaque_idempotent(text: str, id_type: IdType) -> None:
    try:
        canonical = normalize(text, id_type)
    except InvalidIdentifier:
        return
    assert normalize(_body(canonical), id_type) == canonical
