"""Sourcing: lots, the append-only hash-chained ledger of what each household supplied, and
the poor-household share computed from it."""
