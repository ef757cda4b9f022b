"""Households: the poor-household registry kept by authorities, and cooperatives' members."""
