"""Job contracts: submission, scheduling decisions and the job lifecycle (``jobs`` domain)."""
