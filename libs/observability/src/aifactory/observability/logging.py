"""Process-wide logging: structlog over the standard library, one line per event.

``configure_logging(service)`` is called once, at a process's composition root. It
sends structlog events and every stdlib logger (the root logger, FastStream's
``faststream`` and ``faststream.access.nats``, nats-py's ``nats``) through one
handler whose formatter renders JSON lines when the output is not a terminal and a
readable, coloured console format when it is. Every line carries ``service``, an
ISO 8601 UTC ``timestamp``, ``level`` and ``logger``, plus whatever the bus kit bound
with ``structlog.contextvars`` (``trace_id``, ``tenant``, ``event_id``), and secret-
looking fields are blanked (see ``redaction``). Calling it again replaces the
previous configuration instead of stacking handlers.

FastStream configures its own loggers lazily (when a broker starts) with
``propagate=False`` and a colour handler of its own, unless a handler that writes to
``sys.stdout`` is already there. Those loggers therefore get a small relay handler
that satisfies that check and forwards records to the root handler whenever
FastStream has turned propagation off, so they are routed here either way.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

from aifactory.observability.redaction import redact_secrets

LOG_LEVEL_ENV = "AIFACTORY_LOG_LEVEL"
LOG_FORMAT_ENV = "AIFACTORY_LOG_FORMAT"
ROUTED_LOGGERS = ("faststream", "faststream.access", "faststream.access.nats", "nats")
"""Third-party loggers that are reset to propagate to the root logger."""

_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_OURS = "_aifactory_observability"


class LoggingConfigError(ValueError):
    """A logging setting (level or format) has an invalid value."""


class _StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stdout`` is when a record is emitted.

    Redirections made after configuration (test capture, a daemon re-pointing stdout)
    are honoured instead of writing to a stream that may be closed by then.
    """

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, value: TextIO) -> None:
        """Ignored: the stream is always the current ``sys.stdout``."""


class _PropagationRelay(_StdoutHandler):
    """Forwards a logger's records to the root handlers when it does not propagate.

    Attached to a third-party logger; while that logger propagates it does nothing
    (the root logger's handler already sees the record). It never writes itself.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        if self._logger.propagate:
            return
        for handler in logging.getLogger().handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


def _resolve_level(level: str) -> int:
    name = (os.environ.get(LOG_LEVEL_ENV) or level).strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in _LEVELS:
        raise LoggingConfigError(
            f"log level must be one of {', '.join(_LEVELS)} "
            f"(from {LOG_LEVEL_ENV} or the level argument), got {name!r}"
        )
    return int(logging.getLevelName(name))


def _resolve_json(json: bool | None, stream: TextIO) -> bool:
    if json is not None:
        return json
    chosen = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if chosen in ("json", "console"):
        return chosen == "json"
    if chosen:
        raise LoggingConfigError(f"{LOG_FORMAT_ENV} must be 'json' or 'console', got {chosen!r}")
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def _service_adder(service: str) -> Processor:
    def add_service(
        logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["service"] = service
        return event_dict

    return add_service


def _shared_processors() -> list[Processor]:
    """Run for structlog events and (as the foreign pre-chain) for stdlib records."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(json: bool, stream: TextIO) -> list[Processor]:
    if json:
        return [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
    isatty = getattr(stream, "isatty", None)
    colours = callable(isatty) and bool(isatty())
    return [structlog.dev.ConsoleRenderer(colors=colours)]


def _remove_ours(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        if getattr(handler, _OURS, False):
            logger.removeHandler(handler)
            handler.close()


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    json: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging through one handler for ``service``.

    ``level`` is overridden by ``AIFACTORY_LOG_LEVEL`` when that is set. ``json=None``
    picks JSON lines unless the output is a terminal (``AIFACTORY_LOG_FORMAT=json`` or
    ``console`` forces one). ``stream`` defaults to the current ``sys.stdout``.
    Idempotent: a second call replaces the first configuration.
    """
    numeric_level = _resolve_level(level)
    handler: logging.StreamHandler[TextIO] = (
        _StdoutHandler() if stream is None else logging.StreamHandler(stream)
    )
    handler.setLevel(numeric_level)
    render_json = _resolve_json(json, stream or sys.stdout)
    shared = _shared_processors()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _service_adder(service),
                redact_secrets,
                *_renderer(render_json, stream or sys.stdout),
            ],
        )
    )
    setattr(handler, _OURS, True)

    root = logging.getLogger()
    _remove_ours(root)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        for existing in list(routed.handlers):
            routed.removeHandler(existing)
        routed.propagate = True
        routed.setLevel(logging.NOTSET)
        relay = _PropagationRelay(routed)
        setattr(relay, _OURS, True)
        routed.addHandler(relay)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
