"""Console users, passwords, sessions and login throttling. No HTTP objects here: the console's routes
and the ``alliance user`` command both call these functions.

- Passwords are hashed with Argon2id (argon2-cffi; 46 MiB, 1 pass, 1 lane - OWASP's recommended
  minimum), verified off the event loop, and re-hashed on login when the parameters change.
- A session is a 256-bit random token in an HttpOnly cookie; only its SHA-256 is stored, so the table
  cannot be replayed. Sessions end after ``console_session_idle_minutes`` without a request and in any
  case ``console_session_max_hours`` after login; logging out deletes the row.
- Login throttling: each attempt is written (and committed) *before* the password is checked, then the
  attempts of the same username and client address inside the window are counted. Concurrent guesses
  therefore see each other, and a burst is refused rather than let through. A success clears the pair.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alliance.core.audit import AuditContext, record_audit
from alliance.core.ids import new_id
from alliance.core.problems import Problem
from alliance.core.settings import Settings
from alliance.db.base import utcnow
from alliance.db.models import ConsoleLoginAttempt, ConsoleSecret, ConsoleSession, ConsoleUser

__all__ = [
    "ROLES",
    "ConsoleIdentity",
    "LoginRefused",
    "LoginThrottled",
    "SignedIn",
    "console_secret",
    "create_user",
    "end_session",
    "list_users",
    "resolve_session",
    "sign_in",
    "validate_password",
    "validate_username",
]

Role = Literal["admin", "auditor"]
ROLES: tuple[Role, ...] = ("admin", "auditor")
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,63}$")
_LAST_SEEN_RESOLUTION = timedelta(minutes=1)
# Argon2id with OWASP's first recommended setting (46 MiB, one pass, one lane): memory-hard, and about
# 60 ms a login on the reference machine, so a burst of logins cannot starve a two-core exchange.
_hasher = PasswordHasher(time_cost=1, memory_cost=47_104, parallelism=1, type=Type.ID)
# Verified against when the username is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class ConsoleIdentity:
    """The signed-in console user of a request."""

    user_id: str
    username: str
    role: str
    session_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How audit rows name this user."""
        return f"console:{self.username}"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A successful login: ``token`` goes into the session cookie and nowhere else."""

    token: str
    identity: ConsoleIdentity


class LoginRefused(Exception):
    """Wrong username or password (deliberately not saying which)."""


class LoginThrottled(Exception):
    """Too many recent failures for this username from this address."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after_seconds = retry_after_seconds


def validate_username(username: str) -> str:
    """Usernames are case-insensitive (stored lower-case): 2-64 of ``a-z 0-9 . _ @ -``."""
    name = username.strip().lower()
    if not _USERNAME.match(name):
        raise Problem(422, "invalid-username", "a username is 2-64 characters: letters, digits, '.', '_', '@', '-'")
    return name


