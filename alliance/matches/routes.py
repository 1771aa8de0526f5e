"""Partner API for match jobs and the agent tasks they consist of. Points travel as streamed
``application/octet-stream`` bodies of 32-byte records; everything else is JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Stream

from alliance.core.database import session_factory
from alliance.core.deps import Audit, Caller, Db
from alliance.core.problems import problem_responses
from alliance.matches import service
from alliance.matches.schemas import MatchCreate, MatchOut, MatchResultOut, TaskOut, TaskRefusal
from alliance.segments import storage
from alliance.segments.config import HARD_MAX_SEGMENT_ITEMS, load_psi_settings
from alliance.segments.routes import OCTET_STREAM, BinaryBodyOperation, binary_body
from privacy.psi import SignedMembershipReport

__all__ = ["MatchController", "TaskController"]


def _brand(caller: Caller) -> str:
    return caller.brand_id


def _points(request: Request[Any, Any, Any], set_id: str, items: int) -> Stream:
    body: AsyncIterator[bytes] = storage.iter_set_bytes(session_factory(request.app.state), set_id)
    return Stream(
        body,
        media_type=OCTET_STREAM,
        headers={"Content-Length": str(items * 32), "X-Item-Count": str(items)},
    )


class MatchController(Controller):
    path = "/matches"
    tags = ["matches"]

    @post("/", operation_id="createMatch", summary="Request a match under the contract in force with the other brand")
    async def create(self, db: Db, caller: Caller, audit: Audit, data: JSONBody[MatchCreate]) -> MatchOut:
        match = await service.create_match(db, audit, caller.brand_id, data, load_psi_settings())
        return await service.match_out(db, match, caller.brand_id)

    @get("/", operation_id="listMatches", summary="Matches the calling brand is a party to, newest first")
    async def list_matches(self, db: Db, caller: Caller, audit: Audit) -> list[MatchOut]:
        return [
            await service.match_out(db, m, caller.brand_id)
            for m in await service.list_matches(db, audit, caller.brand_id)
        ]

    @get("/{match_id:str}", operation_id="getMatch", summary="One match the calling brand is a party to")
    async def get_match(self, db: Db, caller: Caller, audit: Audit, match_id: FromPath[str]) -> MatchOut:
        match = await service.get_match(db, audit, caller.brand_id, match_id, load_psi_settings())
        return await service.match_out(db, match, caller.brand_id)

    @get(
        "/{match_id:str}/result",
        operation_id="getMatchResult",
        summary="What the disclosure policy releases: a count (cardinality) or the recipient's signed count",
        responses=problem_responses(409),
    )
    async def result(self, db: Db, caller: Caller, audit: Audit, match_id: FromPath[str]) -> MatchResultOut:
        return await service.match_result(db, audit, caller.brand_id, match_id, load_psi_settings())


class TaskController(Controller):
    path = "/tasks"
    tags = ["matches"]

    @get("/", operation_id="listTasks", summary="The calling brand's agent tasks (open ones by default)")
    async def list_tasks(
        self,
        db: Db,
        caller: Caller,
        audit: Audit,
        task_state: Annotated[
            str,
            QueryParameter(
                name="state", pattern="^(open|pending|done|failed|cancelled|all)$", description="task state"
            ),
        ] = "open",
    ) -> list[TaskOut]:
        rows = await service.list_tasks(db, audit, caller.brand_id, None if task_state == "all" else task_state)
        return [service.task_out(task, match) for task, match in rows]

    @get("/{task_id:str}", operation_id="getTask", summary="One of the calling brand's agent tasks")
    async def get_task(self, db: Db, caller: Caller, task_id: FromPath[str]) -> TaskOut:
        task, match = await service.get_task(db, caller.brand_id, task_id)
        return service.task_out(task, match)

    @get(
        "/{task_id:str}/items",
        operation_id="getTaskItems",
        summary="The counterparty's published points to re-blind (application/octet-stream, 32-byte records)",
        media_type=OCTET_STREAM,
        responses=problem_responses(409),
    )
    async def items(self, request: Request[Any, Any, Any], db: Db, caller: Caller, task_id: FromPath[str]) -> Stream:
        set_id, count = await service.task_input_set(db, caller.brand_id, task_id)
        return _points(request, set_id, count)

    @get(
        "/{task_id:str}/reblinded",
        operation_id="getTaskReblinded",
        summary="Membership recipient only: the counterparty's ordered re-blinding of your own segment",
        media_type=OCTET_STREAM,
        responses=problem_responses(409),
    )
    async def reblinded(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, task_id: FromPath[str]
    ) -> Stream:
        set_id, count = await service.task_reblinded_set(db, caller.brand_id, task_id)
        return _points(request, set_id, count)

    @put(
        "/{task_id:str}/result",
        operation_id="putTaskResult",
        summary="Upload the re-blinded points (application/octet-stream, exactly the declared count)",
        request_max_body_size=HARD_MAX_SEGMENT_ITEMS * 32,
        operation_class=BinaryBodyOperation,
        responses=problem_responses(415),
    )
    async def result(
        self, request: Request[Any, Any, Any], db: Db, caller: Caller, audit: Audit, task_id: FromPath[str]
    ) -> TaskOut:
        await service.get_task(db, caller.brand_id, task_id)  # 404 before anything else
        body, length = binary_body(request)
        task, match, ready = await service.submit_task_result(
            db, audit, caller.brand_id, task_id, body, content_length=length
        )
        if ready:
            # The result is safe first; counting then runs in its own transaction (and is retried by a
            # later read of the match should this process die meanwhile).
            await db.commit()
            match = await service.compute_match(db, audit, match.id, load_psi_settings())
        return service.task_out(task, match)

    @put(
        "/{task_id:str}/report",
        operation_id="putTaskReport",
        summary="Membership recipient: report the overlap count, signed with the brand's Ed25519 key",
    )
    async def report(
        self, db: Db, caller: Caller, audit: Audit, task_id: FromPath[str], data: JSONBody[SignedMembershipReport]
    ) -> TaskOut:
        await service.submit_membership_report(db, audit, caller.brand_id, task_id, data)
        task, match = await service.get_task(db, caller.brand_id, task_id)
        return service.task_out(task, match)

    @post(
        "/{task_id:str}/refusal",
        operation_id="refuseTask",
        status_code=200,
        summary="The agent refuses the task; the match fails with the reason",
    )
    async def refuse(
        self, db: Db, caller: Caller, audit: Audit, task_id: FromPath[str], data: JSONBody[TaskRefusal]
    ) -> TaskOut:
        await service.refuse_task(db, audit, caller.brand_id, task_id, data.reason)
        task, match = await service.get_task(db, caller.brand_id, task_id)
        return service.task_out(task, match)
