"""Money: payments, refunds, the ledger, settlement and payouts."""
