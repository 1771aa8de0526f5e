"""Shared fixtures: every database-backed test runs once per selected backend (SQLite, PostgreSQL).

``--db sqlite,postgresql`` (the default) selects both. PostgreSQL is reached through
``ALLIANCE_TEST_POSTGRES_URL`` (default: the local server with trust auth); each run creates a throwaway
database and drops it at the end. A selected backend that cannot be reached is an error, not a skip.

Cheap per test, real throughout: per backend, one migrated database and one app for the whole run (each
test starts from emptied tables and runs the app's lifespan through its own test client); ``live_server``
is a real ``alliance serve`` shared by a module's tests; the command lines run in-process
(``tests/commands.py``). pytest-xdist runs it all on every core: each worker has its own databases, and a
test file runs on one worker per backend (``pytest_xdist_make_scheduler``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, close_all_sessions

from alliance.app import create_app
from alliance.core.settings import Settings
from alliance.db.base import Base
from alliance.db.migrate import migrate
from alliance.db.session import create_engine, create_session_factory
from tests.helpers import BrandHandle, make_admin_key, make_brand
from tests.procs import exchange_env, running_server

BACKENDS = ("sqlite", "postgresql")
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        default=os.environ.get("ALLIANCE_TEST_DB", "sqlite,postgresql"),
        help="comma-separated backends to run database tests on: sqlite, postgresql",
    )


def selected_backends(config: pytest.Config) -> list[str]:
    chosen = [b.strip() for b in str(config.getoption("--db")).split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown:
        raise pytest.UsageError(f"--db: unknown backend(s) {sorted(unknown)}; choose from {BACKENDS}")
    return chosen


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        backends = selected_backends(metafunc.config)
        metafunc.parametrize(
            "backend",
            [pytest.param(b, marks=getattr(pytest.mark, b)) for b in backends],
            scope="session",
        )


# Test files that take tens of seconds (a demo build, a load under faults, a browser, two agents): run
# first, in this order, so that under pytest-xdist they do not start last and leave one worker busy
# while the other idles (longest first). Everything else keeps pytest's order.
SLOW_FIRST = (
    "tests/demo/",
    "tests/faults/",
    "tests/browser/",
    "tests/e2e/",
    "tests/fuzz/",
    "tests/docs/",
    "tests/security/",
    "tests/alliance/benefits/test_concurrency.py",
    "tests/alliance/settlement/test_killed_close.py",
)


def _slow_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    return next((rank for rank, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile`` (the default: see pyproject.toml), one step finer: a unit of work is a test
    file on one backend. The tests of a file that share a module-scoped fixture (a live server, a seeded
    database, a browser) then run on one worker, in order - the fixture is built once, not once per
    worker, and a module's later tests may build on its earlier ones (the browser tests do) - while the
    SQLite and PostgreSQL halves of a file still run in parallel. (xdist's ``loadgroup`` marks would do,
    but pytest 9.2 no longer lets xdist rename the tests it groups.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FileAndBackendScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path, _, test = nodeid.partition("::")
            params = test[test.find("[") :] if "[" in test else ""
            return f"{path}|{next((b for b in BACKENDS if b in params), '-')}"

    return FileAndBackendScheduling(config, log)


@pytest.hookimpl(wrapper=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_slow_first(items: list[pytest.Item]) -> Iterator[None]:
    """The slow files first (after pytest has ordered the tests by backend); xdist keeps this order of
    the units of work (``--no-loadscope-reorder``)."""
    yield
    items.sort(key=_slow_rank)  # stable: within a rank, the order so far stays


def pg_admin_url() -> str:
    return os.environ.get("ALLIANCE_TEST_POSTGRES_URL", DEFAULT_PG)


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_admin_url(), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    name = f"bax_test_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is selected for the tests but cannot be reached at {pg_admin_url()!r} ({exc}). "
            "Start it, set ALLIANCE_TEST_POSTGRES_URL, or run with --db sqlite."
        ) from exc
    base = pg_admin_url().rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


_DROP = """
import asyncio, sys
import asyncpg

