"""Billing contracts: rate cards, accounts, the usage ledger and invoices (``billing`` domain)."""
