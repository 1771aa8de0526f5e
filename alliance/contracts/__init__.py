"""Contracts between brands (service side): signing keys, proposed and signed versions, terms in force.

The pure rules live in the top-level ``contracts`` library; this package stores, verifies and serves them.
"""
