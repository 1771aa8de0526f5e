"""Webhooks: brands register HTTPS endpoints; redemption, reversal and conversion events reach them
through an outbox written in the event's own transaction, signed with HMAC-SHA256, retried with
exponential backoff by a delivery worker that runs in the app's lifespan."""
