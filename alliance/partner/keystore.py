"""The partner agent's local state, on the brand's own machine (never sent to the exchange).

Layout of the agent home (``ALLIANCE_AGENT_HOME``, default ``~/.alliance-partner``), readable by the
owner only:

- ``signing.key``, ``psi-YYYY-MM.key`` - the Ed25519 signing key and one PSI scalar per key epoch,
  encrypted with the passphrase (``ALLIANCE_AGENT_PASSPHRASE``) by :mod:`privacy.keys`;
- ``signing.key.new`` - a rotation in progress (``alliance-partner signing-key rotate``): the new key,
  staged until the exchange has it; ``archive/signing-<UTC time>-<public key prefix>.key`` - each
  signing key a rotation replaced, still encrypted (what it signed stays verifiable at the exchange,
  which keeps the key history; the archive is for the brand's own records);
- ``contracts/<contract>-v<n>.json`` - the contract versions this agent signed (its own record of what
  it agreed to; tasks are checked against it, not only against what the exchange says);
- ``allowances.json`` - per-counterparty re-blinding allowances (``privacy.psi.ReblindAllowance``): the
  limit per key epoch set with ``alliance-partner allow`` and what was used, updated under a file lock;
- ``segments/<segment>.json`` + ``.members`` - each published segment's metadata and its row map (the
  member ids in published order), which turns a membership result back into member ids;
- ``results/<match>.members`` - matched member ids of membership matches; ``agent.log`` - refusals.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from contracts import ContractTerms
from privacy.keys import (
    DEFAULT_SCRYPT_N,
    PsiKey,
    SigningKey,
    generate_psi_key,
    generate_signing_key,
    load_key_file,
    save_key_file,
)
from privacy.psi import ReblindAllowance

__all__ = ["DEFAULT_HOME", "AgentStore", "LocalSegment", "StoreError"]

DEFAULT_HOME = Path("~/.alliance-partner")


class StoreError(Exception):
    """The agent's local state is missing something (no key yet, unknown segment...)."""


class LocalSegment(msgspec.Struct, frozen=True):
    """What the agent remembers about a segment it published."""

    segment_id: str
    name: str
    id_type: str
    key_epoch: str
    size: int
    tags: tuple[str, ...] = ()


class _Allowances(msgspec.Struct):
    limits: dict[str, int] = {}  # counterparty brand -> items per key epoch
    used: list[ReblindAllowance] = []