async def drop(admin_url, name):
    conn = await asyncpg.connect(admin_url, timeout=30)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()

asyncio.run(drop(sys.argv[1], sys.argv[2]))
"""


_dropping: list[subprocess.Popen[bytes]] = []  # (referenced, so that no "still running" warning is raised)


def drop_pg_database(url: str) -> None:
    """Drop a test database, without waiting: ``DROP DATABASE`` waits for an immediate checkpoint of the
    whole server (seconds on a busy one), so a detached process of its own does it while the tests go on
    (and after the run ends). Its connections are cut at once (``WITH (FORCE)``)."""
    name = url.rsplit("/", 1)[1]
    _dropping[:] = [process for process in _dropping if process.poll() is None]  # reaps the finished ones
    _dropping.append(
        subprocess.Popen(
            [sys.executable, "-c", _DROP, pg_admin_url(), name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives the test run, and a Ctrl-C of it
        )
    )


@dataclass(frozen=True)
class Database:
    backend: str
    url: str


def fresh_database(backend: str, tmp_dir: Path) -> Database:
    if backend == "sqlite":
        path = tmp_dir / f"alliance-{secrets.token_hex(4)}.db"
        return Database("sqlite", f"sqlite+aiosqlite:///{path}")
    return Database("postgresql", create_pg_database())


@pytest.fixture(scope="session")
def _per_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Database, BuiltApp]]]:
    """The database and app of each backend, made on first use and kept for the whole run.

    ``database`` and ``built_app`` are session-scoped but depend on the parametrised ``backend``, and
    pytest tears such a fixture down whenever the next test has the other backend - which happens often
    under pytest-xdist, where a worker gets tests in no particular backend order. Kept here, a switch
    costs nothing."""
    made: dict[str, tuple[Database, BuiltApp]] = {}
    yield made
    for db, _ in made.values():
        if db.backend == "postgresql":
            drop_pg_database(db.url)


def _backend_setup(
    backend: str, made: dict[str, tuple[Database, BuiltApp]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Database, BuiltApp]:
    if backend not in made:
        db = fresh_database(backend, tmp_path_factory.mktemp(backend))
        migrate(db.url)
        made[backend] = (db, _build_app(db))
    return made[backend]


@pytest.fixture(scope="session")
def database(
    backend: str, _per_backend: dict[str, tuple[Database, BuiltApp]], tmp_path_factory: pytest.TempPathFactory
) -> Database:
    """One migrated database per backend for the whole run; tests get it emptied (see ``sessions``)."""
    return _backend_setup(backend, _per_backend, tmp_path_factory)[0]


async def _empty_tables(factory: async_sessionmaker[AsyncSession]) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    for attempt in range(5):
        async with factory() as session:
            try:
                if session.bind.dialect.name == "postgresql":
                    await _empty_pg_tables(session, tables)
                else:
                    for table in tables:
                        await session.execute(text(f"DELETE FROM {table}"))
                await session.commit()
                return
            except DBAPIError as exc:
                # A live server shared by a module's tests may be sealing the ledger meanwhile: PostgreSQL
                # then breaks the deadlock by aborting one of the two; if it is this one, go again.
                sqlite_locked = "database is locked" in str(exc.orig)
                if not (getattr(exc.orig, "sqlstate", None) == "40P01" or sqlite_locked) or attempt == 4:
                    raise
                if sqlite_locked:
                    # An earlier test left a write transaction on a connection nothing refers to any more
                    # (its event loop is gone): collecting it closes the connection and rolls back.
                    await session.rollback()
                    gc.collect()


async def _empty_pg_tables(session: AsyncSession, tables: list[str]) -> None:
    """DELETE, not TRUNCATE: a TRUNCATE of some forty tables replaces their files and takes most of a
    second on a busy server, for every test; deleting the few rows a test made takes milliseconds. The
    ledger's append-only triggers and the foreign-key checks (moot when every row goes) are off for this
    transaction only (``session_replication_role``, which needs a superuser: else TRUNCATE, as before).
    The sequences start again at 1, as with ``TRUNCATE ... RESTART IDENTITY``."""
    try:
        async with session.begin_nested():
            await session.execute(text("SET LOCAL session_replication_role = replica"))
    except DBAPIError:
        await session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        return
    probe = " UNION ALL ".join(f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM {table})" for table in tables)
    for table in (await session.scalars(text(probe))).all():
        await session.execute(text(f"DELETE FROM {table}"))
    sequences = await session.scalars(
        text("SELECT sequence_name FROM information_schema.sequences WHERE sequence_schema = current_schema()")
    )
    for sequence in sequences.all():
        await session.execute(text("SELECT setval(:sequence, 1, false)"), {"sequence": sequence})


@dataclass(frozen=True)
class BuiltApp:
    """The app under test, built once per backend, and its state as built (restored before each test)."""

    app: Litestar
    initial_state: dict[str, object]


def _build_app(database: Database) -> BuiltApp:
    """Building the app (routes, OpenAPI, console) costs about half a second, so it is done once per backend.
    Each test still runs the app's lifespan afresh (engine, workers) through its own test client.

    The heap is not frozen: ``gc.freeze`` after every test client's start would pile the objects of every
    earlier test into the permanent generation (``tests/alliance/spine/test_heap.py`` tests the freeze).
    """
    settings = Settings(database_url=database.url, auto_migrate=False, freeze_heap=False)
    app = create_app(settings, configure_logs=False)
    return BuiltApp(app=app, initial_state=app.state.dict())


@pytest.fixture(scope="session")
def built_app(
    backend: str, _per_backend: dict[str, tuple[Database, BuiltApp]], tmp_path_factory: pytest.TempPathFactory
) -> BuiltApp:
    return _backend_setup(backend, _per_backend, tmp_path_factory)[1]


@pytest.fixture
def settings(built_app: BuiltApp) -> Settings:
    app_settings: Settings = built_app.app.state.settings
    return app_settings


# Kept in ``app.state`` from test to test: the console's CSRF secret, which each route's CSRF middleware
# reads once and keeps for the app's life (as a server process does), so every route must agree on it.
APP_LIFETIME_STATE = ("console_csrf_secret",)


@pytest.fixture
def app(built_app: BuiltApp) -> Litestar:
    """The backend's app with the state it was built with: whatever an earlier test left in ``app.state``
    (a console verification job, say) is dropped."""
    state = built_app.app.state
    kept = {key: state[key] for key in APP_LIFETIME_STATE if key in state}
    state.clear()
    state.update({**built_app.initial_state, **kept})
    return built_app.app


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test's database, emptied first, for setting up and reading back state.

    The app under test has its own engine: the test client runs the app on another event loop, and a
    pooled connection must never cross loops.
    """
    engine = create_engine(settings.database_url)
    factory = create_session_factory(engine)
    await _empty_tables(factory)
    yield factory
    await close_all_sessions()  # a session the test left open must not keep a SQLite write lock
    await engine.dispose()


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as db_session:
        yield db_session


@pytest.fixture
async def client(app: Litestar, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


@dataclass(frozen=True)
class LiveServer:
    """A real ``alliance serve`` on the test database: its base URL, log file and environment."""

    base: str
    log_path: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def live_server(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``alliance serve`` on the test database, shared by the tests of a module (each test still starts
    from empty tables: request ``sessions``). It runs as in production, its webhook worker and ledger
    sealer included, so it is stopped when the module is done rather than left running under others."""
    log_path = tmp_path_factory.mktemp("live-server") / "server.log"
    env = exchange_env(database.url, auto_migrate="false")
    with running_server(["serve"], env, log_path) as base:
        yield LiveServer(base=base, log_path=log_path, env=env)


@pytest.fixture
async def brand_a(sessions: async_sessionmaker[AsyncSession]) -> BrandHandle:
    return await make_brand(sessions, "Cotton Home 棉家", "home")


@pytest.fixture
async def brand_b(sessions: async_sessionmaker[AsyncSession]) -> BrandHandle:
    return await make_brand(sessions, "Fresh Fruit 鲜果", "fruit")


@pytest.fixture
async def admin_headers(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    return await make_admin_key(sessions)
