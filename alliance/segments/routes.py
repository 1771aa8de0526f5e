"""Partner API for segments: metadata as JSON, points as a streamed ``application/octet-stream`` body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody

from alliance.core.deps import Audit, Caller, Db
from alliance.core.problems import Problem, problem_responses
from alliance.core.settings import get_settings
from alliance.segments import service
from alliance.segments.config import HARD_MAX_SEGMENT_ITEMS, load_psi_settings
from alliance.segments.schemas import SegmentCreate, SegmentOut

__all__ = ["OCTET_STREAM", "BinaryBodyOperation", "SegmentController", "alliance_id_of", "binary_body"]

OCTET_STREAM = "application/octet-stream"


@dataclass
class BinaryBodyOperation(Operation):
    """``operation_class`` of a route that reads its body with :func:`binary_body`: documents the
    ``application/octet-stream`` request body the handler's signature cannot show."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            description="Concatenated 32-byte records",
            content={
                OCTET_STREAM: OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY))
            },
        )


def alliance_id_of(request: Request[Any, Any, Any]) -> str:
    settings = getattr(request.app.state, "settings", None) or get_settings()
    return str(settings.alliance_id)


def binary_body(request: Request[Any, Any, Any]) -> tuple[Any, int | None]:
    """The request's streamed body and announced length, after checking it is ``application/octet-stream``."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != OCTET_STREAM:
        raise Problem(415, "unsupported-media-type", f"send the points as {OCTET_STREAM} (32-byte records)")
    return request.stream(), request.content_length


class SegmentController(Controller):
    path = "/segments"
    tags = ["segments"]

    @post("/", operation_id="createSegment", summary="Declare a segment (metadata); upload its points next")
    async def create(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, audit: Audit, data: JSONBody[SegmentCreate]
    ) -> SegmentOut:
        segment = await service.create_segment(db, audit, caller.brand_id, data, load_psi_settings())
        return service.segment_out(segment, alliance_id_of(request))

    @get("/", operation_id="listSegments", summary="The calling brand's segments")
    async def list_segments(self, request: Request[Any, Any, Any], db: Db, caller: Caller) -> list[SegmentOut]:
        alliance_id = alliance_id_of(request)
        return [service.segment_out(s, alliance_id) for s in await service.list_segments(db, caller.brand_id)]

    @get("/{segment_id:str}", operation_id="getSegment", summary="One of the calling brand's segments")
    async def get_segment(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, segment_id: FromPath[str]
    ) -> SegmentOut:
        segment = await service.get_own_segment(db, caller.brand_id, segment_id)
        return service.segment_out(segment, alliance_id_of(request))

    @put(
        "/{segment_id:str}/items",
        operation_id="uploadSegmentItems",
        summary="Upload the blinded points (application/octet-stream, concatenated 32-byte records)",
        description=(
            "Streams the body; at most the declared size. Every record must be a canonical Curve25519 "
            "u-coordinate of a point on the curve (not the twist, not of small order). Replaces a "
            "previous upload of a draft segment; a rejected upload changes nothing."
        ),
        # The JSON body limit does not apply: the per-request limit is the segment's declared size.
        request_max_body_size=HARD_MAX_SEGMENT_ITEMS * 32,
        operation_class=BinaryBodyOperation,
        responses=problem_responses(415),
    )
    async def upload(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, audit: Audit, segment_id: FromPath[str]
    ) -> SegmentOut:
        await service.get_own_segment(db, caller.brand_id, segment_id)  # 404 before anything else
        body, length = binary_body(request)
        segment = await service.upload_items(db, audit, caller.brand_id, segment_id, body, content_length=length)
        return service.segment_out(segment, alliance_id_of(request))

    @post(
        "/{segment_id:str}/publish",
        operation_id="publishSegment",
        status_code=200,
        summary="Publish a complete segment so it can be matched",
    )
    async def publish(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, audit: Audit, segment_id: FromPath[str]
    ) -> SegmentOut:
        segment = await service.publish_segment(db, audit, caller.brand_id, segment_id)
        return service.segment_out(segment, alliance_id_of(request))
