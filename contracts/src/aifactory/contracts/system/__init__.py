"""System contracts: what every running service says about itself (readiness, metrics)."""
