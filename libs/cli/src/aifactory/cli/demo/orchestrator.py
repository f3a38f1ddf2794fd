"""``aifactory demo`` from start to invoices, in one process.

1. A fresh state directory (``--var``, default ``var/demo``: wiped at the start of a
   run, left in place afterwards for inspection; a directory that is not a demo's is
   refused) and NATS: an embedded ``nats-server`` on a free port (store under the
   state directory) unless ``--nats-url`` names one.
2. Every service, as ``aifactory up`` runs them (``services_running``): own processes,
   logs under ``<var>/logs``, a readiness wait over NATS.
3. Set-up over NATS: the generated factory (``ImportFactory``), the tenants' quotas and
   key rings, and billing's accounts and rate card.
4. Simulated node agents (child processes), then the workload, the fault schedule and
   the live view (or plain progress lines when stdout is not a terminal) until
   ``--duration`` or Ctrl-C.
5. The generator stops, running jobs finish, the factory catches up (every durable
   consumer has nothing pending), then the summary and every tenant's invoice.
6. Everything started is stopped; exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from nats.aio.client import Client
from rich.console import Console
from rich.live import Live

from aifactory.bus.embedded import EmbeddedNats, free_port
from aifactory.bus.rpc import CommandFailed, ServiceUnavailable, request
from aifactory.bus.settings import BusSettings, Namespace
from aifactory.cli.billing_cmd import render_invoice
from aifactory.cli.console import CliError
from aifactory.cli.demo.agents import agent_commands, agent_log_file, fault_agent_name
from aifactory.cli.demo.factory import SITES, DemoFactory, generate_factory
from aifactory.cli.demo.faults import FaultPlan, FaultTimeline, plan_faults, revoke_key, run_faults
from aifactory.cli.demo.observer import Observer
from aifactory.cli.demo.summary import issue_invoices, print_summary
from aifactory.cli.demo.tenants import (
    ACTOR,
    DEDICATED_TENANT,
    TENANTS,
    set_up_billing,
    set_up_tenants,
)
from aifactory.cli.demo.view import ProgressPrinter, ViewState, render
from aifactory.cli.demo.workload import Workload
from aifactory.cli.service_logs import problems_only
from aifactory.cli.up import RunningFactory, UpOptions, nats_for, services_running
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthPage
from aifactory.contracts.inventory.v1 import ImportFactory, ImportSummary

MARKER = ".aifactory-demo"
SERVICE_DEFAULTS = (
    # A node whose agent was only starved of CPU for a moment (a busy laptop running the
    # whole factory) comes back by itself; a node with a real fault stays failed.
    ("AIFACTORY_INVENTORY_AUTO_RETURN", "true"),
    ("AIFACTORY_HEALTH_MISSED_INTERVALS", "5"),
    ("AIFACTORY_HEALTH_RECOVERY_DWELL", "3"),
)
"""Settings the demo's services get unless the environment sets them."""
REPORT_IN_S = 30.0
"""How long the demo waits for every node's agent to report before the load starts."""
DRAIN_S = 5.0
CATCH_UP_S = 30.0
STREAMS = ("FACTORY_JOBS", "FACTORY_INVENTORY", "FACTORY_HEALTH", "FACTORY_KEYS")
REFRESH_S = 0.25
REPEAT_WINDOW_S = 1.0
INVOICE_WIDTH = 160


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How the demo runs (see ``aifactory demo --help``)."""

    nodes: int = 24
    tenants: int = 3
    duration_s: float = 120.0
    jobs_per_minute: float = 600.0
    var_dir: Path = Path("var/demo")
    nats_url: str | None = None
    ready_timeout_s: float = 60.0
    follow_logs: bool = False
    live: bool | None = None
    """Rich live view (True), plain progress lines (False), or by terminal (None)."""
    seed: int = 0


def fresh_state_dir(var_dir: Path) -> None:
    """Empty ``var_dir`` for a new run; refuse a non-empty directory that is not a demo's."""
    if var_dir.exists():
        if not var_dir.is_dir():
            raise CliError(f"--var {var_dir} is not a directory")
        if any(var_dir.iterdir()) and not (var_dir / MARKER).exists():
            raise CliError(
                f"--var {var_dir} holds something other than a demo's state; "
                "the demo wipes its directory at start, so choose another (e.g. var/demo)"
            )
        shutil.rmtree(var_dir)
    var_dir.mkdir(parents=True)
    (var_dir / MARKER).write_text("state of `aifactory demo`; wiped at the start of each run\n")


def demo_settings(base: BusSettings, nats_url: str | None) -> BusSettings:
    """The NATS the demo uses: ``--nats-url``, else an embedded server on a free port."""
    url = nats_url or f"nats://127.0.0.1:{free_port()}"
    return dataclasses.replace(base, nats_url=url)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(base: BusSettings, options: DemoOptions, out: Console) -> None:
    """Run the demo to its end (see module docstring); everything started is stopped."""
    fresh_state_dir(options.var_dir)
    settings = demo_settings(base, options.nats_url)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    embedded: EmbeddedNats | None = None
    try:
        embedded = nats_for(settings, options.var_dir, out)
        monitor = embedded.monitor_url if embedded is not None else None
        asyncio.run(_demo(settings, options, out, monitor_url=monitor))
    except (KeyboardInterrupt, asyncio.CancelledError):
        out.print("demo: interrupted; stopping")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if embedded is not None:
            embedded.stop()
            out.print("nats: stopped embedded nats-server")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)


