"""``alliance-partner``: the command line a brand runs on its own machines.

Connection settings come from ``ALLIANCE_URL`` and ``ALLIANCE_API_KEY`` (or ``--url`` / ``--api-key``).
Errors print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from alliance.partner import benefits_cli, psi_cli
from alliance.partner.client import PartnerClient, PartnerError

__all__ = ["main"]


def _client(args: argparse.Namespace) -> PartnerClient:
    url = args.url or os.environ.get("ALLIANCE_URL", "http://127.0.0.1:8000")
    key = args.api_key or os.environ.get("ALLIANCE_API_KEY", "")
    if not key:
        raise PartnerError(0, "urn:bax:problem:no-api-key", "set ALLIANCE_API_KEY or pass --api-key")
    return PartnerClient(url, key)


def cmd_me(args: argparse.Namespace) -> None:
    with _client(args) as client:
        me = client.me()
    if args.json:
        print(json.dumps(me, ensure_ascii=False, indent=2))
    else:
        brand = me["brand"]
        print(f"{brand['name']} ({brand['id']}), {brand['status']}; key {me['key']['prefix']}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alliance-partner", description="Brand Alliance Exchange partner agent")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="exchange base URL (ALLIANCE_URL)")
    common.add_argument("--api-key", help="the brand's API key (ALLIANCE_API_KEY); prefer the variable")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("me", parents=[common], help="show which brand this key belongs to").set_defaults(func=cmd_me)
    psi_cli.register(sub, common, _client)
    benefits_cli.register(sub, common, _client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except PartnerError as exc:
        print(f"alliance-partner: {exc.detail} ({exc.type or exc.status})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
