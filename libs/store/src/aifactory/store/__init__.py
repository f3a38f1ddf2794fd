"""aifactory.store."""
