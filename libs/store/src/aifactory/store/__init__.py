"""aifactory.store: async sqlmodel engine, unit of work, transactional outbox and inbox.

A service's state change, the events it causes (outbox) and the ids of the events
it consumed (inbox) commit in one transaction, so a crash at any instant neither
loses an event nor applies one twice. See docs/bus-kit.md.
"""

from aifactory.store.relay import OutboxRelay
from aifactory.store.settings import StoreSettings
from aifactory.store.store import Store
from aifactory.store.tables import InboxRecord, OutboxRecord
from aifactory.store.uow import NewEvent, UnitOfWork

__all__ = [
    "InboxRecord",
    "NewEvent",
    "OutboxRecord",
    "OutboxRelay",
    "Store",
    "StoreSettings",
    "UnitOfWork",
]
