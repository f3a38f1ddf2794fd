"""``aifactory demo``: a whole factory on one machine, under load, with faults and invoices.

One module per job: ``command`` (the typer command and its options), ``orchestrator``
(the run from start to invoices), ``factory`` (the simulated factory description),
``tenants`` (the three tenants and their set-up over NATS), ``agents`` (simulated node
agents as child processes), ``workload`` (job generator and workload reporter, with
submit -> placed latency), ``faults`` (the fault schedule), ``observer`` (what the live
view shows, gathered from events and queries), ``view`` (rich live view and plain
progress lines) and ``summary`` (the closing summary and invoices).
"""