def validate_password(password: str) -> str:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Problem(
            422,
            "weak-password",
            f"a password has {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        )
    return password


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def create_user(session: AsyncSession, ctx: AuditContext, username: str, password: str, role: str) -> ConsoleUser:
    """Add a console user. Usernames are unique; the password is hashed with Argon2id before it is stored."""
    name = validate_username(username)
    validate_password(password)
    if role not in ROLES:
        raise Problem(422, "invalid-role", f"the role is one of {', '.join(ROLES)}")
    if await session.scalar(select(ConsoleUser.id).where(ConsoleUser.username == name)) is not None:
        raise Problem(409, "user-exists", f"a console user named {name!r} already exists")
    password_hash = await asyncio.to_thread(_hasher.hash, password)
    user = ConsoleUser(id=new_id("usr"), username=name, role=role, password_hash=password_hash, created_at=utcnow())
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:  # a concurrent creation of the same name won the race
        raise Problem(409, "user-exists", f"a console user named {name!r} already exists") from None
    record_audit(session, ctx, "console_user.create", target=user.id, details={"username": name, "role": role})
    return user


async def list_users(session: AsyncSession) -> Sequence[ConsoleUser]:
    return (await session.scalars(select(ConsoleUser).order_by(ConsoleUser.username))).all()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def sign_in(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    ctx: AuditContext,
    username: str,
    password: str,
    source_ip: str,
) -> SignedIn:
    """Check a username and password and open a session.

    Raises :class:`LoginThrottled` when the pair (username, client address) has used up its failures
    for the window - whether or not the password is right - and :class:`LoginRefused` otherwise on a
    wrong username or password. ``ctx`` names the client for the audit rows; the actor is the user.
    """
    name = username.strip().lower()[:64]
    now = utcnow()
    window = timedelta(minutes=settings.console_login_window_minutes)
    async with sessions() as db, db.begin():
        await db.execute(delete(ConsoleLoginAttempt).where(ConsoleLoginAttempt.at < now - window))
        attempt = ConsoleLoginAttempt(username=name, source_ip=source_ip, at=now)
        db.add(attempt)
    async with sessions() as db, db.begin():
        recent = (
            await db.execute(
                select(func.count(), func.min(ConsoleLoginAttempt.at)).where(
                    ConsoleLoginAttempt.username == name,
                    ConsoleLoginAttempt.source_ip == source_ip,
                    ConsoleLoginAttempt.at >= now - window,
                )
            )
        ).one()
        throttled = int(recent[0]) > settings.console_login_max_failures
        if throttled:
            # This attempt is refused unchecked; it does not count as another failure.
            await db.execute(delete(ConsoleLoginAttempt).where(ConsoleLoginAttempt.id == attempt.id))
    if throttled:
        oldest: datetime = recent[1] or now
        raise LoginThrottled(max(1, int((oldest + window - now).total_seconds()) + 1))

    signed_in: SignedIn | None = None
    async with sessions() as db, db.begin():
        user = await db.scalar(select(ConsoleUser).where(ConsoleUser.username == name))
        ok = await asyncio.to_thread(_verify, user.password_hash if user else _DUMMY_HASH, password)
        if user is None or not ok:
            record_audit(
                db,
                ctx,
                "console.login_failed",
                target=user.id if user else None,
                # An unknown "username" is often a password typed into the wrong field: never record it.
                details={"username": name} if user else {"username": None},
            )
        else:
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = await asyncio.to_thread(_hasher.hash, password)
            await db.execute(
                delete(ConsoleLoginAttempt).where(
                    ConsoleLoginAttempt.username == name, ConsoleLoginAttempt.source_ip == source_ip
                )
            )
            await db.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
            token = secrets.token_urlsafe(32)
            row = ConsoleSession(
                id=_digest(token),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=settings.console_session_max_hours),
                source_ip=source_ip[:64],
            )
            db.add(row)
            user.last_login_at = now
            identity = ConsoleIdentity(user_id=user.id, username=user.username, role=user.role, session_id=row.id)
            record_audit(db, _as(ctx, identity), "console.login", target=user.id)
            signed_in = SignedIn(token=token, identity=identity)
    if signed_in is None:
        raise LoginRefused()
    return signed_in


def _as(ctx: AuditContext, identity: ConsoleIdentity) -> AuditContext:
    return AuditContext(actor=identity.actor, source_ip=ctx.source_ip, request_id=ctx.request_id)


async def resolve_session(session: AsyncSession, settings: Settings, token: str) -> ConsoleIdentity | None:
    """The identity behind a session cookie, or ``None`` if the session is unknown, idle too long or
    past its maximum age (an expired row is removed). Commits the ``last_seen_at`` refresh."""
    if not token or len(token) > 100:
        return None
    now = utcnow()
    row = (
        await session.execute(
            select(ConsoleSession, ConsoleUser)
            .join(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
            .where(ConsoleSession.id == _digest(token))
        )
    ).first()
    if row is None:
        return None
    stored, user = row
    idle = timedelta(minutes=settings.console_session_idle_minutes)
    if stored.expires_at <= now or stored.last_seen_at + idle <= now:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.id == stored.id))
        await session.commit()
        return None
    if now - stored.last_seen_at > _LAST_SEEN_RESOLUTION:
        await session.execute(update(ConsoleSession).where(ConsoleSession.id == stored.id).values(last_seen_at=now))
        await session.commit()
    return ConsoleIdentity(user_id=user.id, username=user.username, role=user.role, session_id=stored.id)


async def end_session(session: AsyncSession, ctx: AuditContext, identity: ConsoleIdentity) -> None:
    """Log out: the session row goes, so the cookie is worthless even if a copy survives."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.id == identity.session_id))
    record_audit(session, ctx, "console.logout", target=identity.user_id)


async def console_secret(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> str:
    """The key that signs CSRF tokens: ``ALLIANCE_SESSION_SECRET`` when set, else one generated once and
    kept in the database (the first worker to need it creates it; the others read the same row)."""
    if settings.session_secret:
        return settings.session_secret
    async with sessions() as db:
        value = await db.scalar(select(ConsoleSecret.value).where(ConsoleSecret.name == "csrf"))
        if value is not None:
            return value
        try:
            db.add(ConsoleSecret(name="csrf", value=secrets.token_urlsafe(48), created_at=utcnow()))
            await db.commit()
        except IntegrityError:  # another worker created it first
            await db.rollback()
        stored = await db.scalar(select(ConsoleSecret.value).where(ConsoleSecret.name == "csrf"))
        assert stored is not None
        return stored
