"""aifactory keys service (see services/keys/README.md)."""
