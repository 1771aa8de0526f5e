"""Brands: the member list, onboarding (the first API key is shown once), a brand's page with its
keys, and suspension. Every change goes through ``alliance.brands.service`` - the same functions the
operator API and the CLI call - and is audited as ``console:<username>``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter

from alliance.brands import service as brands
from alliance.brands.schemas import BrandCreate, IssuedApiKey
from alliance.console import queries
from alliance.console.auth import User, admin_only
from alliance.console.rendering import form_fields, is_htmx, render, translator
from alliance.core.deps import Audit, Db
from alliance.core.problems import Problem

__all__ = ["BrandPages"]

Search = Annotated[str | None, QueryParameter(max_length=200)]
StatusFilter = Annotated[str | None, QueryParameter(pattern=r"^(active|suspended)?$")]
PageNumber = Annotated[int, QueryParameter(ge=1, le=100_000)]
Notice = Annotated[str | None, QueryParameter(pattern=r"^(suspended|reactivated)$")]


def _see_other(location: str) -> Response[bytes]:
    return Response(b"", status_code=303, headers={"Location": location}, media_type=MediaType.TEXT)


class BrandPages(Controller):
    path = "/brands"
    include_in_schema = False

    async def _list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        *,
        search: str | None = None,
        status: str | None = None,
        page: int = 1,
        error: str | None = None,
        form: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response[str]:
        listing = await queries.brand_page(db, status=status or None, search=search or None, page=page)
        return render(
            request,
            "brands/list.html",
            status_code=status_code,
            section="brands",
            listing=listing,
            search=search or "",
            status=status or "",
            error=error,
            form=form or {},
        )

    @get("/", operation_id="consoleBrands")
    async def list(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        q: Search = None,
        status: StatusFilter = None,
        page: PageNumber = 1,
    ) -> Response[str]:
        return await self._list(request, db, search=q, status=status, page=page)

    @post("/", operation_id="consoleOnboardBrand", guards=[admin_only])
    async def onboard(self, request: Request[Any, Any, Any], db: Db, audit: Audit) -> Response[str]:
        fields = await form_fields(request)
        t = translator(request)
        category = fields.get("category", "").strip() or None
        try:
            data = msgspec.convert({"name": fields.get("name", "").strip(), "category": category}, BrandCreate)
        except msgspec.ValidationError:
            return await self._list(request, db, error=t("brands.onboard.invalid"), form=fields, status_code=422)
        try:
            brand, issued = await brands.create_brand(db, audit, data.name, data.category)
        except Problem as exc:
            await db.rollback()
            if exc.slug != "brand-exists":
                raise
            message = t("brands.onboard.exists", name=data.name)
            return await self._list(request, db, error=message, form=fields, status_code=409)
        return render(request, "brands/created.html", status_code=201, section="brands", brand=brand, issued=issued)

    async def _detail(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        user: User,
        brand_id: str,
        *,
        issued: IssuedApiKey | None = None,
        key_error: str | None = None,
        notice: str | None = None,
        fragment: bool = False,
    ) -> Response[str]:
        brand = await brands.get_brand(db, brand_id)
        keys = [brands.key_out(k) for k in await brands.list_keys(db, brand_id)]
        context: dict[str, Any] = {"brand": brand, "keys": keys, "issued": issued, "key_error": key_error}
        if fragment:
            return render(request, "brands/_keys.html", section="brands", **context)
        recent = await queries.audit_page(db, brand_id=brand_id, limit=10)
        return render(request, "brands/detail.html", section="brands", recent=recent.entries, notice=notice, **context)

    @get("/{brand_id:str}", operation_id="consoleBrand")
    async def detail(
        self, request: Request[Any, Any, Any], db: Db, user: User, brand_id: FromPath[str], done: Notice = None
    ) -> Response[str]:
        t = translator(request)
        notice = t(f"brands.notice.{done}") if done else None
        return await self._detail(request, db, user, brand_id, notice=notice)

    @post("/{brand_id:str}/suspend", operation_id="consoleSuspendBrand", guards=[admin_only])
    async def suspend(
        self, request: Request[Any, Any, Any], db: Db, audit: Audit, brand_id: FromPath[str]
    ) -> Response[bytes]:
        fields = await form_fields(request)
        await brands.suspend_brand(db, audit, brand_id, fields.get("reason", "").strip()[:500])
        return _see_other(f"/console/brands/{brand_id}?done=suspended")

    @post("/{brand_id:str}/reactivate", operation_id="consoleReactivateBrand", guards=[admin_only])
    async def reactivate(self, db: Db, audit: Audit, brand_id: FromPath[str]) -> Response[bytes]:
        await brands.reactivate_brand(db, audit, brand_id)
        return _see_other(f"/console/brands/{brand_id}?done=reactivated")

    async def _key_change(
        self, request: Request[Any, Any, Any], db: Db, user: User, brand_id: str, change: Any
    ) -> Response[str]:
        """Run a key change; answer with the keys panel (HTMX) or the whole brand page, showing a new
        secret once or the reason the change was refused."""
        issued: IssuedApiKey | None = None
        key_error: str | None = None
        try:
            issued = await change()
        except Problem as exc:
            if exc.status >= 500 or exc.slug in ("brand-not-found",):
                raise
            await db.rollback()
            key_error = translator(request)(f"keys.error.{exc.slug}")
        return await self._detail(
            request, db, user, brand_id, issued=issued, key_error=key_error, fragment=is_htmx(request)
        )

    @post("/{brand_id:str}/keys", operation_id="consoleIssueKey", guards=[admin_only])
    async def issue_key(
        self, request: Request[Any, Any, Any], db: Db, audit: Audit, user: User, brand_id: FromPath[str]
    ) -> Response[str]:
        label = (await form_fields(request)).get("label", "").strip()[:100]

        async def change() -> IssuedApiKey:
            return await brands.issue_key(db, audit, brand_id, label)

        return await self._key_change(request, db, user, brand_id, change)

    @post("/{brand_id:str}/keys/{key_id:str}/rotate", operation_id="consoleRotateKey", guards=[admin_only])
    async def rotate_key(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        audit: Audit,
        user: User,
        brand_id: FromPath[str],
        key_id: FromPath[str],
    ) -> Response[str]:
        async def change() -> IssuedApiKey:
            return await brands.rotate_key(db, audit, brand_id, key_id)

        return await self._key_change(request, db, user, brand_id, change)

    @post("/{brand_id:str}/keys/{key_id:str}/revoke", operation_id="consoleRevokeKey", guards=[admin_only])
    async def revoke_key(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        audit: Audit,
        user: User,
        brand_id: FromPath[str],
        key_id: FromPath[str],
    ) -> Response[str]:
        async def change() -> None:
            await brands.revoke_key(db, audit, brand_id, key_id)

        return await self._key_change(request, db, user, brand_id, change)
