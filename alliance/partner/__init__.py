"""The partner agent: runs on a brand's own machines (SDK client + ``alliance-partner`` CLI).

It holds the brand's PSI and signing keys; neither ever leaves the brand's machine.
"""

from alliance.partner.client import PartnerClient, PartnerError

__all__ = ["PartnerClient", "PartnerError"]
