"""Canonical encoding and Ed25519 signatures: known answers, round trips and every way a signature must fail."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from contracts import (
    DOMAIN_PREFIX,
    ContractTerms,
    FixedCommission,
    FundingSplit,
    InvalidKeyLength,
    InvalidSignatureLength,
    InvalidTerms,
    NotAParty,
    PsiTerms,
    RateCommission,
    SignatureInvalid,
    SignedContract,
    canonical_bytes,
    decode_terms,
    fingerprint,
    public_key_bytes,
    sign_terms,
    verify_signature,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "contract_signatures_v1.json").read_text("utf-8"))

# RFC 8032 section 7.1, TEST 1 and TEST 2: public keys are known answers for the key derivation.
ALPHA_KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
)
BETA_KEY = Ed25519PrivateKey.from_private_bytes(
    bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
)
ALPHA_PUB = public_key_bytes(ALPHA_KEY)
BETA_PUB = public_key_bytes(BETA_KEY)
KEYS = {"alpha": ALPHA_PUB, "beta": BETA_PUB}


def make_terms(**overrides: Any) -> ContractTerms:
    fields: dict[str, Any] = {
        "contract_id": "ctr-1",
        "version": 1,
        "parties": ("alpha", "beta"),
        "settlement_currency": "CNY",
        "effective_from": datetime(2026, 1, 1, tzinfo=UTC),
        "funding": (
            FundingSplit(
                benefit="*", funding_brand="alpha", distributor_brand="beta", funding_brand_bp=7000, distributor_bp=3000
            ),
        ),
        "coupon_commission": RateCommission(rate_bp=500, per_event_cap=1_000),
        "referral": FixedCommission(amount=300, monthly_cap=50_000),
        "psi": PsiTerms(segment_tags=("vip",), disclosure="membership_to:alpha"),
        "note": "联名 spring",
    }
    fields.update(overrides)
    return ContractTerms(**fields)


TERMS = make_terms()


def test_rfc8032_public_keys() -> None:
    assert ALPHA_PUB.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert BETA_PUB.hex() == "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


# --- canonical encoding ------------------------------------------------------------------------------


def test_canonical_bytes_are_prefixed_sorted_compact_json() -> None:
    raw = canonical_bytes(TERMS)
    assert raw.startswith(b"BAX-CONTRACT-V1\n")
    assert raw.startswith(DOMAIN_PREFIX)
    body = raw[len(DOMAIN_PREFIX) :]
    parsed = json.loads(body)
    assert list(parsed) == sorted(parsed)
    assert list(parsed["psi"]) == sorted(parsed["psi"])
    assert b" " not in body.replace(b"\xe8\x81\x94\xe5\x90\x8d spring", b"")  # compact, except inside the note
    assert '"note":"联名 spring"'.encode() in body  # raw UTF-8, not \u escapes
    assert b'"effective_from":"2026-01-01T00:00:00Z"' in body
    assert b'"effective_to":null' in body  # defaults are signed too


def test_canonical_bytes_depend_only_on_values() -> None:
    same_instant = make_terms(effective_from=datetime(2026, 1, 1, tzinfo=ZoneInfo("UTC")))
    assert canonical_bytes(same_instant) == canonical_bytes(TERMS)
    assert canonical_bytes(decode_terms(msgspec.json.encode(TERMS))) == canonical_bytes(TERMS)
    assert canonical_bytes(make_terms(note="other")) != canonical_bytes(TERMS)


def test_fingerprint_is_sha256_of_the_canonical_bytes() -> None:
    assert fingerprint(TERMS) == hashlib.sha256(canonical_bytes(TERMS)).hexdigest()
    assert len(fingerprint(TERMS)) == 64
    assert fingerprint(make_terms(version=2)) != fingerprint(TERMS)


def test_canonical_bytes_refuse_other_types() -> None:
    with pytest.raises(TypeError):
        canonical_bytes(msgspec.structs.asdict(TERMS))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: case["name"])
def test_known_answer_vectors(case: dict[str, Any]) -> None:
    assert bytes.fromhex(VECTORS["domain_prefix_hex"]) == DOMAIN_PREFIX
    terms = decode_terms(case["terms_json"])  # deliberately non-canonical spelling
    canonical = canonical_bytes(terms)
    assert canonical.hex() == case["canonical_hex"]
    assert canonical.decode("utf-8") == case["canonical_text"]
    assert fingerprint(terms) == case["fingerprint"]
    for signer in case["signatures"]:
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(signer["secret_key_hex"]))
        assert public_key_bytes(key).hex() == signer["public_key_hex"]
        signature = sign_terms(key, terms)
        assert signature.hex() == signer["signature_hex"]
        verify_signature(bytes.fromhex(signer["public_key_hex"]), terms, signature)


# --- signatures --------------------------------------------------------------------------------------


def test_sign_and_verify_round_trip() -> None:
    signature = sign_terms(ALPHA_KEY, TERMS)
    assert len(signature) == 64
    assert sign_terms(ALPHA_KEY, TERMS) == signature  # Ed25519 is deterministic
    verify_signature(ALPHA_PUB, TERMS, signature)
    verify_signature(bytearray(ALPHA_PUB), TERMS, memoryview(signature))  # type: ignore[arg-type]  # accepted


def test_forged_signature_fails() -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature(ALPHA_PUB, TERMS, bytes(64))
    signature = bytearray(sign_terms(ALPHA_KEY, TERMS))
    signature[10] ^= 0x01
    with pytest.raises(SignatureInvalid, match="does not verify for contract 'ctr-1' version 1"):
        verify_signature(ALPHA_PUB, TERMS, bytes(signature))


def test_wrong_key_fails() -> None:
    signature = sign_terms(ALPHA_KEY, TERMS)
    with pytest.raises(SignatureInvalid):
        verify_signature(BETA_PUB, TERMS, signature)
    with pytest.raises(SignatureInvalid):
        verify_signature(public_key_bytes(Ed25519PrivateKey.generate()), TERMS, signature)


@pytest.mark.parametrize(
    "tampered",
    [
        make_terms(version=2),
        make_terms(note="联名 spring "),
        make_terms(coupon_commission=RateCommission(rate_bp=501, per_event_cap=1_000)),
        make_terms(psi=PsiTerms(segment_tags=("vip",), disclosure="membership_to:beta")),
        make_terms(effective_from=datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
    ids=["version", "note", "rate", "disclosure", "one-microsecond"],
)
def test_tampered_terms_fail(tampered: ContractTerms) -> None:
    signature = sign_terms(ALPHA_KEY, TERMS)
    with pytest.raises(SignatureInvalid):
        verify_signature(ALPHA_PUB, tampered, signature)


def test_signature_over_the_bare_json_does_not_verify() -> None:
    """The domain prefix is part of what is signed: a signature over other bytes cannot be replayed."""
    bare = ALPHA_KEY.sign(canonical_bytes(TERMS)[len(DOMAIN_PREFIX) :])
    with pytest.raises(SignatureInvalid):
        verify_signature(ALPHA_PUB, TERMS, bare)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_wrong_length_public_key(length: int) -> None:
    signature = sign_terms(ALPHA_KEY, TERMS)
    with pytest.raises(InvalidKeyLength, match=f"32 bytes, got {length}") as info:
        verify_signature(bytes(length), TERMS, signature)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_wrong_length_signature(length: int) -> None:
    with pytest.raises(InvalidSignatureLength, match=f"64 bytes, got {length}") as info:
        verify_signature(ALPHA_PUB, TERMS, bytes(length))
    assert isinstance(info.value, ValueError)


def test_wrong_types() -> None:
    with pytest.raises(TypeError):
        verify_signature(ALPHA_PUB.hex(), TERMS, bytes(64))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        verify_signature(ALPHA_PUB, TERMS, "00" * 64)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sign_terms(X25519PrivateKey.generate(), TERMS)  # type: ignore[arg-type]


def test_invalid_terms_are_never_signed() -> None:
    with pytest.raises(InvalidTerms):
        sign_terms(ALPHA_KEY, make_terms(settlement_currency="XYZ"))


# --- signed contracts --------------------------------------------------------------------------------


def test_signed_contract_becomes_ready_with_both_signatures() -> None:
    proposed = SignedContract(terms=TERMS)
    assert proposed.missing_signers() == ("alpha", "beta")
    assert not proposed.is_in_force_ready(KEYS)

    half = proposed.with_signature("alpha", sign_terms(ALPHA_KEY, TERMS), ALPHA_PUB)
    assert proposed.signatures == {}  # values never change under a reader
    assert half.missing_signers() == ("beta",)
    assert not half.is_in_force_ready(KEYS)

    full = half.with_signature("beta", sign_terms(BETA_KEY, TERMS), BETA_PUB)
    assert full.missing_signers() == ()
    assert full.is_in_force_ready(KEYS)
    full.verify(KEYS)

    # Survives the wire (signatures travel as base64).
    wire = msgspec.json.encode(full)
    assert msgspec.json.decode(wire, type=SignedContract) == full
    assert msgspec.json.decode(wire, type=SignedContract).is_in_force_ready(KEYS)


def test_with_signature_checks_the_signer() -> None:
    proposed = SignedContract(terms=TERMS)
    with pytest.raises(SignatureInvalid):
        proposed.with_signature("beta", sign_terms(ALPHA_KEY, TERMS), BETA_PUB)
    with pytest.raises(NotAParty):
        proposed.with_signature("gamma", sign_terms(ALPHA_KEY, TERMS), ALPHA_PUB)


def test_stored_signatures_are_rechecked() -> None:
    good = {"alpha": sign_terms(ALPHA_KEY, TERMS), "beta": sign_terms(BETA_KEY, TERMS)}
    swapped = SignedContract(terms=TERMS, signatures={"alpha": good["beta"], "beta": good["alpha"]})
    assert not swapped.is_in_force_ready(KEYS)
    with pytest.raises(SignatureInvalid, match="signature of 'alpha' is invalid"):
        swapped.verify(KEYS)

    tampered = SignedContract(terms=make_terms(note="changed"), signatures=good)
    assert not tampered.is_in_force_ready(KEYS)

    truncated = SignedContract(terms=TERMS, signatures={"alpha": good["alpha"], "beta": good["beta"][:63]})
    assert not truncated.is_in_force_ready(KEYS)

    stranger = SignedContract(terms=TERMS, signatures={**good, "gamma": good["alpha"]})
    with pytest.raises(SignatureInvalid, match="not a party"):
        stranger.verify(KEYS)

    assert not SignedContract(terms=TERMS, signatures=good).is_in_force_ready({"alpha": ALPHA_PUB})
    with pytest.raises(InvalidKeyLength):
        SignedContract(terms=TERMS, signatures=good).is_in_force_ready({"alpha": ALPHA_PUB, "beta": b"short"})


def test_signed_contract_refuses_unknown_fields() -> None:
    wire = msgspec.json.encode(SignedContract(terms=TERMS)).replace(b'"signatures"', b'"approved":true,"signatures"')
    with pytest.raises(msgspec.ValidationError, match="unknown field `approved`"):
        msgspec.json.decode(wire, type=SignedContract)
