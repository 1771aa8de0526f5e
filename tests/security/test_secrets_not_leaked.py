"""No secret the exchange creates or receives ends up in a log line, a problem body, the audit table or
the OpenAPI document.

A real server (``alliance serve`` at DEBUG, JSON and text log formats) is driven through brand and
operator key creation, issue and rotation, a console password set and a login with the right and a
wrong password, a brand signing key upload, coupon issue, a referral token, and a monthly close signed
with the exchange's statement key from a key file; in-process, the partner agent's key store generates
its keys under a passphrase with DEBUG logging in the same format. Then every captured text is searched
for every secret, raw and in its hex and base64 forms.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.logs import configure_logging
from alliance.partner.keystore import AgentStore
from tests.alliance.benefits.support import benefit_body, make_contract
from tests.alliance.console.console_helpers import add_user, csrf_token
from tests.conftest import Database
from tests.helpers import BrandHandle, bearer, make_admin_key
from tests.procs import free_port, running_server

PROBLEM = "application/problem+json"


def forms(secret: str | bytes) -> set[str]:
    """A secret as it could leak: itself, and the hex and base64 spellings of its bytes."""
    raw = secret.encode() if isinstance(secret, str) else secret
    found = {raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    if isinstance(secret, str):
        found.add(secret)
    return {f for f in found if len(f) >= 8}


def _server_run(base: str, admin: str, brand: BrandHandle, partner: BrandHandle) -> tuple[set[str], list[str]]:
    """Everything a real deployment does with secrets; returns the secrets and the problem bodies seen."""
    secrets: set[str] = set()
    problems: list[str] = []

    def seen(response: httpx.Response) -> httpx.Response:
        if response.headers.get("content-type", "").startswith(PROBLEM):
            problems.append(response.text)
        return response

    with httpx.Client(base_url=base, timeout=30) as http:
        # Keys: a brand made by an operator, keys issued, rotated, issued by an operator, revoked.
        made = seen(http.post("/admin/v1/brands", json={"name": "Secret Brand"}, headers=bearer(admin))).json()
        new_key = made["api_key"]["secret"] if "api_key" in made else made["key"]["secret"]
        secrets.add(new_key)
        issued = seen(http.post("/v1/api-keys", json={"label": "second"}, headers=brand.headers)).json()
        secrets.add(issued["secret"])
        rotated = seen(http.post(f"/v1/api-keys/{issued['key']['id']}/rotation", headers=brand.headers)).json()
        secrets.add(rotated["secret"])
        by_operator = seen(
            http.post(f"/admin/v1/brands/{brand.id}/api-keys", json={"label": "ops"}, headers=bearer(admin))
        ).json()
        secrets.add(by_operator["secret"])
        seen(http.delete(f"/v1/api-keys/{by_operator['key']['id']}", headers=brand.headers))
        # Wrong and revoked keys are answered with problems, which must not echo the key.
        for wrong in (rotated["secret"][:-4] + "AAAA", issued["secret"]):
            assert seen(http.get("/v1/me", headers=bearer(wrong))).status_code == 401
            secrets.add(wrong)
        # A signing key: the public half goes up; the private half must never appear anywhere.
        signing = Ed25519PrivateKey.generate()
        public = base64.b64encode(signing.public_key().public_bytes_raw()).decode()
        seen(http.put("/v1/signing-key", json={"public_key": public}, headers=brand.headers))
        secrets.add(signing.private_bytes_raw().hex())
        # Coupons: codes are bearer secrets; a referral token too.
        benefit = seen(http.post("/v1/benefits", json=benefit_body([partner.id]), headers=brand.headers)).json()
        coupons = seen(
            http.post(f"/v1/benefits/{benefit['id']}/coupons", json={"count": 3}, headers=partner.headers)
        ).json()
        codes = [c["code"] for c in coupons["coupons"]]
        secrets.update(codes)
        redeemed = http.post(
            "/v1/redemptions",
            json={"code": codes[0], "order_reference": "sec-1", "order_amount": 10_000, "channel": "store"},
            headers={**brand.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert seen(redeemed).status_code == 201, redeemed.text
        wrong_code = http.post(
            "/v1/redemptions",
            json={"code": codes[1][:-2] + "ZZ", "order_reference": "sec-2", "order_amount": 10_000, "channel": "store"},
            headers={**brand.headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert seen(wrong_code).status_code >= 400
        referral = seen(http.post("/v1/referrals", json={"receiver_brand_id": partner.id}, headers=brand.headers))
        secrets.add(referral.json()["token"])
        # A monthly close signs statements with the exchange key from its key file.
        month = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        closed = seen(http.post(f"/admin/v1/settlements/{month}/close", headers=bearer(admin)))
        assert closed.status_code == 200, closed.text
        problems.append(seen(http.get("/v1/me", headers={"Authorization": f"Bearer {admin}"})).text)
    return secrets, problems


def _console_run(base: str, username: str, password: str) -> list[str]:
    """Sign in with a wrong and then the right password; returns the pages' bodies (which must not echo it)."""
    bodies = []
    with httpx.Client(base_url=base, timeout=30) as web:
        for attempt in (password + "-wrong", password):
            token = csrf_token(web.get("/console/login").text)
            response = web.post(
                "/console/login",
                data={"_csrf_token": token, "username": username, "password": attempt, "next": "/console/"},
            )
            bodies.append(response.text)
        assert response.status_code == 303, response.text
    return bodies