def _write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class AgentStore:
    """The agent home directory. Keys are decrypted on first use and kept in memory for the process."""

    def __init__(self, home: str | os.PathLike[str], passphrase: str | bytes) -> None:
        self.home = Path(home).expanduser()
        self.passphrase = passphrase
        self._psi: dict[str, PsiKey] = {}
        self._signing: SigningKey | None = None
        for sub in ("", "contracts", "segments", "results"):
            (self.home / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    # --- keys -------------------------------------------------------------------------------------

    def keygen(self, epoch: str, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> tuple[bool, bool]:
        """Create the signing key (once) and the PSI key of ``epoch`` if missing; says which were made."""
        made_signing = made_psi = False
        signing_path = self.home / "signing.key"
        if not signing_path.exists():
            save_key_file(signing_path, generate_signing_key(), self.passphrase, scrypt_n=scrypt_n)
            made_signing = True
        psi_path = self._psi_path(epoch)
        if not psi_path.exists():
            save_key_file(psi_path, generate_psi_key(epoch), self.passphrase, scrypt_n=scrypt_n)
            made_psi = True
        return made_signing, made_psi

    def _psi_path(self, epoch: str) -> Path:
        return self.home / f"psi-{epoch}.key"

    def psi_key(self, epoch: str) -> PsiKey:
        if epoch not in self._psi:
            path = self._psi_path(epoch)
            if not path.exists():
                raise StoreError(f"no PSI key for epoch {epoch}: run `alliance-partner keygen --epoch {epoch}`")
            record = load_key_file(path, self.passphrase)
            if not isinstance(record, PsiKey) or record.epoch != epoch:
                raise StoreError(f"{path} does not hold the PSI key of epoch {epoch}")
            self._psi[epoch] = record
        return self._psi[epoch]

    def signing_key(self) -> SigningKey:
        if self._signing is None:
            path = self.home / "signing.key"
            if not path.exists():
                raise StoreError("no signing key: run `alliance-partner keygen`")
            record = load_key_file(path, self.passphrase)
            if not isinstance(record, SigningKey):
                raise StoreError(f"{path} does not hold a signing key")
            self._signing = record
        return self._signing

    # --- signing-key rotation: stage the new key, register it with the exchange, then swap -----------

    @property
    def _staged_path(self) -> Path:
        return self.home / "signing.key.new"

    def staged_signing_key(self) -> SigningKey | None:
        """The key of an unfinished rotation, if any."""
        if not self._staged_path.exists():
            return None
        record = load_key_file(self._staged_path, self.passphrase)
        if not isinstance(record, SigningKey):
            raise StoreError(f"{self._staged_path} does not hold a signing key")
        return record

    def stage_signing_key(self, *, scrypt_n: int = DEFAULT_SCRYPT_N) -> SigningKey:
        """Write a new signing key to ``signing.key.new``; ``signing.key`` stays the key in use until
        :meth:`commit_signing_key`. Replaces a staged key of an earlier, abandoned attempt."""
        self.signing_key()  # there is a key to rotate, and the passphrase opens it
        self.discard_staged_signing_key()
        record = generate_signing_key()
        save_key_file(self._staged_path, record, self.passphrase, scrypt_n=scrypt_n)
        return record

    def discard_staged_signing_key(self) -> None:
        self._staged_path.unlink(missing_ok=True)

    def commit_signing_key(self) -> Path:
        """Make the staged key the signing key; the old one goes to ``archive/`` (returned). Crash-safe:
        the old file is linked into the archive before the staged one atomically replaces it, so at
        every moment ``signing.key`` holds one of the two keys and the staged file remains until done."""
        staged = self.staged_signing_key()
        if staged is None:
            raise StoreError("no staged signing key to commit")
        current_path = self.home / "signing.key"
        old = self.signing_key()
        archive = self.home / "archive"
        archive.mkdir(mode=0o700, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        archived = archive / f"signing-{stamp}-{old.public_bytes()[:4].hex()}.key"
        if old.public_bytes() != staged.public_bytes():
            os.link(current_path, archived)
        os.replace(self._staged_path, current_path)
        self._signing = staged
        return archived

    # --- contracts --------------------------------------------------------------------------------

    def record_contract(self, terms: ContractTerms) -> None:
        path = self.home / "contracts" / f"{terms.contract_id}-v{terms.version}.json"
        _write_private(path, msgspec.json.encode(terms))

    def signed_contract(self, contract_id: str, version: int) -> ContractTerms | None:
        """The contract version this agent signed, or None (the exchange's word is not enough)."""
        path = self.home / "contracts" / f"{contract_id}-v{version}.json"
        if not path.exists():
            return None
        return msgspec.json.decode(path.read_bytes(), type=ContractTerms)

    # --- re-blinding allowances -------------------------------------------------------------------

    @contextlib.contextmanager
    def _allowances(self) -> Iterator[_Allowances]:
        """The allowance file, locked for the block (several agent processes may share a home)."""
        path = self.home / "allowances.json"
        with (self.home / "allowances.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = msgspec.json.decode(path.read_bytes(), type=_Allowances) if path.exists() else _Allowances()
            before = msgspec.json.encode(state)
            yield state
            after = msgspec.json.encode(state)
            if after != before:
                _write_private(path, after)

    def allow(self, counterparty: str, limit: int) -> None:
        """Let ``counterparty`` have up to ``limit`` items re-blinded per key epoch (0 stops it)."""
        if limit < 0:
            raise ValueError("limit must be non-negative")
        with self._allowances() as state:
            state.limits[counterparty] = limit
            for allowance in state.used:
                if allowance.counterparty_brand == counterparty:
                    allowance.limit = limit

    def allowance(self, counterparty: str, epoch: str) -> ReblindAllowance | None:
        with self._allowances() as state:
            return self._find(state, counterparty, epoch)

    @staticmethod
    def _find(state: _Allowances, counterparty: str, epoch: str) -> ReblindAllowance | None:
        if counterparty not in state.limits:
            return None
        for allowance in state.used:
            if allowance.counterparty_brand == counterparty and allowance.key_epoch == epoch:
                return allowance
        allowance = ReblindAllowance(counterparty, epoch, state.limits[counterparty])
        state.used.append(allowance)
        return allowance

    def consume(self, counterparty: str, epoch: str, items: int) -> ReblindAllowance:
        """Charge ``items`` to the counterparty's allowance for the epoch, or raise (and charge nothing):
        ``StoreError`` when no allowance was ever set, ``ReblindBudgetExceeded`` past the limit."""
        with self._allowances() as state:
            allowance = self._find(state, counterparty, epoch)
            if allowance is None:
                raise StoreError(f"no re-blinding allowance set for {counterparty} (`alliance-partner allow`)")
            allowance.consume(items)
            return msgspec.structs.replace(allowance)

    # --- segments and results ---------------------------------------------------------------------

    def save_segment(self, segment: LocalSegment, members_in_published_order: Sequence[str]) -> None:
        base = self.home / "segments" / segment.segment_id
        _write_private(base.with_suffix(".members"), "".join(m + "\n" for m in members_in_published_order).encode())
        _write_private(base.with_suffix(".json"), msgspec.json.encode(segment))

    def segment(self, segment_id: str) -> LocalSegment:
        path = self.home / "segments" / f"{segment_id}.json"
        if not path.exists():
            raise StoreError(f"segment {segment_id} was not published from this agent home")
        return msgspec.json.decode(path.read_bytes(), type=LocalSegment)

    def members(self, segment_id: str) -> list[str]:
        """The segment's member ids in published order (row i of the segment is member i)."""
        path = self.home / "segments" / f"{segment_id}.members"
        return path.read_text().splitlines()

    def save_result(self, match_id: str, members: Sequence[str]) -> Path:
        path = self.home / "results" / f"{match_id}.members"
        _write_private(path, "".join(m + "\n" for m in members).encode())
        return path

    def log(self, event: str, **fields: Any) -> None:
        """Append one JSON line to ``agent.log`` (refusals and other decisions worth keeping)."""
        line = json.dumps({"at": datetime.now(UTC).isoformat(), "event": event, **fields}, ensure_ascii=False)
        with (self.home / "agent.log").open("a") as handle:
            handle.write(line + "\n")
