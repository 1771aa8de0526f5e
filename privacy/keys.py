"""Partner-agent keys: PSI scalars, Ed25519 signing keys, encryption at rest and key epochs.

Both keys live only on the brand's machine (DESIGN.md §1). At rest a key is a small versioned JSON
document: the key record is encrypted with ChaCha20-Poly1305 under a key derived from a passphrase
with scrypt; the header (format, version, KDF parameters, salt, nonce) is bound to the ciphertext as
associated data, so it cannot be altered without detection.

PSI keys rotate by epoch ("YYYY-MM", monthly by default): blinded values from different epochs are
unrelated, so long-run membership churn cannot be followed across epochs (docs/threat-model.md).
The file helpers :func:`save_key_file` and :func:`load_key_file` are the only I/O in ``privacy``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

__all__ = [
    "DEFAULT_SCRYPT_N",
    "KEY_FILE_FORMAT",
    "KEY_FILE_VERSION",
    "EncryptedKeyFile",
    "InvalidEpoch",
    "KeyFileError",
    "KeyRecord",
    "NoKeyForEpoch",
    "PsiKey",
    "ScryptParams",
    "SigningKey",
    "WrongPassphrase",
    "clamp_scalar",
    "decrypt_key",
    "encrypt_key",
    "epoch_of",
    "epoch_start",
    "generate_psi_key",
    "generate_signing_key",
    "load_key_file",
    "next_epoch",
    "psi_key_for_epoch",
    "save_key_file",
]

KEY_FILE_FORMAT: Final = "bax-key"
KEY_FILE_VERSION: Final = 1
DEFAULT_SCRYPT_N: Final = 2**15  # ~32 MiB and ~0.1 s per derivation: cheap for the agent, dear to a guesser
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_MAX_SCRYPT_N: Final = 2**20  # refuse files that would make loading take gigabytes
_SALT_SIZE: Final = 16
_NONCE_SIZE: Final = 12
_EPOCH_RE: Final = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_Epoch = Annotated[str, msgspec.Meta(pattern=_EPOCH_RE.pattern)]
_Bytes32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class KeyFileError(ValueError):
    """A key file is malformed, of an unknown version, or has unacceptable parameters."""


class WrongPassphrase(KeyFileError):
    """Decryption failed: wrong passphrase (or a tampered file; the two are indistinguishable)."""


class InvalidEpoch(ValueError):
    """An epoch label is not ``YYYY-MM``, or the epoch length is not a divisor of 12 months."""


class NoKeyForEpoch(LookupError):
    """No PSI key exists for the requested epoch."""


# --- key records ----------------------------------------------------------------------------------


class PsiKey(msgspec.Struct, frozen=True, tag="psi"):
    """A brand's PSI secret scalar for one key epoch (already X25519-clamped)."""

    epoch: _Epoch
    scalar: _Bytes32


class SigningKey(msgspec.Struct, frozen=True, tag="ed25519"):
    """A brand's Ed25519 signing key (32-byte seed) used for contracts and membership reports."""

    seed: _Bytes32

    def private_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def public_bytes(self) -> bytes:
        """The 32-byte raw public key, as registered with the exchange."""
        return self.private_key().public_key().public_bytes_raw()


KeyRecord = PsiKey | SigningKey


def clamp_scalar(raw: bytes) -> bytes:
    """RFC 7748 §5 clamping: clear bits 0-2 and 255, set bit 254.

    X25519 clamps anyway; storing the clamped value makes the stored scalar the one actually used
    (handy for test vectors) and makes it a multiple of 8, which clears the cofactor (blind.py).
    """
    if not isinstance(raw, bytes):
        raise TypeError("scalar must be bytes")
    if len(raw) != 32:
        raise ValueError(f"scalar must be 32 bytes, got {len(raw)}")
    out = bytearray(raw)
    out[0] &= 248
    out[31] &= 127
    out[31] |= 64
    return bytes(out)


