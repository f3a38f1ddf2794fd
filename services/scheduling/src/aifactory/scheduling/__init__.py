"""aifactory scheduling (see services/scheduling/README.md)."""
