"""configure_logging: JSON lines with service and context, routing, levels, idempotence."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest
import structlog

from aifactory.observability.logging import LoggingConfigError, configure_logging


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_line_carries_service_level_logger_timestamp_and_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A structlog event renders as one JSON line with service, level, logger, UTC time and bound contextvars."""
    configure_logging("scheduling", json=True)
    log = structlog.get_logger("aifactory.scheduling.handlers")
    with structlog.contextvars.bound_contextvars(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", tenant="acme", event_id="ev-1"
    ):
        log.info("job_placed", job_id="j-1", nodes=2)
    [line] = _json_lines(capsys.readouterr().out)
    assert line["event"] == "job_placed"
    assert line["service"] == "scheduling"
    assert line["level"] == "info"
    assert line["logger"] == "aifactory.scheduling.handlers"
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert line["tenant"] == "acme"
    assert line["event_id"] == "ev-1"
    assert line["job_id"] == "j-1"
    assert line["nodes"] == 2
    stamp = dt.datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00"))
    assert stamp.utcoffset() == dt.timedelta(0)


def test_stdlib_records_are_rendered_as_json_with_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A plain stdlib logger's record goes through the same JSON renderer, arguments interpolated."""
    configure_logging("inventory", json=True)
    logging.getLogger("some.library").warning("disk %s is %d%% full", "sda", 97)
    [line] = _json_lines(capsys.readouterr().out)
    assert line["event"] == "disk sda is 97% full"
    assert line["logger"] == "some.library"
    assert line["level"] == "warning"
    assert line["service"] == "inventory"


def test_exceptions_are_structured_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    """log.exception renders the traceback as a structured field, still one JSON line."""
    configure_logging("keys", json=True)
    log = structlog.get_logger("aifactory.keys")
    try:
        raise RuntimeError("hsm unavailable")
    except RuntimeError:
        log.exception("rotate_failed")
    [line] = _json_lines(capsys.readouterr().out)
    assert line["event"] == "rotate_failed"
    assert "hsm unavailable" in json.dumps(line["exception"])


def test_calling_twice_replaces_instead_of_duplicating(capsys: pytest.CaptureFixture[str]) -> None:
    """A second configure_logging leaves one handler, so each event is printed once, with the new service."""
    configure_logging("first", json=True)
    configure_logging("second", json=True)
    structlog.get_logger("t").info("once")
    lines = _json_lines(capsys.readouterr().out)
    assert [(line["event"], line["service"]) for line in lines] == [("once", "second")]


def test_console_format_is_not_json() -> None:
    """json=False renders a readable console line containing the event and its fields."""
    out = io.StringIO()
    configure_logging("billing", json=False, stream=out)
    structlog.get_logger("t").info("invoice_issued", tenant="acme")
    text = out.getvalue()
    assert "invoice_issued" in text
    assert "tenant=acme" in text
    assert not text.lstrip().startswith("{")


def test_format_env_forces_json_on_any_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIFACTORY_LOG_FORMAT=json selects JSON lines when json is left to auto-detection."""
    monkeypatch.setenv("AIFACTORY_LOG_FORMAT", "json")
    out = io.StringIO()
    configure_logging("health", stream=out)
    structlog.get_logger("t").info("verdict")
    assert _json_lines(out.getvalue())[0]["event"] == "verdict"


def test_level_env_overrides_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """AIFACTORY_LOG_LEVEL=WARNING drops info events even when level='DEBUG' is passed."""
    monkeypatch.setenv("AIFACTORY_LOG_LEVEL", "warning")
    out = io.StringIO()
    configure_logging("health", level="DEBUG", json=True, stream=out)
    log = structlog.get_logger("t")
    log.info("quiet")
    logging.getLogger("lib").info("quiet too")
    log.warning("loud")
    assert [line["event"] for line in _json_lines(out.getvalue())] == ["loud"]


def test_invalid_level_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown level name raises LoggingConfigError naming the environment variable."""
    monkeypatch.setenv("AIFACTORY_LOG_LEVEL", "chatty")
    with pytest.raises(LoggingConfigError, match="AIFACTORY_LOG_LEVEL"):
        configure_logging("health")


def test_faststream_default_loggers_propagate_after_configuration() -> None:
    """FastStream's own loggers lose their handlers and propagate, so their lines are ours."""
    faststream_logger = logging.getLogger("faststream")
    faststream_logger.propagate = False
    faststream_logger.addHandler(logging.StreamHandler(io.StringIO()))
    out = io.StringIO()
    configure_logging("scheduling", json=True, stream=out)
    assert faststream_logger.propagate
    logging.getLogger("faststream").info("started")
    logging.getLogger("nats.aio.client").error("nats: encountered error")
    lines = _json_lines(out.getvalue())
    assert [(line["logger"], line["service"]) for line in lines] == [
        ("faststream", "scheduling"),
        ("nats.aio.client", "scheduling"),
    ]
