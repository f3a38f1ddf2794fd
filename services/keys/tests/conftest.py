"""Fixtures for the keys service tests: a root of trust, a database, a running custodian."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from aifactory.contracts.keys.v1 import Caller, CreateKey, KeyPolicy
from aifactory.keys.crypto import MasterKeyRoot
from aifactory.keys.custody import Custodian
from aifactory.keys.material import KeyMaterial
from aifactory.store.store import Store

ACME_FRA = Caller(principal="tenant:acme", site="fra-1")
OPERATOR = Caller(principal="operator:alice", site="hq")


@pytest.fixture
def root() -> MasterKeyRoot:
    """A fresh in-memory master key."""
    return MasterKeyRoot(os.urandom(32), description="test master key")


@pytest.fixture
def acme_policy() -> KeyPolicy:
    """Acme's residency: site fra-1 or jurisdiction DE; acme and the training service may call."""
    return KeyPolicy(
        allowed_sites=["fra-1"],
        allowed_jurisdictions=["DE"],
        allowed_callers=["tenant:acme", "service:training"],
    )


@pytest.fixture
def create_acme(acme_policy: KeyPolicy) -> CreateKey:
    """The command creating acme's ``datasets`` key."""
    return CreateKey(tenant="acme", key_id="datasets", policy=acme_policy, caller=ACME_FRA)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """The keys database (SQLite or PostgreSQL) with its tables."""
    import aifactory.keys.tables  # noqa: F401 - registers the tables with SQLModel

    db = Store(database_url, source="/aifactory/keys")
    await db.create_all()
    yield db
    await db.dispose()


@pytest_asyncio.fixture
async def custodian(store: Store, root: MasterKeyRoot) -> AsyncIterator[Custodian]:
    """A custodian applying requests in the background, destruction allowed without waiting."""
    running = Custodian(
        store,
        KeyMaterial(root),
        service_caller=Caller(principal="service:keys", site="fra-1"),
        min_destruction_wait_s=0,
    )
    task = asyncio.create_task(running.run())
    yield running
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
