"""Referral tokens: ``rft1.<payload>.<signature>``, both parts base64url without padding.

The payload is compact JSON ``{"rid", "frm", "to", "iat", "exp", "kid"}`` (referral id, referring and
receiving brand, issue and expiry time in Unix seconds, signing key id). The signature is Ed25519
(RFC 8032) by the exchange over ``b"BAX-REFERRAL-V1\\n" + payload bytes``; the domain prefix keeps it
from ever being valid as any other message signed with the same key. A receiving brand can check a
token offline with the public key from ``GET /v1/referrals/signing-key``; the exchange checks it again
and looks the referral up before paying commission. Tokens name no member: the member token a
referring brand supplies is stored only as a digest.
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["DOMAIN", "PREFIX", "InvalidToken", "TokenPayload", "b64", "decode_unverified", "sign_token", "verify_token"]

PREFIX = "rft1"
DOMAIN = b"BAX-REFERRAL-V1\n"


class InvalidToken(ValueError):
    """Malformed, or its signature does not verify."""


class TokenPayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rid: str
    frm: str
    to: str
    iat: int
    exp: int
    kid: str


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not base64url") from None


def sign_token(private_key: Ed25519PrivateKey, payload: TokenPayload) -> str:
    body = msgspec.json.encode(payload)
    return f"{PREFIX}.{b64(body)}.{b64(private_key.sign(DOMAIN + body))}"


def decode_unverified(token: str) -> tuple[TokenPayload, bytes, bytes]:
    """(payload, payload bytes, signature) of a well-formed token, without checking the signature."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise InvalidToken(f"a referral token looks like '{PREFIX}.<payload>.<signature>'")
    body, signature = _unb64(parts[1]), _unb64(parts[2])
    try:
        payload = msgspec.json.decode(body, type=TokenPayload)
    except msgspec.DecodeError:
        raise InvalidToken("the token's payload is not valid") from None
    return payload, body, signature


def verify_token(public_key: Ed25519PublicKey, body: bytes, signature: bytes) -> None:
    try:
        public_key.verify(signature, DOMAIN + body)
    except InvalidSignature:
        raise InvalidToken("the token's signature does not verify") from None
