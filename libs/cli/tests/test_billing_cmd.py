"""``aifactory invoice`` and ``aifactory billing`` against a real billing service; the renderer."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client
from rich.console import Console

from aifactory.billing.app import build_service
from aifactory.billing.config import BillingSettings
from aifactory.bus.publisher import EventPublisher
from aifactory.bus.service import Service
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.cli.billing_cmd import parse_period, render_invoice
from aifactory.cli.console import CliError
from aifactory.contracts.billing.v1 import Invoice, InvoiceLine
from aifactory.contracts.jobs.v1 import JobFinished, JobPlaced, NodeAllocation
from aifactory.store.events import NewEvent

Cli = Callable[..., subprocess.CompletedProcess[str]]
START = dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)


def _invoice() -> Invoice:
    """A small issued invoice with a usage, a credit and an unpriced line."""
    line = {"model": "GB200", "priority": "standard", "site_id": "fra1",
            "unit": "accelerator_hour"}  # fmt: skip
    return Invoice(
        invoice_id="inv-acme-20261101-20261201-v1", tenant="acme", version=1, status="issued",
        period_start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        period_end=dt.datetime(2026, 12, 1, tzinfo=dt.UTC), currency="EUR",
        lines=[
            InvoiceLine(kind="usage", quantity=Decimal("8.000000"), unit_price=Decimal("4.00"),
                        amount=Decimal("32.00"), records=1, **line),  # type: ignore[arg-type]
            InvoiceLine(kind="credit", quantity=Decimal("0.500000"), unit_price=Decimal("4.00"),
                        amount=Decimal("-2.00"), records=1, reason="node failure", **line),  # type: ignore[arg-type]
            InvoiceLine(kind="unpriced", quantity=Decimal("1.000000"), amount=Decimal("0.00"),
                        records=1, reason="missing_rate", model="H100", unit="accelerator_hour"),
        ],
        subtotal=Decimal("32.00"), credits=Decimal("-2.00"), total=Decimal("30.00"),
        unpriced_records=1, issued_at=START, computed_at=START,
    )  # fmt: skip


def _render(fmt: str) -> str:
    buffer = io.StringIO()
    render_invoice(Console(file=buffer, width=200, markup=False, highlight=False), _invoice(), fmt)
    return buffer.getvalue()


def test_render_csv_has_a_row_per_line_and_the_totals() -> None:
    """CSV output: a header, one row per invoice line, then subtotal, credits and total rows."""
    rows = list(csv.reader(io.StringIO(_render("csv"))))
    assert rows[0][:4] == ["kind", "model", "priority", "site_id"]
    assert [r[0] for r in rows[1:]] == [
        "usage",
        "credit",
        "unpriced",
        "subtotal",
        "credits",
        "total",
    ]
    assert rows[1][7] == "32.00"
    assert rows[3][6] == ""  # an unpriced line has no unit price
    assert rows[-1][7:] == ["30.00", "", "EUR"]


def test_render_json_round_trips_to_the_same_invoice() -> None:
    """JSON output decodes back to the very same Invoice (money as decimal strings)."""
    text = _render("json")
    assert '"total": "30.00"' in text
    assert msgspec.json.decode(text, type=Invoice) == _invoice()


def test_render_table_shows_lines_totals_and_unpriced_note() -> None:
    """The table names the invoice and version, each line, the totals and the unpriced count."""
    text = _render("table")
    assert "inv-acme-20261101-20261201-v1 (issued v1)" in text
    assert "missing_rate" in text
    assert "total    30.00 EUR" in text
    assert "1 unpriced record(s)" in text


def test_period_parsing() -> None:
    """--period is a calendar month in UTC (December rolls over); --from/--to any range; bad input is a usage error."""
    assert parse_period("2026-12", None, None) == (
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
        dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
    )
    assert parse_period(None, "2026-11-03", "2026-11-04T12:00:00+01:00")[1] == dt.datetime(
        2026, 11, 4, 11, tzinfo=dt.UTC
    )
    for bad in (("2026-13", None, None), (None, "2026-11-04", "2026-11-03"), (None, None, None)):
        with pytest.raises(CliError) as error:
            parse_period(*bad)
        assert error.value.exit_code == 2


@pytest_asyncio.fixture
async def billing(
    bus_settings: BusSettings, tmp_path: Path, nats_client: Client, namespace: Namespace
) -> AsyncIterator[Service]:
    """A billing service (SQLite) that has metered one 2-hour, 4-accelerator GB200 job of acme."""
    service = build_service(
        BillingSettings(bus=bus_settings, database_url=f"sqlite:///{tmp_path / 'b.db'}")
    )
    await service.start()
    feed = EventPublisher(nats_client.jetstream(), source="/test", namespace=namespace)
    await feed.publish_many(
        [
            NewEvent(
                JobPlaced(job_id="j1", tenant="acme", attempt=1, model="GB200", site_id="fra1",
                          priority="standard", racks_spanned=1, domains_spanned=1, placed_at=START,
                          allocations=[NodeAllocation(node_id="n1", rack_id="r1",
                                                      accelerator_indices=[0, 1, 2, 3])]),
                tenant="acme",
            ),
            NewEvent(JobFinished(job_id="j1", tenant="acme", attempt=1,
                                 finished_at=START + dt.timedelta(hours=2)), tenant="acme"),
        ]
    )  # fmt: skip
    yield service
    await service.stop()


async def _run(cli: Cli, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, args, env)


@pytest.mark.integration
async def test_invoice_round_trip(
    billing: Service, cli: Cli, namespaced_env: dict[str, str], nats_url: str
) -> None:
    """Account and rate set by the CLI, then the metered job appears on the draft (JSON), is issued, listed and shown by id."""
    env = {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}
    account = await _run(cli, ["billing", "account", "acme", "--currency", "EUR"], env)
    assert "account acme created (EUR)" in account.stdout, account.stderr
    rate = await _run(cli, ["billing", "set-rate", "--model", "GB200", "--priority", "standard",
                            "--price", "4.00", "--currency", "EUR", "--from", "2026-10-01"], env)  # fmt: skip
    assert "4.00 EUR per accelerator-hour" in rate.stdout, rate.stderr
    draft = None
    for _ in range(100):
        result = await _run(cli, ["invoice", "--tenant", "acme", "--period", "2026-11",
                                  "--format", "json"], env)  # fmt: skip
        assert result.returncode == 0, result.stderr
        draft = json.loads(result.stdout)
        if draft["total"] == "32.00":
            break
        await asyncio.sleep(0.2)
    assert draft is not None
    assert (draft["status"], draft["total"]) == ("draft", "32.00")
    issued = await _run(cli, ["invoice", "--tenant", "acme", "--period", "2026-11", "--issue"], env)
    assert "(issued v1)" in issued.stdout
    assert "total    32.00 EUR" in issued.stdout
    listed = await _run(cli, ["billing", "invoices", "--tenant", "acme"], env)
    invoice_id = listed.stdout.split()[0]
    assert invoice_id == "inv-acme-20261101-20261201-v1"
    shown = await _run(cli, ["invoice", "--id", invoice_id, "--format", "csv"], env)
    assert shown.stdout.splitlines()[-1] == "total,,,,,,,32.00,,EUR"


@pytest.mark.integration
async def test_invoice_bad_input_is_one_clear_line(
    billing: Service, cli: Cli, namespaced_env: dict[str, str], nats_url: str
) -> None:
    """A bad period or format is a usage error (2); an unknown invoice id is refused (1) with not_found."""
    env = {**namespaced_env, "AIFACTORY_NATS_URL": nats_url}
    bad_period = await _run(cli, ["invoice", "--tenant", "acme", "--period", "2026-13"], env)
    assert bad_period.returncode == 2
    assert "--period must be YYYY-MM" in bad_period.stderr
    bad_format = await _run(cli, ["invoice", "--tenant", "acme", "--period", "2026-11",
                                  "--format", "xml"], env)  # fmt: skip
    assert bad_format.returncode == 2
    unknown = await _run(cli, ["invoice", "--id", "inv-nope-v1"], env)
    assert unknown.returncode == 1
    assert "not_found" in unknown.stderr
    assert "Traceback" not in unknown.stderr + bad_format.stderr + bad_period.stderr