async def _demo(
    settings: BusSettings, options: DemoOptions, out: Console, *, monitor_url: str | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    first_at: list[float] = []

    def interrupted() -> None:
        """First Ctrl-C: end the run with its summary; a second one: stop at once.

        A repeat within a second is the same Ctrl-C delivered twice (``uv run`` may
        forward the terminal's signal to a child that already got it), not a second one.
        """
        if not first_at:
            first_at.append(loop.time())
            stop.set()
        elif loop.time() - first_at[0] > REPEAT_WINDOW_S and main is not None:
            out.print("demo: second Ctrl-C: stopping now, without the summary")
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted)
    up_options = UpOptions(
        service_defaults=SERVICE_DEFAULTS,
        ready_timeout_s=options.ready_timeout_s,
        follow_logs=options.follow_logs,
        monitor_url=monitor_url,
    )
    async with services_running(
        settings, options.var_dir, options=up_options, out=out, stop=stop
    ) as running:
        if stop.is_set():
            return
        await DemoRun(running, options, out, stop).run()


async def _ask_health(nc: Client, namespace: Namespace) -> NodeHealthPage | None:
    try:
        return await request(
            nc, ListNodeHealth(limit=1000), NodeHealthPage, namespace=namespace, timeout=3.0
        )
    except (CommandFailed, ServiceUnavailable):
        return None


