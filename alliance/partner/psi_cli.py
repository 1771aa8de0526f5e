"""The private-matching commands of ``alliance-partner`` (registered into its parser by ``cli.py``).

    alliance-partner keygen [--epoch YYYY-MM] [--register]
    alliance-partner signing-key rotate
    alliance-partner sign-contract CONTRACT_ID [--version N]
    alliance-partner allow COUNTERPARTY_BRAND --limit N
    alliance-partner publish FILE [--column C] --id-type phone --name N [--tag T ...]
    alliance-partner agent [--once] [--poll SECONDS]
    alliance-partner match --segment S --counterparty-segment T [--output FILE]

The agent home is ``--home`` or ``ALLIANCE_AGENT_HOME`` (default ``~/.alliance-partner``); the key
passphrase comes from ``ALLIANCE_AGENT_PASSPHRASE`` (or a prompt on a terminal).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from alliance.partner.agent import Agent, register_signing_key, rotate_signing_key, sign_contract
from alliance.partner.client import PartnerClient, PartnerError
from alliance.partner.keystore import DEFAULT_HOME, AgentStore, StoreError
from alliance.partner.progress import progress_bars
from alliance.partner.psi_client import PsiApi
from alliance.partner.publish import publish_identifiers, read_identifiers
from privacy.blind import default_workers, new_process_pool
from privacy.keys import KeyFileError, epoch_of
from privacy.normalize import IdType

__all__ = ["register"]

ClientFactory = Callable[[argparse.Namespace], PartnerClient]


def _store(args: argparse.Namespace) -> AgentStore:
    home = args.home or os.environ.get("ALLIANCE_AGENT_HOME") or str(DEFAULT_HOME)
    passphrase = os.environ.get("ALLIANCE_AGENT_PASSPHRASE", "")
    if not passphrase and sys.stdin.isatty():
        passphrase = getpass.getpass("agent key passphrase: ")
    if not passphrase:
        raise StoreError("set ALLIANCE_AGENT_PASSPHRASE (the passphrase that encrypts the agent's keys)")
    return AgentStore(home, passphrase)


@contextlib.contextmanager
def _local_errors() -> Iterator[None]:
    """Mistakes on the brand's side print one line, like the exchange's problems do."""
    try:
        yield
    except (StoreError, KeyFileError, OSError, ValueError, TimeoutError) as exc:
        raise PartnerError(0, "local", str(exc)) from None


@contextlib.contextmanager
def _agent(args: argparse.Namespace, client: ClientFactory) -> Iterator[Agent]:
    """An agent with a process pool (its workers start only for large work) and progress bars."""
    with (
        _local_errors(),
        client(args) as c,
        progress_bars(False if args.quiet else None) as bar,
        new_process_pool(args.workers or default_workers()) as pool,
    ):
        yield Agent(PsiApi(c), _store(args), executor=pool, bar=bar)


def _print(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2) if args.json else text)


def register(sub: Any, common: argparse.ArgumentParser, client: ClientFactory) -> None:
    """Add the PSI subcommands to ``alliance-partner``'s subparsers."""
    agent_common = argparse.ArgumentParser(add_help=False, parents=[common])
    agent_common.add_argument("--home", help="agent home directory (ALLIANCE_AGENT_HOME)")
    agent_common.add_argument("--quiet", action="store_true", help="no progress bars")
    agent_common.add_argument("--workers", type=int, help="processes for blinding (default: every core)")

    def keygen(args: argparse.Namespace) -> None:
        with _local_errors():
            store = _store(args)
            epoch = args.epoch or epoch_of(datetime.now(UTC))
            made_signing, made_psi = store.keygen(epoch)
            lines = [
                f"signing key: {'created' if made_signing else 'kept'}",
                f"PSI key of epoch {epoch}: {'created' if made_psi else 'kept'}",
            ]
            if args.register:
                with client(args) as c:
                    register_signing_key(PsiApi(c), store)
                lines.append("signing key registered with the exchange")
        public = store.signing_key().public_bytes().hex()
        _print(args, {"epoch": epoch, "signing_public_key": public}, "\n".join([*lines, f"public key {public}"]))

    def rotate(args: argparse.Namespace) -> None:
        with _local_errors(), client(args) as c:
            done = rotate_signing_key(PsiApi(c), _store(args))
        value = {
            "old_public_key": done.old_public_key.hex(),
            "new_public_key": done.new_public_key.hex(),
            "archived": str(done.archived),
            "resumed": done.resumed,
        }
        text = (
            f"signing key {'rotation finished' if done.resumed else 'rotated'}: new public key "
            f"{done.new_public_key.hex()} registered with the exchange; the old key "
            f"{done.old_public_key.hex()} is retired there (what it signed stays valid) and archived in {done.archived}"
        )
        _print(args, value, text)

    def sign(args: argparse.Namespace) -> None:
        with _local_errors(), client(args) as c:
            version = sign_contract(PsiApi(c), _store(args), args.contract_id, args.version)
        _print(args, {"contract_id": args.contract_id, "version": version}, f"signed {args.contract_id} v{version}")

    def allow(args: argparse.Namespace) -> None:
        with _local_errors():
            _store(args).allow(args.counterparty, args.limit)
        _print(
            args,
            {"counterparty": args.counterparty, "limit": args.limit},
            f"{args.counterparty} may have up to {args.limit} items re-blinded per key epoch",
        )

    def publish(args: argparse.Namespace) -> None:
        with _local_errors(), client(args) as c, progress_bars(False if args.quiet else None) as bar:
            store = _store(args)
            values = read_identifiers(args.file, args.column)
            with new_process_pool(args.workers or default_workers()) as pool:
                report = publish_identifiers(
                    PsiApi(c),
                    store,
                    values,
                    id_type=args.id_type,
                    name=args.name,
                    tags=args.tag,
                    key_epoch=args.epoch,
                    region=args.region,
                    executor=pool,
                    bar=bar,
                )
        rejected = ", ".join(f"{k}: {v}" for k, v in sorted(report.rejected.items())) or "none"
        _print(
            args,
            {
                "segment_id": report.segment_id,
                "size": report.size,
                "rows": report.total_rows,
                "rejected": report.rejected,
            },
            f"published segment {report.segment_id}: {report.size} of {report.total_rows} rows (rejected: {rejected})",
        )

    def agent(args: argparse.Namespace) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        with _agent(args, client) as runner:
            if args.once:
                outcomes = runner.run_once()
                for o in outcomes:
                    print(f"task {o.task_id} ({o.kind}, match {o.match_id}): {o.status} {o.detail}".rstrip())
                if not outcomes:
                    print("no open tasks")
            else:
                runner.run(poll_seconds=args.poll)

    def match(args: argparse.Namespace) -> None:
        with _agent(args, client) as runner:
            outcome = runner.request_match(
                args.segment, args.counterparty_segment, disclosure=args.disclosure, timeout=args.timeout
            )
        m = outcome.match
        if outcome.members is not None and args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.writelines(member + "\n" for member in outcome.members)
        if m["state"] != "done":
            raise PartnerError(0, f"match-{m['state']}", f"match {m['id']} {m['state']}: {m.get('failure_reason')}")
        result = m["result"]
        if result.get("type") == "membership":
            count = result["report"]["report"]["overlap_count"]
            text = f"match {m['id']}: {count} members in common (signed by {result['to_brand']})"
            if outcome.members is not None:
                text += f"; member ids in {args.output or outcome.members_file}"
        elif result["suppressed"]:
            text = f"match {m['id']}: overlap below the contract's minimum k ({m['min_k']}), not disclosed"
        else:
            noise = " (with differential-privacy noise)" if result["noised"] else ""
            text = f"match {m['id']}: about {result['count']} members in common{noise}"
        _print(args, m, text)

    p = sub.add_parser("keygen", parents=[agent_common], help="create the agent's signing key and PSI key")
    p.add_argument("--epoch", help="key epoch YYYY-MM (default: this month)")
    p.add_argument("--register", action="store_true", help="register the signing key with the exchange")
    p.set_defaults(func=keygen)

    rotation = sub.add_parser("signing-key", help="the agent's Ed25519 signing key").add_subparsers(
        dest="signing_key_command", required=True
    )
    p = rotation.add_parser(
        "rotate",
        parents=[agent_common],
        help="new signing key: registered with the exchange, the old key file archived (contracts stay valid)",
    )
    p.set_defaults(func=rotate)

    p = sub.add_parser("sign-contract", parents=[agent_common], help="sign a contract version with the agent's key")
    p.add_argument("contract_id")
    p.add_argument("--version", type=int, help="default: the newest version")
    p.set_defaults(func=sign)

    p = sub.add_parser("allow", parents=[agent_common], help="set a counterparty's re-blinding allowance")
    p.add_argument("counterparty", help="the counterparty's brand id")
    p.add_argument("--limit", type=int, required=True, help="items per key epoch (0 stops all re-blinding)")
    p.set_defaults(func=allow)

    p = sub.add_parser("publish", parents=[agent_common], help="normalise, blind and publish a segment")
    p.add_argument("file", help="CSV file, or one identifier per line")
    p.add_argument("--column", help="CSV column name (or 0-based index of a header-less CSV)")
    p.add_argument("--id-type", required=True, choices=[t.value for t in IdType])
    p.add_argument("--name", required=True)
    p.add_argument("--tag", action="append", default=[], help="segment tag (repeatable)")
    p.add_argument("--epoch", help="key epoch YYYY-MM (default: this month)")
    p.add_argument("--region", default="CN", help="default region for phone numbers (ISO 3166)")
    p.set_defaults(func=publish)

    p = sub.add_parser("agent", parents=[agent_common], help="answer the exchange's match tasks")
    p.add_argument("--once", action="store_true", help="handle the open tasks once and exit")
    p.add_argument("--poll", type=float, default=5.0, help="seconds between polls")
    p.set_defaults(func=agent)

    p = sub.add_parser("match", parents=[agent_common], help="request a match and wait for its result")
    p.add_argument("--segment", required=True, help="your published segment")
    p.add_argument("--counterparty-segment", required=True)
    p.add_argument("--disclosure", help="expected policy (the contract decides; a mismatch is refused)")
    p.add_argument("--output", help="membership matches: write the matched member ids here")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=match)
