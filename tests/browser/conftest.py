"""Browser tests: Debian's Chromium, driven by Playwright, against a real ``alliance serve`` with a fresh
database per module and backend. Screenshots (1366x768) go to ``test-artifacts/screenshots/<backend>/``.

Playwright's own browser download is never used (the machines have no internet): ``/usr/bin/chromium``
and a CJK font (so that Chinese pages render as text, not boxes) come from the OS package manager. When
they are missing, the first browser test installs them (``apt-get install chromium fonts-wqy-microhei``,
as root or through password-less ``sudo``), once per machine: a file lock makes the other test
processes wait for it. Without the rights to install, the tests fail saying what to install.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from alliance.db.migrate import migrate
from tests import commands
from tests.conftest import drop_pg_database, fresh_database
from tests.procs import exchange_env, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CJK_FONT_NAMES = ("wenquanyi", "noto sans cjk")
# Debian package -> what it provides; installed when the thing is missing.
PACKAGES = {"chromium": CHROMIUM, "fonts-wqy-microhei": "a CJK font"}
INSTALL_LOCK = Path(tempfile.gettempdir()) / "alliance-tests-browser-install.lock"
VIEWPORT = {"width": 1366, "height": 768}
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"
ADMIN = ("ada", "correct horse battery staple")
AUDITOR = ("li.wei", "auditor reads everything")


def _has_cjk_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    fonts = subprocess.run(["fc-list"], capture_output=True, text=True, timeout=60).stdout.lower()
    return any(name in fonts for name in CJK_FONT_NAMES)


def missing_packages() -> list[str]:
    """The Debian packages the browser tests need and this machine lacks."""
    missing = [] if Path(CHROMIUM).exists() else ["chromium"]
    return missing if _has_cjk_font() else [*missing, "fonts-wqy-microhei"]


def _installer() -> list[str] | None:
    """How to run apt-get with root rights here: directly as root, through password-less sudo, or not at all."""
    if not shutil.which("apt-get"):
        return None
    if os.geteuid() == 0:
        return ["apt-get"]
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=30).returncode == 0:
        return ["sudo", "-n", "apt-get"]
    return None


def install_browser_prerequisites() -> None:
    """Install Chromium and a CJK font when missing; under a file lock, so parallel test processes install
    once. Fails the test (not the run) with the exact command when this process may not install."""
    if not missing_packages():
        return
    with INSTALL_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes; the others then find it installed
        missing = missing_packages()
        if not missing:
            return
        wanted = ", ".join(f"{PACKAGES[p]} ({p})" for p in missing)
        by_hand = f"sudo apt-get install -y {' '.join(missing)}"
        apt = _installer()
        if apt is None:
            pytest.fail(
                f"the browser tests need {wanted}, and this user cannot install them: run `{by_hand}` "
                "(or the same packages with your OS package manager), or deselect them with --ignore=tests/browser",
                pytrace=False,
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = [*apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", *missing]
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:  # a fresh machine may have no package lists yet
            subprocess.run([*apt, "update", "-qq"], env=env, capture_output=True, text=True, timeout=1800)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=1800)
        still = missing_packages()
        if done.returncode != 0 or still:
            pytest.fail(
                f"installing {wanted} failed (`{' '.join(install)}` exit {done.returncode}; still missing: {still}); "
                f"run `{by_hand}` by hand:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
                pytrace=False,
            )


@dataclass(frozen=True)
class LiveConsole:
    base: str
    backend: str
    env: dict[str, str]

    @property
    def screenshots(self) -> Path:
        return ARTIFACTS / self.backend


@pytest.fixture(scope="module")
def live(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveConsole]:
    """A migrated, empty database with an admin and an auditor (made by ``alliance user add``), served
    by ``alliance serve`` on a free port."""
    tmp = tmp_path_factory.mktemp(f"browser-{backend}")
    db = fresh_database(backend, tmp)
    migrate(db.url)
    env = exchange_env(db.url)
    try:
        for (username, password), role in ((ADMIN, "admin"), (AUDITOR, "auditor")):
            added = commands.run(
                commands.ALLIANCE, ["user", "add", username, "--role", role, "--password-stdin"], env, password + "\n"
            )
            assert added.returncode == 0, added.stderr
        with running_server(["serve"], env, tmp / "server.log") as base:
            live = LiveConsole(base=base, backend=backend, env=env)
            live.screenshots.mkdir(parents=True, exist_ok=True)
            yield live
    finally:
        if backend == "postgresql":
            drop_pg_database(db.url)


@pytest.fixture(scope="module")
def browser(live: LiveConsole) -> Iterator[Browser]:
    """Chromium for a module's tests; every test gets a fresh context of its own (see ``tab``).

    While it runs, Playwright's sync API keeps its event loop running on this thread, where
    ``asyncio.run`` then refuses to work: so it starts after the live server (and the modules' seeding,
    which depends on ``live`` too), and it is not kept for the session (the async tests would fail)."""
    install_browser_prerequisites()
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
