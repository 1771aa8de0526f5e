r"""Canonical encoding and Ed25519 signatures of contract versions.

Both brands sign the same bytes, so the encoding must be a pure function of the terms' values:

    canonical_bytes(terms) = b"BAX-CONTRACT-V1\n" || JSON(terms)

The JSON is msgspec's with ``order="sorted"``: UTF-8, no insignificant whitespace, object keys sorted
by code point at every level, integers in plain decimal, datetimes as RFC 3339 in UTC with a ``Z``
suffix (a ``.ffffff`` fraction only when non-zero), ``null`` for absent optional values, the tag of a
tagged union (``"kind"``) as an ordinary key, and strings escaped only where JSON requires it (``\"``,
``\\``, control characters as ``\n``, ``\t``... or ``\u00XX``; all other text, non-ASCII included, is
raw UTF-8). Every field is encoded, defaults included, so a signature commits to the values themselves
and not to whatever the code's defaults are at verification time.

The ASCII prefix is a domain separator: a signature over a contract can never be replayed as a
signature over another kind of message signed with the same brand key (statements, match results),
and ``V1`` changes if this encoding ever does.

Signatures are Ed25519 (RFC 8032), which is deterministic: the same key and terms give the same 64
bytes, so the known-answer vectors in ``tests/contracts/vectors`` can be checked in any language.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.errors import InvalidKeyLength, InvalidSignatureLength, NotAParty, SignatureInvalid
from contracts.terms import ContractTerms
from contracts.validation import validate_terms

__all__ = [
    "DOMAIN_PREFIX",
    "PUBLIC_KEY_LENGTH",
    "SIGNATURE_LENGTH",
    "SignedContract",
    "canonical_bytes",
    "fingerprint",
    "load_public_key",
    "public_key_bytes",
    "sign_terms",
    "verify_signature",
]

DOMAIN_PREFIX = b"BAX-CONTRACT-V1\n"
PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64


def canonical_bytes(terms: ContractTerms) -> bytes:
    """The exact bytes both parties sign for this version (see the module docstring)."""
    if not isinstance(terms, ContractTerms):
        raise TypeError(f"expected ContractTerms, got {type(terms).__name__}")
    return DOMAIN_PREFIX + msgspec.json.encode(terms, order="sorted")


def fingerprint(terms: ContractTerms) -> str:
    """Lower-case hex SHA-256 of `canonical_bytes`: a short name for "exactly these terms".

    Use it to detect a re-proposed identical version, or to show both parties what they are signing.
    """
    return hashlib.sha256(canonical_bytes(terms)).hexdigest()


def _as_bytes(value: object, name: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{name} must be bytes, got {type(value).__name__}")


def load_public_key(public_key: bytes) -> Ed25519PublicKey:
    """Parse a raw 32-byte Ed25519 public key; `InvalidKeyLength` for any other length."""
    raw = _as_bytes(public_key, "public key")
    if len(raw) != PUBLIC_KEY_LENGTH:
        raise InvalidKeyLength(f"an Ed25519 public key is {PUBLIC_KEY_LENGTH} bytes, got {len(raw)}")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:  # pragma: no cover - OpenSSL accepts any 32 bytes today
        raise InvalidKeyLength(f"not a valid Ed25519 public key: {exc}") from exc


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key matching `private_key`, as brands register it with the exchange."""
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError(f"expected Ed25519PrivateKey, got {type(private_key).__name__}")
    return private_key.public_key().public_bytes_raw()


def sign_terms(private_key: Ed25519PrivateKey, terms: ContractTerms) -> bytes:
    """Sign `terms` with a brand's Ed25519 key and return the 64-byte signature.

    Refuses (`InvalidTerms`) to sign terms that `validate_terms` rejects: an agent must never put its
    name to a contract the exchange would not accept.
    """
    if not isinstance(private_key, Ed25519PrivateKey):
        raise TypeError(f"expected Ed25519PrivateKey, got {type(private_key).__name__}")
    validate_terms(terms)
    return private_key.sign(canonical_bytes(terms))


def verify_signature(public_key: bytes, terms: ContractTerms, signature: bytes) -> None:
    """Return ``None`` if `signature` is `public_key`'s signature of exactly these terms.

    Raises `InvalidKeyLength` / `InvalidSignatureLength` (both ValueError) for malformed input and
    `SignatureInvalid` when the signature does not verify (wrong key, forged, or terms changed).
    """
    key = load_public_key(public_key)
    raw_signature = _as_bytes(signature, "signature")
    if len(raw_signature) != SIGNATURE_LENGTH:
        raise InvalidSignatureLength(f"an Ed25519 signature is {SIGNATURE_LENGTH} bytes, got {len(raw_signature)}")
    try:
        key.verify(raw_signature, canonical_bytes(terms))
    except InvalidSignature:
        raise SignatureInvalid(
            f"signature does not verify for contract {terms.contract_id!r} version {terms.version} "
            f"(fingerprint {fingerprint(terms)[:16]}...)"
        ) from None


class SignedContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A contract version with the signatures collected so far, keyed by brand id.

    The version may price events only once both parties have signed (`is_in_force_ready`). Treat
    `signatures` as read-only: `with_signature` returns a new value, so a stored SignedContract never
    changes under a reader. On the wire the signatures are base64 (msgspec's encoding of bytes).
    """

    terms: ContractTerms
    signatures: dict[str, bytes] = msgspec.field(default_factory=dict)

    def missing_signers(self) -> tuple[str, ...]:
        """Parties that have not signed yet, in party order."""
        return tuple(brand for brand in self.terms.parties if brand not in self.signatures)

    def with_signature(self, brand_id: str, signature: bytes, public_key: bytes) -> SignedContract:
        """A copy with `brand_id`'s signature added, after checking it verifies under `public_key`.

        Raises `NotAParty` for a brand outside the contract and the errors of `verify_signature`.
        Re-signing replaces the brand's previous signature (Ed25519 is deterministic, so with the same
        key it is the same bytes).
        """
        if brand_id not in self.terms.parties:
            raise NotAParty(f"{brand_id!r} is not a party to contract {self.terms.contract_id!r}")
        verify_signature(public_key, self.terms, signature)
        signatures = dict(self.signatures)
        signatures[brand_id] = bytes(signature)
        return msgspec.structs.replace(self, signatures=signatures)

    def verify(self, public_keys: Mapping[str, bytes]) -> None:
        """Check every signature present; `SignatureInvalid` names the first brand that fails.

        A signature from a brand that is not a party, or from a party whose key is not in
        `public_keys`, fails too: nothing unverifiable is kept silently.
        """
        for brand_id, signature in sorted(self.signatures.items()):
            if brand_id not in self.terms.parties:
                raise SignatureInvalid(f"signature from {brand_id!r}, which is not a party")
            if brand_id not in public_keys:
                raise SignatureInvalid(f"no public key given for {brand_id!r}")
            try:
                verify_signature(public_keys[brand_id], self.terms, signature)
            except (SignatureInvalid, InvalidSignatureLength) as exc:
                raise SignatureInvalid(f"signature of {brand_id!r} is invalid: {exc}") from exc

    def is_in_force_ready(self, public_keys: Mapping[str, bytes]) -> bool:
        """Whether both parties have signed and both signatures verify under their `public_keys`.

        Malformed public keys are the caller's configuration error and raise `InvalidKeyLength`.
        """
        if self.missing_signers():
            return False
        try:
            self.verify(public_keys)
        except SignatureInvalid:
            return False
        return True