class DemoRun:
    """One demo run inside a running factory."""

    def __init__(
        self, running: RunningFactory, options: DemoOptions, out: Console, stop: asyncio.Event
    ) -> None:
        self.running = running
        self.options = options
        self.out = out
        self.stop = stop
        self.nc = running.nc
        self.namespace = running.settings.namespace
        self.tenants = TENANTS[: options.tenants]
        self.factory: DemoFactory = generate_factory(
            options.nodes, dedicated_tenant=DEDICATED_TENANT
        )
        self.plan: FaultPlan = plan_faults(self.factory, options.duration_s)
        self.billing = any(ready.name == "billing" for ready in running.services)

    async def run(self) -> None:
        """Set up, run the workload with faults and the view, then summarise and invoice."""
        period_start = dt.datetime.now(dt.UTC)
        # Agents first: a node that inventory registers before its agent reports is
        # declared unreachable by health after a few missed intervals.
        await self._start_agents()
        await self._set_up(period_start)
        if not await self._nodes_report_in():
            return
        timeline = FaultTimeline()
        workload = Workload(
            self.nc,
            self.namespace,
            rate_per_s=self.options.jobs_per_minute / 60.0,
            tenants=self.tenants,
            run_id=f"demo-{period_start:%H%M%S}",
            seed=self.options.seed,
        )
        observer = Observer(self.nc, self.namespace, timeline)
        await workload.start_reporting()
        await observer.start()
        try:
            await self._load(workload, observer, timeline)
            self.out.print("demo: workload stopped; letting running jobs finish")
            await workload.drain(DRAIN_S)
            await self._catch_up()
            period_end = dt.datetime.now(dt.UTC)
            print_summary(self.out, workload.stats, timeline, observer)
            await self._invoices(period_start, period_end)
        finally:
            await workload.close()
            await observer.close()
        self.out.print("demo: done; stopping the factory")

    async def _set_up(self, period_start: dt.datetime) -> None:
        sites = ", ".join(f"{site.site_id} ({site.jurisdiction})" for site in SITES)
        self.out.print(
            f"demo: importing a factory of {len(self.factory.nodes)} nodes at {sites}; "
            f"{self.factory.dedicated_node} dedicated to {self.factory.dedicated_tenant}"
        )
        try:
            imported = await request(
                self.nc,
                ImportFactory(description_yaml=self.factory.description_yaml(), actor=ACTOR),
                ImportSummary,
                namespace=self.namespace,
                timeout=60.0,
            )
            self.out.print(
                f"demo: {imported.nodes_created} nodes, {imported.racks_created} racks imported"
            )
            for tenant in self.tenants:
                self.out.print(
                    f"demo: tenant {tenant.tenant} ({tenant.where}; "
                    f"{', '.join(p for p, _ in tenant.priorities)}; {tenant.currency})"
                )
            await set_up_tenants(
                self.nc, self.namespace, self.tenants, caller_site=SITES[0].site_id
            )
            self.out.print("demo: quotas set, key rings created (allowed sites by residency)")
            if self.billing:
                await set_up_billing(
                    self.nc,
                    self.namespace,
                    self.tenants,
                    effective_from=period_start - dt.timedelta(days=1),
                )
                self.out.print("demo: billing accounts and rate card set")
            else:
                self.out.print("demo: the billing service is not running: no invoices this time")
        except (CommandFailed, ServiceUnavailable) as error:
            raise CliError(f"demo set-up failed: {error}") from None

    async def _start_agents(self) -> None:
        commands = agent_commands(self.factory, self.plan, nats_url=self.running.settings.nats_url)
        for command in commands:
            await self.running.supervisor.start(
                command,
                log_file=agent_log_file(self.options.var_dir, command),
                echo=problems_only,
            )
        self.out.print(
            f"demo: {len(self.factory.nodes)} simulated node agents started "
            f"({len(commands)} processes); faults planned: Xid 79 on {self.plan.xid_node} at "
            f"{self.plan.xid_at_s:.0f}s, {self.plan.silent_node} silent at "
            f"{self.plan.silent_at_s:.0f}s, {self.plan.revoke_tenant} key revoked at "
            f"{self.plan.revoke_at_s:.0f}s"
        )

    async def _nodes_report_in(self) -> bool:
        """Wait (up to ``REPORT_IN_S``) until every node's agent reported and the node is
        healthy (the faults are injected by signals the agents must be ready for);
        False when stopped meanwhile."""
        deadline = time.monotonic() + REPORT_IN_S
        reporting = 0
        while time.monotonic() < deadline and not self.stop.is_set():
            page = await _ask_health(self.nc, self.namespace)
            nodes = page.nodes if page is not None else []
            reporting = sum(
                1
                for node in nodes
                if node.last_heartbeat_at is not None and node.verdict == "healthy"
            )
            if reporting == len(self.factory.nodes):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=0.5)
        self.out.print(
            f"demo: {reporting} of {len(self.factory.nodes)} nodes report healthy; load starts"
        )
        return not self.stop.is_set()

    async def _load(self, workload: Workload, observer: Observer, timeline: FaultTimeline) -> None:
        ending = asyncio.Event()

        async def revoke(tenant: str) -> str:
            if all(t.tenant != tenant for t in self.tenants):
                return f"fault skipped: {tenant} is not among this run's tenants (--tenants)"
            return await revoke_key(self.nc, self.namespace, tenant, caller_site=SITES[0].site_id)

        def trigger(node_id: str) -> bool:
            return self.running.supervisor.signal(fault_agent_name(node_id), signal.SIGUSR1)

        faults = run_faults(self.plan, timeline, ending, trigger=trigger, revoke=revoke)
        tasks = [
            asyncio.create_task(workload.generate(ending), name="demo-generator"),
            asyncio.create_task(faults, name="demo-faults"),
            asyncio.create_task(observer.poll(ending), name="demo-observer"),
        ]
        state = ViewState(workload, observer, timeline, self.options.duration_s)
        view = asyncio.create_task(self._show(state, ending), name="demo-view")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=self.options.duration_s)
        if self.stop.is_set():
            self.out.print("demo: Ctrl-C: ending early")
        ending.set()
        await asyncio.gather(*tasks, view)

    async def _show(self, state: ViewState, ending: asyncio.Event) -> None:
        live = self.options.live if self.options.live is not None else self.out.is_terminal
        if live:
            with Live(render(state), console=self.out, auto_refresh=False) as screen:
                while not ending.is_set():
                    screen.update(render(state), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(ending.wait(), timeout=REFRESH_S)
                screen.update(render(state), refresh=True)
            return
        printer = ProgressPrinter(every_s=2.0 if self.options.duration_s < 60 else 5.0)
        while not ending.is_set():
            for line in printer.tick(state):
                self.out.print(line)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ending.wait(), timeout=REFRESH_S)
        for line in printer.tick(state):
            self.out.print(line)

    async def _catch_up(self) -> None:
        """Wait until every durable consumer of the factory's streams has nothing pending."""
        js = self.nc.jetstream()
        deadline = time.monotonic() + CATCH_UP_S
        quiet = 0
        while time.monotonic() < deadline:
            pending = 0
            for stream in STREAMS:
                with contextlib.suppress(Exception):
                    for consumer in await js.consumers_info(self.namespace.stream(stream)):
                        pending += (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
            quiet = quiet + 1 if pending == 0 else 0
            if quiet >= 3:
                return
            await asyncio.sleep(0.3)
        self.out.print(f"demo: the factory still had events pending after {CATCH_UP_S:g}s")

    async def _invoices(self, period_start: dt.datetime, period_end: dt.datetime) -> None:
        if not self.billing:
            self.out.print("invoices: unavailable (the billing service is not installed)")
            return
        invoices, problems = await issue_invoices(
            self.nc, self.namespace, self.tenants, period_start=period_start, period_end=period_end
        )
        self.out.print("")
        self.out.print(
            f"== invoices for {period_start:%Y-%m-%d %H:%M:%S} to {period_end:%H:%M:%S} UTC =="
        )
        # Off a terminal rich would wrap the invoice tables at 80 columns.
        wide = (
            self.out
            if self.out.is_terminal
            else Console(
                file=self.out.file, width=INVOICE_WIDTH, highlight=False, markup=False, emoji=False
            )
        )
        for invoice in invoices:
            render_invoice(wide, invoice, "table")
        for problem in problems:
            self.out.print(problem)
