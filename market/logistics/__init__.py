"""Logistics estimates: distance, cost by storage class and weight band, transit time, freshness."""
