"""The factory's main flows end to end, every service its own process (DESIGN.md flows 1-5).

Onboard: a factory description is imported into inventory; the scheduler's capacity
view and the health monitor's expected nodes follow from inventory's events. Submit,
place, run, finish: jobs fill the factory, one waits for capacity; the workload side
reports one finished (with explicit times) and the waiting job places. Fail: a node
agent reports Xid 79 on a node of the running gang; health fails it, inventory marks
it failed, the scheduler requeues the gang, which places again elsewhere once
capacity frees. Bill: the billing service metered every attempt from its reported
start to its end, stopped the failed attempt at the failure instant, and the
invoices equal the hand computation (usage, and the credit for the failed attempt).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from nats.aio.client import Client

from aifactory.bus.publisher import EventPublisher
from aifactory.bus.settings import Namespace
from aifactory.contracts.billing.v1 import Invoice, InvoiceIssued, IssueInvoice
from aifactory.contracts.health.v1 import ListNodeHealth, NodeHealthChanged, NodeHealthPage
from aifactory.contracts.inventory.v1 import GetNode, NodeDetails, NodeStateChanged
from aifactory.contracts.jobs.v1 import (
    JobAcceptance,
    JobFinished,
    JobPage,
    JobPlaced,
    JobRequeued,
    JobStarted,
    ListJobs,
    SubmitJob,
)
from aifactory.store.events import NewEvent
from aifactory.testing.waiting import wait_until

from ._billing import BilledRun, accelerator_ms, amount, net_usage, preview, set_up_billing
from ._factory import NODES, Factory, job_events, job_spec
from ._invariants import check_job_log
from ._workload import EPOCH

pytestmark = pytest.mark.integration


class Reporter:
    """The workload side of the flow: reports with explicit times."""

    def __init__(self, nc: Client, namespace: Namespace) -> None:
        self.publisher = EventPublisher(nc.jetstream(), source="/e2e/workload", namespace=namespace)

    async def started(self, placed: JobPlaced, at: dt.datetime) -> None:
        """``job_started`` for this placement."""
        await self.publisher.publish(
            NewEvent(
                JobStarted(
                    job_id=placed.job_id,
                    tenant=placed.tenant,
                    attempt=placed.attempt,
                    started_at=at,
                ),
                tenant=placed.tenant,
            )
        )

    async def finished(self, placed: JobPlaced, at: dt.datetime) -> None:
        """``job_finished`` for this placement."""
        await self.publisher.publish(
            NewEvent(
                JobFinished(
                    job_id=placed.job_id,
                    tenant=placed.tenant,
                    attempt=placed.attempt,
                    finished_at=at,
                ),
                tenant=placed.tenant,
            )
        )


def _hours(hours: float) -> dt.timedelta:
    return dt.timedelta(hours=hours)


def _to_ms(instant: dt.datetime) -> dt.datetime:
    """The instant at billing's precision (whole milliseconds)."""
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


