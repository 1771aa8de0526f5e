"""Python SDK for the partner API. Problem responses become :class:`PartnerError` with their stable type."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

__all__ = ["PartnerClient", "PartnerError"]


class PartnerError(Exception):
    """The exchange refused a call; ``type`` is the problem's stable type (``urn:bax:problem:...``)."""

    def __init__(self, status: int, type_: str, detail: str) -> None:
        super().__init__(f"{status} {type_}: {detail}")
        self.status = status
        self.type = type_
        self.detail = detail


class PartnerClient:
    """A brand's authenticated connection to the exchange."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 30.0) -> None:
        if not api_key:
            raise ValueError("an API key is required (ALLIANCE_API_KEY)")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": "alliance-partner/0.1"},
            timeout=timeout,
        )

    def __enter__(self) -> PartnerClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise PartnerError(0, "urn:bax:problem:unreachable", f"cannot reach the exchange: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                raise PartnerError(response.status_code, body.get("type", ""), body.get("detail") or body.get("title"))
            except ValueError:
                raise PartnerError(response.status_code, "", response.text[:200]) from None
        return response

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/me").json()
        return result
