"""privacy.keys: key generation, encryption at rest, wrong passphrases, tampering and epochs."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from privacy.blind import blind, hash_to_point
from privacy.keys import (
    InvalidEpoch,
    KeyFileError,
    NoKeyForEpoch,
    PsiKey,
    SigningKey,
    WrongPassphrase,
    clamp_scalar,
    decrypt_key,
    encrypt_key,
    epoch_of,
    epoch_start,
    generate_psi_key,
    generate_signing_key,
    load_key_file,
    next_epoch,
    psi_key_for_epoch,
    save_key_file,
)

FAST_N = 2**10  # keep scrypt cheap in tests; the default is 2**15


@settings(max_examples=50)
@given(st.binary(min_size=32, max_size=32))
def test_clamp_scalar(raw: bytes) -> None:
    scalar = clamp_scalar(raw)
    value = int.from_bytes(scalar, "little")
    assert value % 8 == 0
    assert 2**254 <= value < 2**255
    assert clamp_scalar(scalar) == scalar


def test_clamp_scalar_errors() -> None:
    with pytest.raises(ValueError):
        clamp_scalar(bytes(31))
    with pytest.raises(TypeError):
        clamp_scalar("x" * 32)  # type: ignore[arg-type]


def test_generated_psi_key() -> None:
    key = generate_psi_key("2026-11")
    assert key.epoch == "2026-11"
    assert clamp_scalar(key.scalar) == key.scalar
    assert generate_psi_key("2026-11").scalar != key.scalar
    assert len(blind(key.scalar, hash_to_point(b"a", b"custom:1"))) == 32
    with pytest.raises(InvalidEpoch):
        generate_psi_key("2026-1")


def test_generated_signing_key_signs() -> None:
    key = generate_signing_key()
    public = key.public_bytes()
    assert len(public) == 32
    Ed25519PublicKey.from_public_bytes(public).verify(key.private_key().sign(b"msg"), b"msg")


@pytest.mark.parametrize("record", [generate_psi_key("2026-11"), generate_signing_key()])
def test_encrypt_round_trip(record: PsiKey | SigningKey) -> None:
    data = encrypt_key(record, "correct horse", scrypt_n=FAST_N)
    assert decrypt_key(data, "correct horse") == record
    document = json.loads(data)
    assert document["format"] == "bax-key" and document["version"] == 1
    assert document["kdf"] == "scrypt" and document["aead"] == "chacha20-poly1305"
    secret = record.scalar if isinstance(record, PsiKey) else record.seed
    assert secret.hex().encode() not in data


def test_wrong_passphrase() -> None:
    data = encrypt_key(generate_psi_key("2026-11"), "right", scrypt_n=FAST_N)
    with pytest.raises(WrongPassphrase):
        decrypt_key(data, "wrong")


def test_passphrase_is_nfc_normalised() -> None:
    record = generate_psi_key("2026-11")
    data = encrypt_key(record, "caf\u00e9", scrypt_n=FAST_N)
    assert decrypt_key(data, "cafe\u0301") == record
    assert decrypt_key(data, "caf\u00e9".encode()) == record


@pytest.mark.parametrize("passphrase", ["", b""])
def test_empty_passphrase_refused(passphrase: str | bytes) -> None:
    with pytest.raises(ValueError):
        encrypt_key(generate_psi_key("2026-11"), passphrase, scrypt_n=FAST_N)


@pytest.mark.parametrize(
    ("field", "value"),
    [("kind", "ed25519"), ("kdf_params", {"n": 2**11, "r": 8, "p": 1}), ("salt", "AAAAAAAAAAAAAAAAAAAAAA==")],
)
def test_tampered_header_detected(field: str, value: object) -> None:
    data = encrypt_key(generate_psi_key("2026-11"), "pw", scrypt_n=FAST_N)
    document = json.loads(data)
    document[field] = value
    with pytest.raises(KeyFileError):  # WrongPassphrase is a KeyFileError
        decrypt_key(json.dumps(document).encode(), "pw")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("kdf_params", {"n": 2**21, "r": 8, "p": 1}),
        ("kdf_params", {"n": 1000, "r": 8, "p": 1}),
        ("nonce", "AAAA"),
        ("format", "other"),
        ("aead", "aes-gcm"),
    ],
)
def test_bad_header_rejected(field: str, value: object) -> None:
    data = encrypt_key(generate_psi_key("2026-11"), "pw", scrypt_n=FAST_N)
    document = json.loads(data)
    document[field] = value
    with pytest.raises(KeyFileError) as excinfo:
        decrypt_key(json.dumps(document).encode(), "pw")
    assert not isinstance(excinfo.value, WrongPassphrase)


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"format": "bax-key"}'])
def test_malformed_files(data: bytes) -> None:
    with pytest.raises(KeyFileError):
        decrypt_key(data, "pw")


def test_bad_scrypt_n_on_encrypt() -> None:
    with pytest.raises(ValueError):
        encrypt_key(generate_psi_key("2026-11"), "pw", scrypt_n=1000)


def test_save_and_load_file(tmp_path: Path) -> None:
    record = generate_signing_key()
    path = tmp_path / "signing.key"
    save_key_file(path, record, "pw", scrypt_n=FAST_N)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_key_file(path, "pw") == record
    with pytest.raises(FileExistsError):
        save_key_file(path, record, "pw", scrypt_n=FAST_N)
    with pytest.raises(WrongPassphrase):
        load_key_file(path, "nope")


@pytest.mark.parametrize(
    ("when", "months", "expected"),
    [
        (dt.date(2026, 11, 30), 1, "2026-11"),
        (dt.date(2026, 1, 1), 1, "2026-01"),
        (dt.date(2026, 11, 30), 3, "2026-10"),
        (dt.date(2026, 3, 31), 3, "2026-01"),
        (dt.date(2026, 12, 31), 12, "2026-01"),
        (dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))), 1, "2026-12"),
        (dt.datetime(2026, 12, 1, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))), 1, "2026-11"),
        (dt.datetime(2026, 11, 30, 23, 30), 1, "2026-11"),
    ],
)
def test_epoch_of(when: dt.date, months: int, expected: str) -> None:
    assert epoch_of(when, months_per_epoch=months) == expected


def test_epoch_helpers() -> None:
    assert next_epoch("2026-11") == "2026-12"
    assert next_epoch("2026-12") == "2027-01"
    assert next_epoch("2026-10", months_per_epoch=3) == "2027-01"
    assert epoch_start("2026-11") == dt.date(2026, 11, 1)
    with pytest.raises(InvalidEpoch):
        epoch_of(dt.date(2026, 1, 1), months_per_epoch=5)
    with pytest.raises(InvalidEpoch):
        epoch_start("2026-00")
    with pytest.raises(TypeError):
        epoch_of("2026-11-01")  # type: ignore[arg-type]


@settings(max_examples=50)
@given(st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2200, 12, 31)), st.sampled_from([1, 2, 3, 4, 6, 12]))
def test_epoch_contains_its_dates(day: dt.date, months: int) -> None:
    epoch = epoch_of(day, months_per_epoch=months)
    assert epoch_start(epoch) <= day < epoch_start(next_epoch(epoch, months_per_epoch=months))


def test_psi_key_for_epoch() -> None:
    keys = [generate_psi_key("2026-10"), generate_psi_key("2026-11")]
    assert psi_key_for_epoch(keys, "2026-11") is keys[1]
    with pytest.raises(NoKeyForEpoch):
        psi_key_for_epoch(keys, "2026-12")
