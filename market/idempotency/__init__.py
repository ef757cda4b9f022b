"""Idempotency keys: a retried POST has the effect of one request."""
