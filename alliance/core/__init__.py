"""Shared plumbing used by every domain: settings, database sessions, problems, auth, audit."""
