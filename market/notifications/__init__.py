"""Notifications: a persisted feed per organisation, and e-mails rendered into an outbox."""
