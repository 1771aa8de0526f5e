"""Match jobs (private set intersection between two brands' published segments) and agent tasks."""
