"""aifactory billing (see services/billing/README.md)."""
