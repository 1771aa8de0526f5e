"""Matching: match jobs (state, segment sizes, the overlap as released, disclosure mode, times), the
brands' published segments (state, size, publication time), and the audience-overlap matrix across all
brands as a heat map. Read-only for both roles.

Nothing on these pages is a member identifier, a blinded point, a digest of points or a signature:
segments appear by name and size, matches by what their disclosure policy released - a count below the
terms' minimum k is shown as suppressed, never as a number or as zero."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import QueryParameter

from alliance.console import alliance_queries as aq
from alliance.console import queries
from alliance.console.rendering import render
from alliance.core.deps import Db

__all__ = ["MatchPages"]

Cursor = Annotated[str | None, QueryParameter(max_length=64)]
BrandFilter = Annotated[str | None, QueryParameter(max_length=32)]


class MatchPages(Controller):
    path = "/matches"
    include_in_schema = False

    @get("/", operation_id="consoleMatches")
    async def jobs(
        self, request: Request[Any, Any, Any], db: Db, brand: BrandFilter = None, before: Cursor = None
    ) -> Response[str]:
        brand = (brand or "").strip() or None
        listing = await aq.match_page(db, brand_id=brand, before=before or None)
        names = await queries.brand_names(db)
        return render(
            request,
            "matches/jobs.html",
            section="matches",
            tab="jobs",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            brand=brand or "",
            before=before or "",
        )

    @get("/segments", operation_id="consoleSegments")
    async def segments(
        self, request: Request[Any, Any, Any], db: Db, brand: BrandFilter = None, before: Cursor = None
    ) -> Response[str]:
        brand = (brand or "").strip() or None
        listing = await aq.segment_page(db, brand_id=brand, before=before or None)
        names = await queries.brand_names(db)
        return render(
            request,
            "matches/segments.html",
            section="matches",
            tab="segments",
            listing=listing,
            brands=names,
            brand_options=sorted(names.items(), key=lambda item: item[1]),
            brand=brand or "",
            before=before or "",
        )

    @get("/overlap", operation_id="consoleOverlap")
    async def overlap(self, request: Request[Any, Any, Any], db: Db) -> Response[str]:
        matrix = await aq.overlap_matrix(db)
        return render(request, "matches/overlap.html", section="matches", tab="overlap", matrix=matrix)
