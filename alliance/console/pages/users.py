"""Console users (admins only). Users are added on the exchange host with ``alliance user add``, so
the console never handles a new password in a form."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from alliance.console import service
from alliance.console.auth import admin_only
from alliance.console.rendering import render
from alliance.core.deps import Db

__all__ = ["UserPages"]


class UserPages(Controller):
    path = "/users"
    include_in_schema = False
    guards = [admin_only]

    @get("/", operation_id="consoleUsers")
    async def list(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        return render(request, "users/list.html", section="users", users=await service.list_users(db))
