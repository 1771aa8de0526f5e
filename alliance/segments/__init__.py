"""Blinded audience segments: metadata, streamed binary upload of blinded points, publication."""
