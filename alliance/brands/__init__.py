"""Brands (alliance members), their API keys and suspension."""
