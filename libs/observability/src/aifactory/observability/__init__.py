"""Logs and metrics for aifactory processes.

``configure_logging(service)`` once at a composition root gives structured JSON
lines (readable console output on a terminal) for structlog and stdlib loggers
alike, with secrets redacted; ``ServiceMetrics(service)`` holds the service's
Prometheus series and ``start_metrics_server`` serves them on ``/metrics``.
"""

from aifactory.observability.logging import LoggingConfigError, configure_logging
from aifactory.observability.metrics import MetricsServer, ServiceMetrics, start_metrics_server
from aifactory.observability.redaction import REDACTED, is_secret_key, redact_secrets

__all__ = [
    "REDACTED",
    "LoggingConfigError",
    "MetricsServer",
    "ServiceMetrics",
    "configure_logging",
    "is_secret_key",
    "redact_secrets",
    "start_metrics_server",
]
