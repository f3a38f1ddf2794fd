"""aifactory inventory service (see services/inventory/README.md)."""
