"""aifactory.testing."""
