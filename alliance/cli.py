"""``alliance``: the exchange-side command line (serve, migrate, brands, operator keys, audit).

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

    admin_key = (
        sub.add_parser("admin-key", help="operator keys for /admin/v1")
        .add_subparsers(dest="admin_key_command", required=True)
        .add_parser("add", parents=[common], help="create an operator key (printed once)")
    )
    admin_key.add_argument("--label", default="")
    admin_key.set_defaults(func=cmd_admin_key)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
