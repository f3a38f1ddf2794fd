"""aifactory health (see services/health/README.md)."""
