"""aifactory.schema."""
