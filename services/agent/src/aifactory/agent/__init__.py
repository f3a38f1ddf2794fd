"""aifactory agent (see services/agent/README.md)."""
