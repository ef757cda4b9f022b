"""Accounts: users, their bearer tokens, and organisations' API keys (who is calling)."""
