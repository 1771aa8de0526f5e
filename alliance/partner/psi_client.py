"""SDK calls for private matching: segments, matches, agent tasks, signing keys and contract signatures.

A thin layer over :class:`alliance.partner.client.PartnerClient`: JSON in and out as plain dicts,
points as raw bytes (concatenated 32-byte records) streamed in 1 MiB pieces.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from alliance.partner.client import PartnerClient
from privacy.psi import SignedMembershipReport

__all__ = ["PsiApi"]

_PIECE = 1 << 20
_LONG = 600.0  # uploads of millions of points, and counting, take longer than a plain call
Progress = Callable[[int], None]


def _pieces(data: bytes | memoryview, progress: Progress | None) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), _PIECE):
        piece = bytes(view[start : start + _PIECE])
        if progress is not None:
            progress(len(piece))
        yield piece


class PsiApi:
    """Private-matching calls of one brand's agent."""

    def __init__(self, client: PartnerClient) -> None:
        self.client = client

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.client.request(method, path, **kwargs).json()

    # segments
    def create_segment(self, name: str, id_type: str, size: int, key_epoch: str, tags: list[str]) -> dict[str, Any]:
        body = {"name": name, "id_type": id_type, "size": size, "key_epoch": key_epoch, "tags": tags}
        result: dict[str, Any] = self._json("POST", "/v1/segments", json=body)
        return result

    def upload_items(self, segment_id: str, points: bytes, progress: Progress | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "PUT",
            f"/v1/segments/{segment_id}/items",
            content=_pieces(points, progress),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(points))},
            timeout=_LONG,
        )
        return result

    def publish_segment(self, segment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/segments/{segment_id}/publish")
        return result

    def get_segment(self, segment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/segments/{segment_id}")
        return result

    # matches
    def create_match(
        self, segment_id: str, counterparty_segment_id: str, disclosure: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"segment_id": segment_id, "counterparty_segment_id": counterparty_segment_id}
        if disclosure is not None:
            body["disclosure"] = disclosure
        result: dict[str, Any] = self._json("POST", "/v1/matches", json=body)
        return result

    def get_match(self, match_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/matches/{match_id}", timeout=_LONG)
        return result

    def match_result(self, match_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/matches/{match_id}/result")
        return result

    # tasks
    def list_tasks(self, state: str = "open") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._json("GET", "/v1/tasks", params={"state": state})
        return result

    def _download(self, path: str, progress: Progress | None) -> bytes:
        with self.client.stream("GET", path, timeout=_LONG) as response:
            size = int(response.headers.get("content-length") or 0)
            buffer = bytearray()
            if size:
                buffer = bytearray(size)
                buffer.clear()
            for piece in response.iter_bytes(_PIECE):
                buffer += piece
                if progress is not None:
                    progress(len(piece))
        return bytes(buffer)

    def task_items(self, task_id: str, progress: Progress | None = None) -> bytes:
        return self._download(f"/v1/tasks/{task_id}/items", progress)

    def task_reblinded(self, task_id: str, progress: Progress | None = None) -> bytes:
        return self._download(f"/v1/tasks/{task_id}/reblinded", progress)

    def put_task_result(self, task_id: str, points: bytes, progress: Progress | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "PUT",
            f"/v1/tasks/{task_id}/result",
            content=_pieces(points, progress),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(points))},
            timeout=_LONG,
        )
        return result

    def put_task_report(self, task_id: str, report: SignedMembershipReport) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "PUT",
            f"/v1/tasks/{task_id}/report",
            content=msgspec.json.encode(report),
            headers={"Content-Type": "application/json"},
        )
        return result

    def refuse_task(self, task_id: str, reason: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", f"/v1/tasks/{task_id}/refusal", json={"reason": reason[:400]})
        return result

    # signing keys and contracts (the contracts API; the agent holds the signing key)
    def register_signing_key(self, public_key: bytes) -> dict[str, Any]:
        body = {"public_key": base64.b64encode(public_key).decode("ascii")}
        result: dict[str, Any] = self._json("PUT", "/v1/signing-key", json=body)
        return result

    def signing_keys(self) -> dict[str, Any]:
        """``{"current": {...} | None, "history": [...]}`` of the brand's registered signing keys."""
        result: dict[str, Any] = self._json("GET", "/v1/signing-key")
        return result

    def get_contract(self, contract_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/contracts/{contract_id}")
        return result

    def sign_contract(self, contract_id: str, version: int, signature: bytes) -> dict[str, Any]:
        body = {"version": version, "signature": base64.b64encode(signature).decode("ascii")}
        result: dict[str, Any] = self._json("POST", f"/v1/contracts/{contract_id}/signatures", json=body)
        return result
