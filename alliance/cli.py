"""``alliance``: the exchange-side command line (serve, migrate, brands, operator keys, the close,
statements and their signing key, audit).

Settings come from ``ALLIANCE_*`` variables; flags override them. Errors print one line to stderr and
exit non-zero - never a traceback for a mistake the operator can fix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from alliance.core.settings import Settings, SettingsError, load_settings

__all__ = ["main"]

T = TypeVar("T")


class CliError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        "database_url": getattr(args, "database_url", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
        "log_format": getattr(args, "log_format", None),
    }
    settings = load_settings(overrides=overrides)
    # Worker processes read the environment, so flags are passed on through it.
    for name, value in overrides.items():
        if value is not None:
            os.environ["ALLIANCE_" + name.upper()] = str(value)
    return settings


def _run_db(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from alliance.db.migrate import migrate
    from alliance.db.session import create_engine, create_session_factory

    if settings.is_sqlite and settings.auto_migrate:
        migrate(settings.database_url)

    async def runner() -> T:
        engine = create_engine(settings.database_url)
        try:
            async with create_session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(runner())


def _print(value: Any, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(msgspec.to_builtins(value), ensure_ascii=False, indent=2))
    else:
        print(text)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from alliance.db.migrate import migrate

    settings = _settings(args)
    if settings.is_sqlite and settings.auto_migrate:
        migrate(settings.database_url)
    print(f"Brand Alliance Exchange serving on http://{settings.host}:{settings.port}  (API docs: /schema)")
    uvicorn.run(
        "alliance.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    from alliance.db.migrate import migrate

    settings = _settings(args)
    migrate(settings.database_url)
    print("database schema is up to date")


def cmd_brand_add(args: argparse.Namespace) -> None:
    from alliance.brands import service
    from alliance.core.audit import cli_audit_context

    async def work(session: AsyncSession) -> Any:
        brand, key = await service.create_brand(session, cli_audit_context(), args.name, args.category)
        return {"brand": service.brand_out(brand), "api_key": key}

    result = _run_db(_settings(args), work)
    brand, key = result["brand"], result["api_key"]
    _print(
        result,
        args.json,
        f"brand {brand.name} created with id {brand.id}\nAPI key (shown once, store it now): {key.secret}",
    )


def cmd_brand_list(args: argparse.Namespace) -> None:
    from alliance.brands import service

    async def work(session: AsyncSession) -> Any:
        return [service.brand_out(b) for b in await service.list_brands(session)]

    brands = _run_db(_settings(args), work)
    lines = [f"{b.id}  {b.status:<9}  {b.name}" + (f"  ({b.category})" if b.category else "") for b in brands]
    _print(
        brands,
        args.json,
        "\n".join(lines) if lines else "no brands yet: add one with `alliance brand add NAME`",
    )


def _brand_action(action: str) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        from alliance.brands import service
        from alliance.core.audit import cli_audit_context

        async def work(session: AsyncSession) -> Any:
            if action == "suspend":
                brand = await service.suspend_brand(session, cli_audit_context(), args.brand_id, args.reason)
            else:
                brand = await service.reactivate_brand(session, cli_audit_context(), args.brand_id)
            return service.brand_out(brand)

        brand = _run_db(_settings(args), work)
        _print(brand, args.json, f"brand {brand.id} ({brand.name}) is {brand.status}")

    return run


def cmd_brand_key(args: argparse.Namespace) -> None:
    from alliance.brands import service
    from alliance.core.audit import cli_audit_context

    async def work(session: AsyncSession) -> Any:
        ctx = cli_audit_context()
        if args.key_action == "issue":
            return await service.issue_key(session, ctx, args.brand_id, args.label)
        if args.key_action == "rotate":
            return await service.rotate_key(session, ctx, args.brand_id, args.key_id)
        if args.key_action == "revoke":
            return service.key_out(await service.revoke_key(session, ctx, args.brand_id, args.key_id))
        return [service.key_out(k) for k in await service.list_keys(session, args.brand_id)]

    result = _run_db(_settings(args), work)
    if args.key_action in ("issue", "rotate"):
        text = f"key {result.key.id} ({result.key.prefix})\nAPI key (shown once, store it now): {result.secret}"
    elif args.key_action == "revoke":
        text = f"key {result.id} revoked"
    else:
        text = "\n".join(f"{k.id}  {k.prefix}  {'revoked' if k.revoked_at else 'active':<7}  {k.label}" for k in result)
    _print(result, args.json, text)


def cmd_admin_key(args: argparse.Namespace) -> None:
    from alliance.brands import service
    from alliance.core.audit import cli_audit_context

    async def work(session: AsyncSession) -> Any:
        return await service.create_admin_key(session, cli_audit_context(), args.label)

    key = _run_db(_settings(args), work)
    _print(key, args.json, f"operator key {key.key.id}\nkey (shown once, store it now): {key.secret}")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def cmd_admin_key_list(args: argparse.Namespace) -> None:
    from alliance.brands import service

    async def work(session: AsyncSession) -> Any:
        return [service.key_out(k) for k in await service.list_admin_keys(session)]

    keys = _run_db(_settings(args), work)
    lines = [
        f"{k.prefix:<15} {k.id}  created {_when(k.created_at)}  last used {_when(k.last_used_at)}  "
        + (f"revoked {_when(k.revoked_at)}" if k.revoked_at else "active")
        + (f"  {k.label}" if k.label else "")
        for k in keys
    ]
    empty = "no operator keys yet: add one with `alliance admin-key add`"
    _print(keys, args.json, "\n".join(lines) if lines else empty)


def cmd_admin_key_revoke(args: argparse.Namespace) -> None:
    from alliance.brands import service
    from alliance.core.audit import cli_audit_context

    async def work(session: AsyncSession) -> Any:
        return service.key_out(await service.revoke_admin_key(session, cli_audit_context(), args.prefix))

    key = _run_db(_settings(args), work)
    _print(
        key,
        args.json,
        f"operator key {key.prefix} ({key.id}) revoked; other server processes may accept it for up to 5 seconds",
    )


def cmd_ledger_verify(args: argparse.Namespace) -> None:
    from alliance.ledger.verify import verify_ledger

    async def work(session: AsyncSession) -> Any:
        return await verify_ledger(session, seal=not args.no_seal)

    report = _run_db(_settings(args), work)
    if report.ok:
        held = (
            f"\n{report.quarantined} transaction(s) held in quarantine, not sealed: "
            + ", ".join(report.quarantined_ids)
            + " (see `alliance ledger quarantine list`)"
            if report.quarantined
            else ""
        )
        _print(
            report,
            args.json,
            f"ledger OK: {report.transactions} sealed transactions ({report.sealed_now} sealed now, "
            f"{report.pending} pending), chain head seq {report.head_seq} {report.head_hash}{held}",
        )
        return
    problem = report.problem
    where = []
    if problem.transaction_id:
        where.append(f"transaction {problem.transaction_id}" + (f" (seq {problem.seq})" if problem.seq else ""))
    if problem.account:
        where.append(f"account {problem.account} {problem.currency}")
    if args.json:
        _print(report, True, "")
    raise CliError(f"ledger verification FAILED at {', '.join(where) or 'the ledger'}: {problem.reason}")


def cmd_ledger_quarantine(args: argparse.Namespace) -> None:
    """List the transactions the sealer held out of the chain, or release / exclude one (audited)."""
    from alliance.core.audit import cli_audit_context
    from alliance.ledger import quarantine

    async def work(session: AsyncSession) -> Any:
        if args.quarantine_command == "list":
            rows = await quarantine.list_quarantine(session, args.status)
        else:
            await quarantine.resolve(session, cli_audit_context(), args.transaction_id, args.quarantine_command)
            rows = await quarantine.list_quarantine(session, transaction_id=args.transaction_id)
        return [
            {
                "transaction_id": r.transaction_id,
                "period": r.period,
                "status": r.status,
                "reason": r.reason,
                "quarantined_at": r.quarantined_at,
                "resolved_by": r.resolved_by,
            }
            for r in rows
        ]

    rows = _run_db(_settings(args), work)
    lines = [f"{r['transaction_id']}  {r['period']}  {r['status']:<8}  {r['reason']}" for r in rows]
    _print(rows, args.json, "\n".join(lines) if lines else "the ledger quarantine is empty")


def cmd_close(args: argparse.Namespace) -> None:
    from alliance.core.audit import cli_audit_context
    from alliance.settlement.service import close_month

    settings = _settings(args)

    async def work(session: AsyncSession) -> Any:
        return await close_month(
            session,
            cli_audit_context(),
            args.month,
            key_file=settings.exchange_signing_key_file,
            alliance_id=settings.alliance_id,
        )

    run = _run_db(settings, work)
    state = "already closed" if run.already_closed else "closed"
    _print(
        run,
        args.json,
        f"{run.period} {state}: {run.transactions} transactions, {run.statements} statements, digest {run.digest}; "
        f"later events of {run.period} post into {run.next_period}",
    )


def cmd_statement_verify(args: argparse.Namespace) -> None:
    import base64
    import binascii

    from alliance.settlement.signing import StatementVerificationError, verify_statement_file

    public_key = None
    if args.public_key:
        try:
            text = args.public_key.strip()
            public_key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            raise CliError("--public-key must be 32 bytes as hex or base64") from None
        if len(public_key) != 32:
            raise CliError("--public-key must be 32 bytes as hex or base64")
    with open(args.file, "rb") as handle:
        content = handle.read()
    try:
        statement = verify_statement_file(content, public_key)
    except StatementVerificationError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    brand = statement.get("brand", {})
    print(f"{args.file}: signature OK - statement {statement.get('period')} of {brand.get('name')} ({brand.get('id')})")


def cmd_statement_key(args: argparse.Namespace) -> None:
    from alliance.core.audit import cli_audit_context
    from alliance.settlement import service

    settings = _settings(args)
    key_file = settings.exchange_signing_key_file

    async def work(session: AsyncSession) -> Any:
        if args.statement_key_command == "rotate":
            return await service.rotate_exchange_key(session, cli_audit_context(), key_file)
        return await service.list_exchange_keys(session, key_file)

    result = _run_db(settings, work)
    if args.statement_key_command == "rotate":
        text = (
            f"statement key rotated: new key id {result.key_id}; statements closed from now on are signed with it, "
            "earlier ones keep verifying with their own key ids"
        )
    else:
        text = "\n".join(
            f"{k.key_id}  {'current' if k.current else 'retired ' + _when(k.retired_at)}  "
            f"created {_when(k.created_at)}  {k.public_key}"
            for k in result
        )
    _print(result, args.json, text)


def _read_new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        if not sys.stdin.isatty():
            raise CliError("no terminal to ask for the password on: pipe it in with --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise CliError("the two passwords differ")
    if not password:
        raise CliError("the password is empty")
    return password


def cmd_user_add(args: argparse.Namespace) -> None:
    from alliance.console import service
    from alliance.core.audit import cli_audit_context

    settings = _settings(args)
    password = _read_new_password(args)

    async def work(session: AsyncSession) -> Any:
        user = await service.create_user(session, cli_audit_context(), args.username, password, args.role)
        return {"id": user.id, "username": user.username, "role": user.role}

    user = _run_db(settings, work)
    _print(user, args.json, f"console user {user['username']} ({user['role']}) created with id {user['id']}")


def cmd_user_list(args: argparse.Namespace) -> None:
    from alliance.console import service

    async def work(session: AsyncSession) -> Any:
        return [
            {"id": u.id, "username": u.username, "role": u.role, "last_login_at": u.last_login_at}
            for u in await service.list_users(session)
        ]

    users = _run_db(_settings(args), work)
    lines = [f"{u['id']}  {u['role']:<8}  {u['username']}" for u in users]
    _print(users, args.json, "\n".join(lines) if lines else "no console users yet: add one with `alliance user add`")


def cmd_benefit_list(args: argparse.Namespace) -> None:
    from alliance.benefits import catalogue

    async def work(session: AsyncSession) -> Any:
        return await catalogue.list_all_benefits(session, brand=args.brand, status=args.status)

    benefits = _run_db(_settings(args), work)
    lines = [
        f"{b.id}  {b.status:<9}  {b.funding_brand_id}  {b.remaining_count}/{b.budget_count} left  "
        f"{b.budget_amount - b.remaining_amount}/{b.budget_amount} {b.currency} spent  {b.name}"
        for b in benefits
    ]
    _print(benefits, args.json, "\n".join(lines) if lines else "no benefits yet")


def cmd_webhooks_deliver(args: argparse.Namespace) -> None:
    from alliance.db.session import create_engine, create_session_factory
    from alliance.webhooks.delivery import DeliveryWorker

    settings = _settings(args)

    async def runner() -> int:
        engine = create_engine(settings.database_url)
        try:
            worker = DeliveryWorker(create_session_factory(engine))
            if args.once:
                return await worker.run_once()
            await worker.run(asyncio.Event())  # until interrupted
            return 0
        finally:
            await engine.dispose()

    try:
        attempts = asyncio.run(runner())
    except KeyboardInterrupt:
        return
    print(f"{attempts} webhook delivery attempt(s) made")


def cmd_demo(args: argparse.Namespace) -> None:
    from pathlib import Path

    from alliance.demo.cli import run

    fresh_file = None
    if not args.database_url and not os.environ.get("ALLIANCE_DATABASE_URL"):
        fresh_file = Path(args.demo_file).resolve()
        args.database_url = f"sqlite+aiosqlite:///{fresh_file}"
    settings = _settings(args)
    from alliance.partner.client import PartnerError

    try:
        run(args, settings, fresh_file)
    except (ValueError, RuntimeError, PartnerError) as exc:
        raise CliError(f"demo: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alliance", description="Brand Alliance Exchange: exchange-side commands")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", help="overrides ALLIANCE_DATABASE_URL")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="run the HTTP API (and console)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="worker processes (production: about one per core)")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", parents=[common], help="apply database migrations").set_defaults(func=cmd_migrate)

    brand = sub.add_parser("brand", help="manage brands").add_subparsers(dest="brand_command", required=True)
    add = brand.add_parser("add", parents=[common], help="onboard a brand and print its first API key")
    add.add_argument("name")
    add.add_argument("--category")
    add.set_defaults(func=cmd_brand_add)
    brand.add_parser("list", parents=[common], help="list brands").set_defaults(func=cmd_brand_list)
    suspend = brand.add_parser("suspend", parents=[common], help="suspend a brand (its keys stop working)")
    suspend.add_argument("brand_id")
    suspend.add_argument("--reason", default="")
    suspend.set_defaults(func=_brand_action("suspend"))
    reactivate = brand.add_parser("reactivate", parents=[common], help="reactivate a suspended brand")
    reactivate.add_argument("brand_id")
    reactivate.set_defaults(func=_brand_action("reactivate"))
    keys = brand.add_parser("key", parents=[common], help="a brand's API keys: list, issue, rotate, revoke")
    keys.add_argument("key_action", choices=["list", "issue", "rotate", "revoke"])
    keys.add_argument("brand_id")
    keys.add_argument("key_id", nargs="?")
    keys.add_argument("--label", default="")
    keys.set_defaults(func=cmd_brand_key)

    admin_keys = sub.add_parser("admin-key", help="operator keys for /admin/v1").add_subparsers(
        dest="admin_key_command", required=True
    )
    admin_key = admin_keys.add_parser("add", parents=[common], help="create an operator key (printed once)")
    admin_key.add_argument("--label", default="")
    admin_key.set_defaults(func=cmd_admin_key)
    admin_keys.add_parser(
        "list", parents=[common], help="operator keys: prefix, label, created, last used, revoked"
    ).set_defaults(func=cmd_admin_key_list)
    admin_key_revoke = admin_keys.add_parser(
        "revoke", parents=[common], help="revoke an operator key (not the last active one)"
    )
    admin_key_revoke.add_argument("prefix", help="the key's prefix as listed (bax_1a2b3c4d_… or 1a2b3c4d) or its id")
    admin_key_revoke.set_defaults(func=cmd_admin_key_revoke)

    ledger = sub.add_parser("ledger", help="the settlement ledger").add_subparsers(dest="ledger_command", required=True)
    verify = ledger.add_parser(
        "verify",
        parents=[common],
        help="seal pending transactions, recompute the hash chain and balances; exit 1 naming the first bad row",
    )
    verify.add_argument("--no-seal", action="store_true", help="check only what is sealed already")
    verify.set_defaults(func=cmd_ledger_verify)
    held = ledger.add_parser(
        "quarantine", help="transactions the sealer could not seal, held out of the chain"
    ).add_subparsers(dest="quarantine_command", required=True)
    held_list = held.add_parser("list", parents=[common], help="held, released and excluded transactions")
    held_list.add_argument("--status", choices=["held", "released", "excluded"])
    held_list.set_defaults(func=cmd_ledger_quarantine)
    for action, text in (
        ("release", "let the sealer try a held transaction again (once its cause is fixed)"),
        ("exclude", "keep a held transaction out of the chain for good: no balance or statement counts it"),
    ):
        resolve = held.add_parser(action, parents=[common], help=text)
        resolve.add_argument("transaction_id")
        resolve.set_defaults(func=cmd_ledger_quarantine)
    user = sub.add_parser("user", help="console users").add_subparsers(dest="user_command", required=True)
    user_add = user.add_parser("add", parents=[common], help="create a console user (asks for the password)")
    user_add.add_argument("username")
    user_add.add_argument("--role", choices=["admin", "auditor"], required=True)
    user_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user_add.set_defaults(func=cmd_user_add)
    user.add_parser("list", parents=[common], help="list console users").set_defaults(func=cmd_user_list)
    benefit = sub.add_parser("benefit", help="benefits of the alliance").add_subparsers(
        dest="benefit_command", required=True
    )
    benefit_list = benefit.add_parser("list", parents=[common], help="every benefit, newest first")
    benefit_list.add_argument("--brand", help="only benefits funded by this brand id")
    benefit_list.add_argument("--status", choices=["active", "paused", "exhausted", "ended"])
    benefit_list.set_defaults(func=cmd_benefit_list)
    webhooks = sub.add_parser("webhooks", help="webhook deliveries").add_subparsers(
        dest="webhooks_command", required=True
    )
    deliver = webhooks.add_parser(
        "deliver", parents=[common], help="deliver due webhooks (the server does this itself unless disabled)"
    )
    deliver.add_argument("--once", action="store_true", help="one pass, then exit")
    deliver.set_defaults(func=cmd_webhooks_deliver)
    close = sub.add_parser("close", parents=[common], help="close a month: net positions and signed statements")
    close.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    close.set_defaults(func=cmd_close)
    statement = sub.add_parser("statement", help="settlement statements").add_subparsers(
        dest="statement_command", required=True
    )
    statement_verify = statement.add_parser(
        "verify", help="check the exchange's signature on a downloaded JSON statement"
    )
    statement_verify.add_argument("file", help="the statement as downloaded from GET /v1/statements/{month}")
    statement_verify.add_argument("--public-key", help="the exchange key (GET /v1/exchange-key), hex or base64")
    statement_verify.set_defaults(func=cmd_statement_verify)
    statement_key = sub.add_parser("statement-key", help="the exchange's statement signing key").add_subparsers(
        dest="statement_key_command", required=True
    )
    statement_key.add_parser(
        "list", parents=[common], help="every key that has signed statements (key id, current or retired)"
    ).set_defaults(func=cmd_statement_key)
    statement_key.add_parser(
        "rotate",
        parents=[common],
        help="replace the database-stored key (a key file is rotated by replacing the file)",
    ).set_defaults(func=cmd_statement_key)
    demo = sub.add_parser(
        "demo", parents=[common], help="build a populated demo alliance of six brands, print a summary, then serve"
    )
    demo.add_argument("--scale", type=int, default=50_000, help="members per brand (default 50,000)")
    demo.add_argument("--seed", type=int, default=2026, help="makes the synthetic data repeatable")
    demo.add_argument("--host")
    demo.add_argument("--port", type=int)
    demo.add_argument("--workers", dest="blind_workers", type=int, help="blinding processes (default: every core)")
    demo.add_argument("--no-serve", action="store_true", help="exit after the summary (tests, CI)")
    demo.add_argument(
        "--demo-file",
        default="alliance-demo.db",
        help="the SQLite file recreated for the demo when no database URL is given",
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "key_action", None) in ("rotate", "revoke") and not args.key_id:
        print(f"alliance: error: 'brand key {args.key_action}' needs KEY_ID", file=sys.stderr)
        return 2
    from alliance.core.problems import Problem

    try:
        args.func(args)
    except SettingsError as exc:
        print(f"alliance: configuration error: {exc}", file=sys.stderr)
        return 2
    except Problem as exc:
        print(f"alliance: {exc.detail or exc.slug}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"alliance: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"alliance: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM where a command turns it into one (demo)
        print("alliance: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
