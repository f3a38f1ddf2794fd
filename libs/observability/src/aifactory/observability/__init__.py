"""aifactory.observability."""
