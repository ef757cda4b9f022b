"""Listings: offers to sell from a lot, their lifecycle, and the stock ledger."""
