"""Reading the audit log (writing it is shared plumbing in ``alliance.core.audit``)."""
