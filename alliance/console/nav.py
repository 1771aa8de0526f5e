"""The console's navigation: one entry per page group, in display order.

A domain that adds console pages appends a :class:`NavEntry` here (next to adding its page module to
``alliance.console.routes.CONSOLE_PAGES``); the header shows the entries the user's role may see and
marks the one the current page belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NAV", "NavEntry", "visible_entries"]


@dataclass(frozen=True, slots=True)
class NavEntry:
    """A link in the header. ``label`` is a message key of the i18n catalogues; ``path`` is the page
    group's root under ``/console``; ``roles`` limits who sees it (the pages still enforce it)."""

    key: str
    label: str
    path: str
    roles: tuple[str, ...] = ("admin", "auditor")


NAV: list[NavEntry] = [
    NavEntry("dashboard", "nav.dashboard", "/console/"),
    NavEntry("brands", "nav.brands", "/console/brands"),
    NavEntry("audit", "nav.audit", "/console/audit"),
    NavEntry("users", "nav.users", "/console/users", roles=("admin",)),
    NavEntry("benefits", "nav.benefits", "/console/benefits"),
    NavEntry("ledger", "nav.ledger", "/console/ledger"),
    NavEntry("settlements", "nav.settlements", "/console/settlements"),
    NavEntry("contracts", "nav.contracts", "/console/contracts"),
    NavEntry("matches", "nav.matches", "/console/matches"),
]


def visible_entries(role: str) -> list[NavEntry]:
    return [entry for entry in NAV if role in entry.roles]