async def _audit_rows(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session:
        rows = (await session.execute(text("SELECT * FROM audit_log"))).all()
    assert rows, "the run must have written audit entries"
    return "\n".join(repr(tuple(row)) for row in rows)


def _agent_keygen(home: Path, fmt: str) -> tuple[set[str], str]:
    """The partner agent's key store, in process, with DEBUG logs in ``fmt`` captured."""
    passphrase = "agent passphrase " + uuid.uuid4().hex
    configure_logging(fmt, "DEBUG")
    captured = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(root.handlers[0].formatter)
    for log_filter in root.handlers[0].filters:
        handler.addFilter(log_filter)
    root.addHandler(handler)
    try:
        store = AgentStore(home, passphrase)
        store.keygen("2026-11", scrypt_n=2**10)
        reopened = AgentStore(home, passphrase)
        reopened.signing_key()
        reopened.psi_key("2026-11")
        with pytest.raises(Exception) as refused:  # whatever a wrong passphrase raises
            AgentStore(home, passphrase + "x").signing_key()
        logging.getLogger("alliance.partner").debug("refused: %s", refused.value)
    finally:
        root.removeHandler(handler)
        configure_logging("text", "WARNING")
    return {passphrase, passphrase + "x"}, captured.getvalue()


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_secret_in_logs_problems_audit_or_schema(
    database: Database,
    sessions: async_sessionmaker[AsyncSession],
    brand_a: BrandHandle,
    brand_b: BrandHandle,
    tmp_path: Path,
    log_format: str,
) -> None:
    admin = (await make_admin_key(sessions))["Authorization"].removeprefix("Bearer ")
    await make_contract(sessions, brand_a, brand_b)
    password = "console password " + uuid.uuid4().hex
    await add_user(sessions, "ops-secret", password, "admin")
    key_file = tmp_path / "exchange-signing.key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update(
        {
            "ALLIANCE_DATABASE_URL": database.url,
            "ALLIANCE_AUTO_MIGRATE": "false",
            "ALLIANCE_LOG_LEVEL": "DEBUG",
            "ALLIANCE_LOG_FORMAT": log_format,
            "ALLIANCE_EXCHANGE_SIGNING_KEY_FILE": str(key_file),
        }
    )
    log_path = tmp_path / "server.log"
    with running_server(["serve", "--port", str(free_port())], env, log_path) as base:
        secrets, problems = _server_run(base, admin, brand_a, brand_b)
        pages = _console_run(base, "ops-secret", password)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            openapi = (await http.get("/schema/openapi.json")).text
    agent_secrets, agent_log = _agent_keygen(tmp_path / "agent", log_format)
    server_log = log_path.read_text()
    assert "/console/login" in server_log and "/v1/api-keys" in server_log

    exchange_key = bytes.fromhex(key_file.read_text().strip())
    everything = {*secrets, *agent_secrets, admin, brand_a.key, brand_b.key, password, password + "-wrong"}
    leak_forms = {form for secret in everything for form in forms(secret)} | forms(exchange_key)
    audit = await _audit_rows(sessions)
    places = {
        "server log": server_log,
        "agent log": agent_log,
        "problem bodies": "\n".join(problems),
        "console pages": "\n".join(pages),
        "audit table": audit,
        "OpenAPI document": openapi,
    }
    assert problems, "the run must have seen problem responses"
    leaks = sorted((where, form[:12] + "...") for where, body in places.items() for form in leak_forms if form in body)
    assert not leaks, f"secrets leaked: {leaks}"
    # Key prefixes are public identifiers; a full key shape must never appear in the logs.
    assert not re.search(r"bax_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", server_log + agent_log)
