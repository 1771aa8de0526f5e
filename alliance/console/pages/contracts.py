"""Contracts: every contract of the alliance (keyset pages), one contract's versions with a readable
diff of the terms between consecutive versions and each party's signature (key fingerprint, time),
and the alliance's review - approve, or reject with a reason (a veto: the version leaves force).

Reviews go through ``alliance.contracts.service.review_version``, the function the operator API
(``POST /admin/v1/contracts/{id}/versions/{n}/review``) calls, audited as ``console:<username>``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter

from alliance.console import alliance_queries as aq
from alliance.console import queries
from alliance.console.auth import admin_only
from alliance.console.i18n import Translator
from alliance.console.rendering import disclosure_label, form_fields, render, translator
from alliance.contracts import service as contract_service
from alliance.core.deps import Audit, Db
from alliance.core.problems import Problem

__all__ = ["ContractPages", "field_label", "format_term"]

Cursor = Annotated[str | None, QueryParameter(max_length=64)]
BrandFilter = Annotated[str | None, QueryParameter(max_length=32)]
Notice = Annotated[str | None, QueryParameter(pattern=r"^(approved|rejected)$")]

_MONEY_FIELDS = ("amount", "per_event_cap", "monthly_cap")
_BRAND_FIELDS = ("funding_brand", "distributor_brand")


def _leaf(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def field_label(t: Translator, path: str) -> str:
    """``coupon_commission.rate_bp`` -> "Coupon commission › Rate (%)" in the console's language."""
    parts = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        label = t(f"contracts.field.{name}") if t.has(f"contracts.field.{name}") else name
        parts.append(f"{label} {index.rstrip(']')}" if index else label)
    return " › ".join(parts)


def format_term(t: Translator, path: str, value: Any, currency: str, brands: dict[str, str]) -> str:
    """One term's value for people: money in the settlement currency, basis points as percent, times in
    the console's zone, brand ids as names, durations in days."""
    leaf = _leaf(path)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return t("contracts.yes") if value else t("contracts.no")
    if isinstance(value, datetime):
        return t.time(value)
    if isinstance(value, int) and leaf in _MONEY_FIELDS:
        return t.money(value, currency)
    if isinstance(value, int) and leaf.endswith("_bp"):
        return f"{Decimal(value) / 100:.2f}%"
    if isinstance(value, int) and leaf == "attribution_window_seconds":
        if value % 86_400 == 0:
            return t("contracts.duration.days", n=value // 86_400)
        return t("contracts.duration.seconds", n=value)
    if isinstance(value, int) and leaf == "dp_epsilon_milli_per_month":
        return f"ε {Decimal(value) / 1000}"
    if isinstance(value, str) and leaf in _BRAND_FIELDS:
        return brands.get(value, value)
    if isinstance(value, str) and leaf == "disclosure":
        return disclosure_label(t, value, brands)
    if isinstance(value, int):
        return t.number(value)
    return str(value)


def _formatter(t: Translator, brands: dict[str, str]) -> Callable[[str, Any, str], str]:
    def fmt(path: str, value: Any, currency: str) -> str:
        return format_term(t, path, value, currency, brands)

    return fmt


def _see_other(location: str) -> Response[bytes]:
    return Response(b"", status_code=303, headers={"Location": location}, media_type=MediaType.TEXT)


class ContractPages(Controller):
    path = "/contracts"
    include_in_schema = False

    @get("/", operation_id="consoleContracts")
    async def list(
        self, request: Request[Any, Any, Any], db: Db, brand: BrandFilter = None, before: Cursor = None
    ) -> Response[str]:
        brand = (brand or "").strip() or None
        listing = await aq.contract_page(db, brand_id=brand, before=before or None)
        names = await queries.brand_names(db)
        return render(
            request,
            "contracts/list.html",
            section="contracts",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            brand=brand or "",
            before=before or "",
        )

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        contract_id: str,
        *,
        notice: str | None = None,
        error: str | None = None,
        error_version: int | None = None,
        status_code: int = 200,
    ) -> Response[str]:
        t = translator(request)
        contract = await contract_service.get_contract(db, contract_id, None)
        names = await queries.brand_names(db)
        reviews = await aq.review_rows(db, contract.contract_id)
        key_ids = [s.key_id for v in contract.versions for s in v.signatures]
        fingerprints = await aq.key_fingerprints(db, key_ids)
        diffs = {
            later.version: aq.terms_changes(earlier.terms, later.terms)
            for earlier, later in zip(contract.versions, contract.versions[1:], strict=False)
        }
        fields = {v.version: aq.terms_fields(v.terms) for v in contract.versions}
        return render(
            request,
            "contracts/detail.html",
            status_code=status_code,
            section="contracts",
            contract=contract,
            versions=list(reversed(contract.versions)),  # newest first
            brands=names,
            reviews=reviews,
            fingerprints=fingerprints,
            signed_by={(v.version, s.brand_id): s for v in contract.versions for s in v.signatures},
            diffs=diffs,
            fields=fields,
            label=lambda path: field_label(t, path),
            fmt=_formatter(t, names),
            notice=notice,
            error=error,
            error_version=error_version,
        )

    @get("/{contract_id:str}", operation_id="consoleContract")
    async def detail(
        self, request: Request[Any, Any, Any], db: Db, contract_id: FromPath[str], done: Notice = None
    ) -> Response[str]:
        notice = translator(request)(f"contracts.notice.{done}") if done else None
        return await self._detail(request, db, contract_id, notice=notice)

    async def _review(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        audit: Audit,
        contract_id: str,
        version: int,
        decision: Literal["approve", "reject"],
    ) -> Response[Any]:
        reason = (await form_fields(request)).get("reason", "")
        try:
            await contract_service.review_version(db, audit, contract_id, version, decision, reason)
        except Problem as exc:
            if exc.status >= 500 or exc.status == 404:
                raise
            await db.rollback()
            message = translator(request)(f"contracts.review.error.{exc.slug}")
            return await self._detail(
                request, db, contract_id, error=message, error_version=version, status_code=exc.status
            )
        done = "approved" if decision == "approve" else "rejected"
        return _see_other(f"/console/contracts/{contract_id}?done={done}#v{version}")

    @post(
        "/{contract_id:str}/versions/{version:int}/approve", operation_id="consoleApproveContract", guards=[admin_only]
    )
    async def approve(
        self, request: Request[Any, Any, Any], db: Db, audit: Audit, contract_id: FromPath[str], version: FromPath[int]
    ) -> Response[Any]:
        return await self._review(request, db, audit, contract_id, version, "approve")

    @post("/{contract_id:str}/versions/{version:int}/reject", operation_id="consoleRejectContract", guards=[admin_only])
    async def reject(
        self, request: Request[Any, Any, Any], db: Db, audit: Audit, contract_id: FromPath[str], version: FromPath[int]
    ) -> Response[Any]:
        return await self._review(request, db, audit, contract_id, version, "reject")
