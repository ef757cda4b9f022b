"""Organisations of every kind, their members and roles, invitations and verification."""
