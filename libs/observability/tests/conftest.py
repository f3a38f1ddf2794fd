"""Fixtures for the observability tests: leave process-wide logging as it was found."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from aifactory.observability.logging import ROUTED_LOGGERS


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Snapshot stdlib and structlog configuration and restore it after the test."""
    names = ["", *ROUTED_LOGGERS]
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in names
    }
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        structlog.configure(**structlog_config)