async def test_onboard_submit_run_fail_requeue_and_bill(
    nats_url: str, namespace: Namespace, nats_client: Client, tmp_path: Path
) -> None:
    """Import -> capacity and expected nodes; submit -> placed or queued; finish -> the next places; Xid 79 -> node failed -> gang requeued and placed elsewhere; invoices meter exactly, stopping at the failure instant."""
    factory = Factory(nats_client, nats_url=nats_url, namespace=namespace, workdir=tmp_path)
    try:
        await factory.start()
        # 1. onboard: inventory's events give the scheduler its capacity, health its nodes
        await factory.onboard()
        await wait_until(
            lambda: factory.request(ListNodeHealth(), NodeHealthPage),
            lambda page: page.total == len(NODES),
            timeout=60,
            what="health to expect the imported nodes",
        )
        await set_up_billing(factory)
        report = Reporter(nats_client, namespace)
        async with job_events(nats_client, namespace) as events:
            # 2. submit: the factory fills up; the last job waits for capacity
            accepted: dict[str, JobAcceptance] = {}
            for name, tenant, gpus in (
                ("train", "acme", 16),
                ("eval-a", "globex", 8),
                ("eval-b", "acme", 8),
                ("eval-c", "globex", 8),
            ):
                accepted[name] = await factory.request(
                    SubmitJob(job=job_spec(name, tenant=tenant, accelerators=gpus)),
                    JobAcceptance,
                )
            assert [a.state for a in accepted.values()] == ["placed"] * 3 + ["queued"]
            assert accepted["eval-c"].reason == "insufficient_capacity"
            ids = {name: a.job_id for name, a in accepted.items()}
            placed = {
                name: (await events.wait(JobPlaced, ids[name]))[0]
                for name in ("train", "eval-a", "eval-b")
            }

            # 3. run and finish: eval-a ends, eval-c takes its node
            train_started = dt.datetime.now(dt.UTC)
            await report.started(placed["train"], train_started)
            runs = {  # reported windows of the jobs that run to the end
                "eval-a": (EPOCH, EPOCH + _hours(0.5)),
                "eval-b": (EPOCH + _hours(1), EPOCH + _hours(1.75)),
                "eval-c": (EPOCH + _hours(2), EPOCH + _hours(3)),
                "train#2": (EPOCH + _hours(4), EPOCH + _hours(6)),
            }
            await report.started(placed["eval-a"], runs["eval-a"][0])
            await report.finished(placed["eval-a"], runs["eval-a"][1])
            (placed["eval-c"],) = await events.wait(JobPlaced, ids["eval-c"])
            await report.started(placed["eval-c"], runs["eval-c"][0])

            # 4. fail: Xid 79 on one of the gang's nodes
            lost = placed["train"].allocations[0].node_id
            factory.start_agent(lost, profile="xid:79", interval="200ms")
            (requeued,) = await events.wait(JobRequeued, ids["train"], timeout=90)
            assert requeued.reason == "node_failed"
            details = await factory.request(GetNode(node_id=lost), NodeDetails)
            assert details.node.state == "failed"
            assert "xid_79" in details.node.state_reason
            # the gang needs two nodes: it places once eval-b and eval-c are done
            await report.started(placed["eval-b"], runs["eval-b"][0])
            await report.finished(placed["eval-b"], runs["eval-b"][1])
            await report.finished(placed["eval-c"], runs["eval-c"][1])
            second = (await events.wait(JobPlaced, ids["train"], count=2))[-1]
            assert second.attempt == 2
            assert lost not in {a.node_id for a in second.allocations}
            await report.started(second, runs["train#2"][0])
            await report.finished(second, runs["train#2"][1])

            async def finished() -> int:
                page = await factory.request(ListJobs(state="finished"), JobPage)
                return page.total

            await wait_until(finished, lambda n: n == 4, timeout=60, what="all jobs finished")

        report_log = check_job_log(await factory.replay("FACTORY_JOBS"))
        assert not report_log.problems, report_log.problems
        assert report_log.placements[ids["train"]] == [1, 2]

        # 5. bill: billing has seen everything; the failed attempt stops at the failure instant
        for stream, durable in (
            ("FACTORY_JOBS", "billing-jobs"),
            ("FACTORY_INVENTORY", "billing-inventory"),
            ("FACTORY_HEALTH", "billing-health"),
        ):
            await factory.wait_consumed(stream, durable)
        verdicts = [
            e.data
            for e in await factory.replay("FACTORY_HEALTH")
            if isinstance(e.data, NodeHealthChanged)
            and e.data.node_id == lost
            and e.data.verdict == "failed"
        ]
        state_changes = [
            e.data
            for e in await factory.replay("FACTORY_INVENTORY")
            if isinstance(e.data, NodeStateChanged)
            and e.data.node_id == lost
            and e.data.to_state == "failed"
        ]
        assert verdicts
        assert state_changes
        failure = min(verdicts[0].first_seen, state_changes[0].changed_at)
        failure = _to_ms(failure)

        failed_attempt = BilledRun(
            ids["train"], 1, 16, _to_ms(train_started), failure, node_failure=True
        )
        metered = sorted(
            [
                failed_attempt,
                *(
                    BilledRun(
                        ids[name.split("#")[0]], attempt, units, *runs[name], node_failure=False
                    )
                    for name, attempt, units in (
                        ("eval-a", 1, 8),
                        ("eval-b", 1, 8),
                        ("eval-c", 1, 8),
                        ("train#2", 2, 16),
                    )
                ),
            ]
        )

        async def billed_runs() -> list[BilledRun]:
            return sorted(net_usage(await factory.replay("FACTORY_BILLING")))

        # every attempt metered from its reported start to its end; the failed one to the
        # failure instant (the ledger is published a moment after billing commits it)
        await wait_until(
            billed_runs,
            lambda got: got == metered,
            timeout=60,
            what=f"the metered attempts {metered} (the failed one ending at {failure.isoformat()})",
        )

        period = (EPOCH, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        failed_ms = accelerator_ms(16, train_started, failure)
        expected = {
            "globex": (
                amount(accelerator_ms(8, *runs["eval-a"]) + accelerator_ms(8, *runs["eval-c"])),
                amount(0),
            ),
            "acme": (
                amount(
                    accelerator_ms(8, *runs["eval-b"])
                    + accelerator_ms(16, *runs["train#2"])
                    + failed_ms
                ),
                -amount(failed_ms),
            ),
        }
        for tenant, (subtotal, credits) in expected.items():
            draft = await preview(factory, tenant, *period)
            assert (draft.currency, draft.subtotal, draft.credits, draft.total) == (
                "EUR",
                subtotal,
                credits,
                subtotal + credits,
            ), draft
            assert draft.unpriced_records == 0
        issued = await factory.request(
            IssueInvoice(tenant="acme", period_start=period[0], period_end=period[1], actor="e2e"),
            Invoice,
        )
        assert (issued.status, issued.version, issued.total) == (
            "issued",
            1,
            expected["acme"][0] + expected["acme"][1],
        )

        async def issued_events() -> list[InvoiceIssued]:
            return [
                e.data
                for e in await factory.replay("FACTORY_BILLING")
                if isinstance(e.data, InvoiceIssued)
            ]

        (event,) = await wait_until(issued_events, lambda got: len(got) == 1, timeout=30)
        assert event.invoice.invoice_id == issued.invoice_id
        assert await factory.replay("FACTORY_DLQ") == [], "a service dead-lettered an event"
    except BaseException:
        print(factory.logs())
        raise
    finally:
        codes = factory.stop()
    assert codes == dict.fromkeys(factory.processes, 0), factory.logs()
