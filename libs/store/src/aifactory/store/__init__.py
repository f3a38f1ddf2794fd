"""aifactory.store: async sqlmodel engine, unit of work, transactional outbox and inbox.

A service's state change, the events it causes (outbox) and the ids of the events
it consumed (inbox) commit in one transaction, so a crash at any instant neither
loses an event nor applies one twice. See docs/bus-kit.md.

Import from the modules (``aifactory.store.store``, ``.uow``, ``.relay``, ``.events``):
the package itself imports nothing, so a client that only needs ``NewEvent`` (the CLI,
a stateless publisher) does not pay for SQLAlchemy.
"""
