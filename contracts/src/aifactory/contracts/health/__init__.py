"""Health contracts: the verdicts the health service publishes about nodes."""
