"""``alliance-partner`` commands for benefits: ``benefits``, ``coupons issue``, ``redeem``, ``reverse``,
``refer`` and ``convert``. Amounts are integers of minor units (``12000`` CNY is 120.00 yuan); output
shows them in major units with the currency.

Money-moving commands send an ``Idempotency-Key``: pass ``--idempotency-key`` to retry a call safely;
without it a fresh key is generated and printed, so a retry after a network error can reuse it.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import contracts
from alliance.partner.client import PartnerClient

__all__ = ["register"]

ClientFactory = Callable[[argparse.Namespace], PartnerClient]


def _money(amount: int, currency: str) -> str:
    try:
        return f"{contracts.format_minor_units(amount, currency)} {currency}"
    except (contracts.UnknownCurrency, TypeError):
        return f"{amount} (minor units) {currency}"


def _emit(args: argparse.Namespace, value: Any, text: str) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2) if args.json else text)


def _key(args: argparse.Namespace) -> str:
    if args.idempotency_key:
        return str(args.idempotency_key)
    key = str(uuid.uuid4())
    if not args.json:
        print(f"idempotency key: {key}  (pass --idempotency-key {key} to retry this exact call)", file=sys.stderr)
    return key


def register(sub: Any, common: argparse.ArgumentParser, client: ClientFactory) -> None:
    """Add the benefit commands to the ``alliance-partner`` parser."""

    def cmd_benefits(args: argparse.Namespace) -> None:
        with client(args) as api:
            benefits = api.list_benefits(brand=args.brand, tag=args.tag, status=args.status, role=args.role)
        lines = []
        for b in benefits:
            if b["value_kind"] == "fixed":
                value = _money(b["value"], b["currency"]) + " off"
            else:
                value = f"{b['value'] / 100:g}% off (at most {_money(b['max_discount'], b['currency'])})"
            lines.append(
                f"{b['id']}  {b['status']:<9}  {value}, min spend {_money(b['min_spend'], b['currency'])}  "
                f"{b['name']}  (funded by {b['funding_brand_id']}, {b['remaining_count']} left)"
            )
        _emit(args, benefits, "\n".join(lines) if lines else "no benefits visible to this brand")

    def cmd_coupons_issue(args: argparse.Namespace) -> None:
        with client(args) as api:
            batch = api.issue_coupons(args.benefit_id, args.count)
        codes = [c["code"] for c in batch["coupons"]]
        if args.out:
            Path(args.out).write_text("\n".join(codes) + "\n", encoding="utf-8")
        summary = (
            f"issued {batch['count']} coupon(s) of {batch['benefit_id']} (batch {batch['id']}, "
            f"contract {batch['contract_id']} v{batch['contract_version']})"
        )
        if args.out:
            _emit(args, {k: v for k, v in batch.items() if k != "coupons"}, f"{summary}\ncodes written to {args.out}")
        else:
            _emit(args, batch, summary + "\n" + "\n".join(codes))
        if not args.json:
            print("the codes are shown once: the exchange keeps only their digests", file=sys.stderr)

    def cmd_redeem(args: argparse.Namespace) -> None:
        with client(args) as api:
            r = api.redeem(
                args.code,
                order_reference=args.order,
                order_amount=args.amount,
                channel=args.channel,
                store_id=args.store,
                member_token=args.member,
                new_customer=True if args.new_customer else None,
                idempotency_key=_key(args),
            )
        _emit(
            args,
            r,
            f"redeemed: {_money(r['discount'], r['currency'])} off order {r['order_reference']} "
            f"({_money(r['order_amount'], r['currency'])})\nredemption {r['id']}, commission to "
            f"{r['distributor_brand_id']}: {_money(r['commission'], r['currency'])}, "
            f"ledger {r['ledger_transaction_id']}",
        )

    def cmd_reverse(args: argparse.Namespace) -> None:
        with client(args) as api:
            r = api.reverse(
                args.redemption_id, refund_amount=args.amount, reason=args.reason, idempotency_key=_key(args)
            )
        currency = r["redemption"]["currency"]
        _emit(
            args,
            r,
            f"{'fully' if r['full'] else 'partly'} reversed {r['redemption_id']}: refunded "
            f"{_money(r['refund_amount'], currency)}, {_money(r['restored_discount'], currency)} back to the budget "
            f"(reversal {r['id']}, ledger {r['ledger_transaction_id']})",
        )

    def cmd_refer(args: argparse.Namespace) -> None:
        with client(args) as api:
            r = api.refer(
                args.receiver_brand_id, member_token=args.member, campaign=args.campaign, ttl_seconds=args.ttl
            )
        _emit(
            args,
            r,
            f"referral {r['id']} to {r['receiver_brand_id']}, valid until {r['expires_at']}\n"
            f"token (give it to the member; shown once):\n{r['token']}",
        )

    def cmd_convert(args: argparse.Namespace) -> None:
        with client(args) as api:
            r = api.convert(
                args.token,
                order_reference=args.order,
                order_amount=args.amount,
                currency=args.currency,
                idempotency_key=_key(args),
            )
        _emit(
            args,
            r,
            f"conversion {r['id']} of referral {r['referral_id']}: commission "
            f"{_money(r['commission'], r['currency'])} to {r['referrer_brand_id']}",
        )

    benefits = sub.add_parser("benefits", parents=[common], help="the benefits catalogue this brand sees")
    benefits.add_argument("--brand", help="only benefits funded by this brand id")
    benefits.add_argument("--tag")
    benefits.add_argument("--status", choices=["active", "paused", "exhausted", "ended", "expired"])
    benefits.add_argument("--role", choices=["funded", "distributable"])
    benefits.set_defaults(func=cmd_benefits)

    coupons = sub.add_parser("coupons", help="coupons this brand distributes").add_subparsers(
        dest="coupons_command", required=True
    )
    issue = coupons.add_parser(
        "issue", parents=[common], help="issue a batch of a partner benefit's codes to this brand"
    )
    issue.add_argument("benefit_id")
    issue.add_argument("--count", type=int, default=1, help="how many codes (1-5000)")
    issue.add_argument("--out", help="write the codes to this file, one per line, instead of printing them")
    issue.set_defaults(func=cmd_coupons_issue)

    redeem = sub.add_parser("redeem", parents=[common], help="redeem a coupon code at this (funding) brand")
    redeem.add_argument("code")
    redeem.add_argument("--order", required=True, help="your order reference")
    redeem.add_argument("--amount", type=int, required=True, help="order amount in minor units (12000 = 120.00)")
    redeem.add_argument("--channel", choices=["store", "online", "mini_program"], default="store")
    redeem.add_argument("--store", help="store id")
    redeem.add_argument("--member", help="your opaque member token (for per-member limits)")
    redeem.add_argument("--new-customer", action="store_true", help="the member has not bought from you before")
    redeem.add_argument("--idempotency-key")
    redeem.set_defaults(func=cmd_redeem)

    reverse = sub.add_parser("reverse", parents=[common], help="refund all or part of a redeemed order")
    reverse.add_argument("redemption_id")
    reverse.add_argument("--amount", type=int, help="refunded part of the order, minor units (default: all left)")
    reverse.add_argument("--reason", default="")
    reverse.add_argument("--idempotency-key")
    reverse.set_defaults(func=cmd_reverse)

    refer = sub.add_parser("refer", parents=[common], help="a signed referral token for a member")
    refer.add_argument("receiver_brand_id")
    refer.add_argument("--member", help="your opaque member token (stored hashed)")
    refer.add_argument("--campaign")
    refer.add_argument("--ttl", type=int, help="lifetime in seconds (at most the contract's attribution window)")
    refer.set_defaults(func=cmd_refer)

    convert = sub.add_parser("convert", parents=[common], help="report a referred member's purchase")
    convert.add_argument("token")
    convert.add_argument("--order", required=True)
    convert.add_argument("--amount", type=int, required=True, help="order amount in minor units")
    convert.add_argument("--currency", required=True)
    convert.add_argument("--idempotency-key")
    convert.set_defaults(func=cmd_convert)
