"""Brand Alliance Exchange: the service (HTTP API, console, ledger, settlement, CLI)."""