def generate_psi_key(epoch: str) -> PsiKey:
    """A fresh PSI key for ``epoch``: 32 bytes from the OS CSPRNG, clamped."""
    _parse_epoch(epoch)
    return PsiKey(epoch, clamp_scalar(secrets.token_bytes(32)))


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 signing key."""
    return SigningKey(Ed25519PrivateKey.generate().private_bytes_raw())


def psi_key_for_epoch(keys: Iterable[PsiKey], epoch: str) -> PsiKey:
    """The key of ``epoch`` among ``keys``; ``NoKeyForEpoch`` if there is none."""
    _parse_epoch(epoch)
    for key in keys:
        if key.epoch == epoch:
            return key
    raise NoKeyForEpoch(f"no PSI key for epoch {epoch}")


# --- epochs -------------------------------------------------------------------------------------------


def _parse_epoch(label: str) -> tuple[int, int]:
    if not isinstance(label, str):
        raise TypeError("epoch must be a str")
    match = _EPOCH_RE.match(label)
    if match is None:
        raise InvalidEpoch(f"epoch must look like 2026-11, got {label!r}")
    return int(match.group(1)), int(match.group(2))


def _check_months(months_per_epoch: int) -> None:
    if months_per_epoch < 1 or 12 % months_per_epoch:
        raise InvalidEpoch("months_per_epoch must divide 12 (1, 2, 3, 4, 6 or 12)")


def epoch_of(when: dt.date | dt.datetime, *, months_per_epoch: int = 1) -> str:
    """The epoch label containing ``when``: its first month, ``YYYY-MM``.

    Epochs are aligned to the calendar year (with 3 months per epoch: 2026-01, 2026-04, ...). An aware
    datetime is converted to UTC first; a naive one is taken as UTC.
    """
    _check_months(months_per_epoch)
    if isinstance(when, dt.datetime):
        day = when.astimezone(dt.UTC).date() if when.tzinfo is not None else when.date()
    elif isinstance(when, dt.date):
        day = when
    else:
        raise TypeError("when must be a date or datetime")
    first_month = (day.month - 1) // months_per_epoch * months_per_epoch + 1
    return f"{day.year:04d}-{first_month:02d}"


def epoch_start(epoch: str) -> dt.date:
    """First day of an epoch."""
    year, month = _parse_epoch(epoch)
    return dt.date(year, month, 1)


def next_epoch(epoch: str, *, months_per_epoch: int = 1) -> str:
    """The epoch after ``epoch`` (when the agent should have rotated its PSI key)."""
    _check_months(months_per_epoch)
    year, month = _parse_epoch(epoch)
    index = year * 12 + (month - 1) + months_per_epoch
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


# --- encryption at rest -----------------------------------------------------------------------------------


class ScryptParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """scrypt cost parameters as stored in a key file (RFC 7914 names)."""

    n: int
    r: int
    p: int


class EncryptedKeyFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """On-disk form (JSON; bytes fields are base64). Everything but ``ciphertext`` is authenticated
    as associated data."""

    format: Literal["bax-key"]
    version: int
    kind: Literal["psi", "ed25519"]
    kdf: Literal["scrypt"]
    kdf_params: ScryptParams
    salt: bytes
    aead: Literal["chacha20-poly1305"]
    nonce: bytes
    ciphertext: bytes


class _Header(msgspec.Struct, frozen=True):
    format: str
    version: int
    kind: str
    kdf: str
    kdf_params: ScryptParams
    salt: bytes
    aead: str
    nonce: bytes


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, str):
        # NFC so the same passphrase typed on different systems derives the same key.
        data = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    elif isinstance(passphrase, bytes):
        data = passphrase
    else:
        raise TypeError("passphrase must be str or bytes")
    if not data:
        raise ValueError("passphrase must not be empty")
    return data


def _derive(passphrase: bytes, salt: bytes, params: ScryptParams) -> bytes:
    return Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p).derive(passphrase)


def _aad(file: EncryptedKeyFile) -> bytes:
    header = _Header(file.format, file.version, file.kind, file.kdf, file.kdf_params, file.salt, file.aead, file.nonce)
    return msgspec.json.encode(header)


def encrypt_key(record: KeyRecord, passphrase: str | bytes, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> bytes:
    """Serialise and encrypt a key record; returns the JSON file content."""
    if not isinstance(record, PsiKey | SigningKey):
        raise TypeError("record must be a PsiKey or SigningKey")
    if scrypt_n < 2 or scrypt_n & (scrypt_n - 1) or scrypt_n > _MAX_SCRYPT_N:
        raise ValueError("scrypt_n must be a power of two between 2 and 2**20")
    secret = _passphrase_bytes(passphrase)
    params = ScryptParams(scrypt_n, _SCRYPT_R, _SCRYPT_P)
    salt = secrets.token_bytes(_SALT_SIZE)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    kind: Literal["psi", "ed25519"] = "psi" if isinstance(record, PsiKey) else "ed25519"
    unsealed = EncryptedKeyFile(
        KEY_FILE_FORMAT, KEY_FILE_VERSION, kind, "scrypt", params, salt, "chacha20-poly1305", nonce, b""
    )
    key = _derive(secret, salt, params)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, msgspec.json.encode(record), _aad(unsealed))
    sealed = msgspec.structs.replace(unsealed, ciphertext=ciphertext)
    return msgspec.json.format(msgspec.json.encode(sealed), indent=2) + b"\n"


def decrypt_key(data: bytes, passphrase: str | bytes) -> KeyRecord:
    """Decrypt a key file's content. ``WrongPassphrase`` if authentication fails, ``KeyFileError`` if
    the file is malformed or its parameters are out of bounds."""
    secret = _passphrase_bytes(passphrase)
    try:
        file = msgspec.json.decode(data, type=EncryptedKeyFile)
    except msgspec.ValidationError as exc:
        raise KeyFileError(f"not a key file: {exc}") from None
    except msgspec.DecodeError as exc:
        raise KeyFileError(f"not a key file: {exc}") from None
    if file.version != KEY_FILE_VERSION:
        raise KeyFileError(f"unsupported key file version {file.version}")
    params = file.kdf_params
    n_ok = 2 <= params.n <= _MAX_SCRYPT_N and params.n & (params.n - 1) == 0
    if not n_ok or not 1 <= params.r <= 32 or not 1 <= params.p <= 16:
        raise KeyFileError("scrypt parameters out of bounds")
    if len(file.salt) < _SALT_SIZE or len(file.nonce) != _NONCE_SIZE:
        raise KeyFileError("bad salt or nonce length")
    key = _derive(secret, file.salt, params)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(file.nonce, file.ciphertext, _aad(file))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase or tampered key file") from None
    try:
        record: KeyRecord = msgspec.json.decode(plaintext, type=KeyRecord)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise KeyFileError(f"bad key record: {exc}") from None
    expected = PsiKey if file.kind == "psi" else SigningKey
    if not isinstance(record, expected):
        raise KeyFileError("key record does not match the file's declared kind")
    return record


def save_key_file(
    path: str | os.PathLike[str], record: KeyRecord, passphrase: str | bytes, *, scrypt_n: int = DEFAULT_SCRYPT_N
) -> None:
    """Write an encrypted key file, readable by the owner only; refuses to overwrite an existing file."""
    data = encrypt_key(record, passphrase, scrypt_n=scrypt_n)
    target = Path(path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def load_key_file(path: str | os.PathLike[str], passphrase: str | bytes) -> KeyRecord:
    """Read and decrypt a key file written by :func:`save_key_file`."""
    return decrypt_key(Path(path).read_bytes(), passphrase)
