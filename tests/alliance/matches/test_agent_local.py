"""The partner agent's local side: key store, allowances, input files, secret-independent ordering."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alliance.partner.blinding import blind_identifiers, reblind, sorted_order, sorted_records
from alliance.partner.keystore import AgentStore, LocalSegment, StoreError
from alliance.partner.publish import read_identifiers
from privacy.blind import blind_batch, hash_and_blind_batch, new_process_pool
from privacy.keys import WrongPassphrase, clamp_scalar
from privacy.psi import ReblindBudgetExceeded


def test_keys_are_made_once_and_need_the_passphrase(tmp_path: Path) -> None:
    store = AgentStore(tmp_path, "correct horse")
    assert store.keygen("2026-11", scrypt_n=2**4) == (True, True)
    assert store.keygen("2026-11", scrypt_n=2**4) == (False, False)
    assert store.keygen("2026-12", scrypt_n=2**4) == (False, True)
    assert len(store.psi_key("2026-11").scalar) == 32
    assert oct((tmp_path / "signing.key").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(WrongPassphrase):
        AgentStore(tmp_path, "wrong").signing_key()
    with pytest.raises(StoreError, match="keygen"):
        store.psi_key("2027-01")


def test_allowances_are_per_counterparty_and_epoch_and_refuse_without_charging(tmp_path: Path) -> None:
    store = AgentStore(tmp_path, "p")
    with pytest.raises(StoreError, match="allow"):
        store.consume("brd_x", "2026-11", 1)
    store.allow("brd_x", 5000)
    assert store.consume("brd_x", "2026-11", 3000).remaining == 2000
    with pytest.raises(ReblindBudgetExceeded):
        store.consume("brd_x", "2026-11", 3000)
    again = AgentStore(tmp_path, "p")  # persisted, and the refusal charged nothing
    assert again.consume("brd_x", "2026-11", 2000).remaining == 0
    assert again.consume("brd_x", "2026-12", 3000).remaining == 2000  # a new epoch starts afresh
    again.allow("brd_x", 0)
    with pytest.raises(ReblindBudgetExceeded):
        again.consume("brd_x", "2026-12", 1)


def test_segments_and_results_round_trip(tmp_path: Path) -> None:
    store = AgentStore(tmp_path, "p")
    store.save_segment(LocalSegment("seg_1", "n", "phone", "2026-11", 2, ("psi",)), ["a", "b"])
    assert store.segment("seg_1").tags == ("psi",)
    assert store.members("seg_1") == ["a", "b"]
    assert store.save_result("mat_1", ["b"]).read_text() == "b\n"
    with pytest.raises(StoreError):
        store.segment("seg_2")


def test_input_files(tmp_path: Path) -> None:
    csv_file = tmp_path / "m.csv"
    csv_file.write_text("\ufeffid,mobile\n1,13800000000\n2,\n3\n")
    assert read_identifiers(csv_file, "mobile") == ["13800000000", None, None]
    plain = tmp_path / "m.txt"
    plain.write_text("13800000000\n\n 13800000001 \n")
    assert read_identifiers(plain) == ["13800000000", None, "13800000001"]
    headerless = tmp_path / "h.csv"
    headerless.write_text("x,13800000000\ny,13800000001\n")
    assert read_identifiers(headerless, "1") == ["13800000000", "13800000001"]
    with pytest.raises(ValueError, match="no column"):
        read_identifiers(csv_file, "email")


def test_pooled_blinding_equals_the_library_and_order_depends_only_on_the_set() -> None:
    scalar = clamp_scalar(os.urandom(32))
    ids = [b"phone:+86138%08d" % i for i in range(2500)]
    with new_process_pool(2) as pool:
        pooled = blind_identifiers(b"x", scalar, ids, executor=pool, chunk=1000)  # three jobs
        assert pooled == hash_and_blind_batch(b"x", scalar, ids)
        assert reblind(scalar, pooled, executor=pool, chunk=1000) == blind_batch(scalar, pooled)
    small = pooled[: 100 * 32]
    shuffled = b"".join(reversed([small[i : i + 32] for i in range(0, len(small), 32)]))
    assert sorted_records(small) == sorted_records(shuffled)
    order = sorted_order(small)
    assert b"".join(small[i * 32 : i * 32 + 32] for i in order) == sorted_records(small)
