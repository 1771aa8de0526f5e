"""Browser tests: Debian's Chromium, driven by Playwright, against a real ``alliance serve`` with a fresh
database per backend. Screenshots (1366x768) go to ``test-artifacts/screenshots/<backend>/``.

Playwright's own browser download is never used (the machines have no internet): ``/usr/bin/chromium``
comes from apt (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from alliance.db.migrate import migrate
from tests.conftest import drop_pg_database, fresh_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1366, "height": 768}
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"
ALLIANCE = [sys.executable, "-m", "alliance.cli"]
ADMIN = ("ada", "correct horse battery staple")
AUDITOR = ("li.wei", "auditor reads everything")


@dataclass(frozen=True)
class LiveConsole:
    base: str
    backend: str
    env: dict[str, str]

    @property
    def screenshots(self) -> Path:
        return ARTIFACTS / self.backend


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
    """A migrated, empty database with an admin and an auditor (made by ``alliance user add``), served
    by ``alliance serve`` on a free port."""
    tmp = tmp_path_factory.mktemp(f"browser-{backend}")
    db = fresh_database(backend, tmp)
    migrate(db.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_DATABASE_URL"] = db.url
    for (username, password), role in ((ADMIN, "admin"), (AUDITOR, "auditor")):
        subprocess.run(
            [*ALLIANCE, "user", "add", username, "--role", role, "--password-stdin"],
            env=env,
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    port = _free_port()
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*ALLIANCE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        live = LiveConsole(base=base, backend=backend, env=env)
        live.screenshots.mkdir(parents=True, exist_ok=True)
        yield live
    finally:
        process.terminate()
        process.wait(timeout=10)
        if backend == "postgresql":
            drop_pg_database(db.url)


@pytest.fixture(scope="module")
def browser(live: LiveConsole) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A page in a fresh browser context, recording what the browser complained about (a refused
    script or style under the content security policy shows up here)."""

    page: Page
    context: BrowserContext
    live: LiveConsole
    problems: list[str]

    def goto(self, path: str) -> None:
        response = self.page.goto(self.live.base + path)
        assert response is not None

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.live.screenshots / f"{name}.png"))

    def sign_in(self, username: str, password: str) -> None:
        self.goto("/console/login")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/console/")


@pytest.fixture
def tab(browser: Browser, live: LiveConsole) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT, locale="en-US")  # type: ignore[arg-type]
    context.set_default_timeout(10_000)
    # Name the offending code of any content-security-policy violation in the console messages.
    context.add_init_script(
        "document.addEventListener('securitypolicyviolation', e => console.error("
        "'CSP violation', e.violatedDirective, e.sourceFile, e.lineNumber, e.columnNumber, e.sample))"
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"{m.text} ({m.location.get('url')}:{m.location.get('lineNumber')})")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(str(e)))
    yield Tab(page=page, context=context, live=live, problems=problems)
    context.close()
