"""aifactory.cli."""
