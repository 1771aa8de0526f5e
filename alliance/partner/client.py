"""Python SDK for the partner API. Problem responses become :class:`PartnerError` with their stable type."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Like :meth:`request` for large (binary) responses, read piece by piece inside the block."""
        try:
            with self._http.stream(method, path, **kwargs) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        body = response.json()
                    except ValueError:
                        raise PartnerError(response.status_code, "", response.text[:200]) from None
                    raise PartnerError(
                        response.status_code, body.get("type", ""), body.get("detail") or body.get("title")
                    )
                yield response
        except httpx.TransportError as exc:
            raise PartnerError(0, "urn:bax:problem:unreachable", f"cannot reach the exchange: {exc}") from exc

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/v1/me").json()
        return result

    # --- benefits, coupons, redemptions, referrals ------------------------------------------------

    def list_benefits(self, **filters: Any) -> list[dict[str, Any]]:
        """The catalogue as this brand sees it (``brand``, ``tag``, ``status``, ``role`` filters)."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: list[dict[str, Any]] = self.request("GET", "/v1/benefits", params=params).json()
        return result

    def issue_coupons(self, benefit_id: str, count: int) -> dict[str, Any]:
        """Issue ``count`` codes of a partner's benefit to this brand; the codes are in this answer only."""
        result: dict[str, Any] = self.request(
            "POST", f"/v1/benefits/{benefit_id}/coupons", json={"count": count}
        ).json()
        return result

    def redeem(
        self,
        code: str,
        *,
        order_reference: str,
        order_amount: int,
        channel: str,
        idempotency_key: str,
        store_id: str | None = None,
        member_token: str | None = None,
        new_customer: bool | None = None,
        currency: str | None = None,
    ) -> dict[str, Any]:
        """Redeem a code at this (funding) brand. Retry with the same ``idempotency_key``: it is applied once."""
        body: dict[str, Any] = {
            "code": code,
            "order_reference": order_reference,
            "order_amount": order_amount,
            "channel": channel,
        }
        optional = {
            "store_id": store_id,
            "member_token": member_token,
            "new_customer": new_customer,
            "currency": currency,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        response = self.request("POST", "/v1/redemptions", json=body, headers={"Idempotency-Key": idempotency_key})
        result: dict[str, Any] = response.json()
        return result

    def reverse(
        self, redemption_id: str, *, idempotency_key: str, refund_amount: int | None = None, reason: str = ""
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": reason}
        if refund_amount is not None:
            body["refund_amount"] = refund_amount
        response = self.request(
            "POST", f"/v1/redemptions/{redemption_id}/reversal", json=body, headers={"Idempotency-Key": idempotency_key}
        )
        result: dict[str, Any] = response.json()
        return result

    def refer(
        self,
        receiver_brand_id: str,
        *,
        member_token: str | None = None,
        campaign: str | None = None,
        ttl_seconds: int | None = None,
    ) -> dict[str, Any]:
        """A signed referral token for a member this brand sends to ``receiver_brand_id``."""
        body: dict[str, Any] = {"receiver_brand_id": receiver_brand_id}
        optional = {"member_token": member_token, "campaign": campaign, "ttl_seconds": ttl_seconds}
        body.update({k: v for k, v in optional.items() if v is not None})
        result: dict[str, Any] = self.request("POST", "/v1/referrals", json=body).json()
        return result

    def convert(
        self, token: str, *, order_reference: str, order_amount: int, currency: str, idempotency_key: str
    ) -> dict[str, Any]:
        """Report a referred member's purchase at this brand (posts the referrer's commission once)."""
        body = {"token": token, "order_reference": order_reference, "order_amount": order_amount, "currency": currency}
        response = self.request("POST", "/v1/conversions", json=body, headers={"Idempotency-Key": idempotency_key})
        result: dict[str, Any] = response.json()
        return result
